#!/usr/bin/env bash
# Fetch, HERE (with PyPI), the wheels bench/gpu_check.sh installs on the GPU machine, which has torch,
# transformers, accelerate, peft, numpy, pandas, pyarrow, pyyaml, requests, httpx and protobuf but no network:
# trl, datasets, wandb and gguf at the versions this project is tested with, and what they need that the
# machine lacks. Python 3.12, x86-64 Linux (the machine's). Into .whl/ (in .gitignore: carry it with the
# device tool's `carry: [".whl"]`; 26 MiB of its 64 MiB limit, measured 2026-12-01).
#
#   bench/gpu_wheels.sh && du -sh .whl
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl \
    trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 gguf==0.19.0 \
    wandb==0.31.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    platformdirs==4.14.9 cwevals==0.0.1b1 distro sniffio \
    opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2 \
    opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-otlp-proto-http==1.45.2 \
    opentelemetry-exporter-otlp-proto-common==1.45.2 opentelemetry-exporter-otlp-common==0.66b2 \
    opentelemetry-exporter-http-transport==0.66b2 googleapis-common-protos==1.76.0
