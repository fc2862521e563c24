"""bench/gpu_check.sh's parts that need no GPU: its FLOP accounting (hand-computed), its shell syntax, and (slow)
its whole --dry-run on the CPU: the GPU tests collected under `-m gpu`, the throughput table of a tiny model."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from bench.gpu_throughput import QWEN25_05B, forward_flops

BENCH = Path(__file__).parent.parent.parent / "bench"


def test_forward_flops_of_qwen25_05b_by_hand():
    # per layer: q, o 896 x 896; k, v 896 x 128 (2 of 14 heads); gate, up, down 896 x 4864
    per_layer = 896 * 896 * 2 + 896 * 128 * 2 + 3 * 896 * 4864
    assert per_layer == 14_909_440
    n = 24 * per_layer + 896 * 151936  # + the (tied) LM head, which runs on every token
    assert n == 493_961_216  # Qwen2.5-0.5B: 0.36B non-embedding parameters + 0.14B LM head
    assert forward_flops(QWEN25_05B, 0) == 2 * n
    assert forward_flops(QWEN25_05B, 100) == 2 * n + 2 * 24 * 100 * 896  # attention over 100 positions


def test_gpu_scripts_parse():
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        assert subprocess.run(["bash", "-n", str(BENCH / script)]).returncode == 0, script
        assert os.access(BENCH / script, os.X_OK), script


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    done = subprocess.run([str(BENCH / "gpu_check.sh"), "--dry-run", str(tmp_path)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHON": "python"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"\b2(/\d+)? tests collected", (tmp_path / "pytest.log").read_text())  # the two GPU tests
    table = (tmp_path / "throughput.md").read_text()
    assert [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "stage" not in
            line] == ["sft", "dpo", "ppo"]
