#!/usr/bin/env bash
# The GPU check: align's GPU test suite, then tokens/s and MFU of sft, dpo and ppo on a random-initialised model
# of Qwen2.5-0.5B's shape; budget under 8 minutes on one H200. NOT RUN ON A GPU YET (see bench/README.md).
#
#   bench/gpu_check.sh [OUT_DIR]            # on the GPU machine, in the repository root; OUT_DIR defaults to $OUT
#   bench/gpu_check.sh --dry-run [OUT_DIR]  # anywhere: the same steps on the CPU with a tiny model (tested)
#
# The GPU machine has torch, transformers, accelerate and peft but no network: trl, datasets, wandb and gguf
# (and what they need that it lacks) travel as wheels in .whl/ (bench/README.md: `bench/gpu_wheels.sh` fetches
# them here; the device tool carries the folder). Writes OUT_DIR/pytest.log, OUT_DIR/gpu-report.jsonl (peak
# memory per test), OUT_DIR/throughput.md (the table) and OUT_DIR/throughput.json.
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out="${1:-${OUT:-/tmp/align-gpu-check}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}
start=$(date +%s)

if [ $dry = 0 ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine's Python 3.12 wheels
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_check: installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if ! "$py" -c "import trl, datasets, peft, accelerate, transformers, yaml" 2>"$out/imports.log"; then
    echo "gpu_check: a package is missing (see $out/imports.log); carry its wheel in .whl/ (bench/README.md)" >&2
    exit 2
fi
"$py" -c "import torch, transformers, trl, accelerate, peft; print('torch', torch.__version__, 'cuda',
torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'); print('transformers',
transformers.__version__, 'trl', trl.__version__, 'accelerate', accelerate.__version__, 'peft', peft.__version__)" \
    | tee "$out/versions.txt"

status=0
if [ $dry = 1 ]; then
    # the GPU tests are collected under -m gpu (their CPU run: ALIGN_TEST_DEVICE=cpu pytest -m gpu tests/gpu)
    export ALIGN_TEST_DEVICE=cpu
    tests=(tests/gpu --collect-only)
    tiny=(--tiny)
    limits=(900 1800)  # a shared CPU can be 10x slower than an idle one: the limits are the GPU's
else
    tests=(tests/gpu)
    tiny=()
    limits=(300 240)  # the 8-minute budget on one H200
fi
ALIGN_GPU_REPORT="$out/gpu-report.jsonl" timeout "${limits[0]}" "$py" -m pytest -m gpu -q -p no:cacheprovider -rs "${tests[@]}" \
    2>&1 | tee "$out/pytest.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout "${limits[1]}" "$py" bench/gpu_throughput.py "${tiny[@]}" --out "$out/throughput.md" 2>&1 | tail -n 40 \
    | tee "$out/throughput.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
echo "gpu_check: $(( $(date +%s) - start )) s, status $status; results in $out"
exit $status
