"""The quickstart on the real embedded SmolLM2 (slow: minutes; run with `pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_sft_rm_dpo_with_its_report(tmp_path):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "align", "run", "recipes/quickstart.yaml", f"output_dir={tmp_path}"],
                         cwd=ROOT, capture_output=True, text=True, env={**__import__("os").environ,
                                                                        "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "sft" / "metrics.json").read_text())
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert (tmp_path / "sft" / "adapter" / "adapter_model.safetensors").exists()
    rm = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert rm["pairwise_accuracy_after"] > 0.6 and rm["top1_agreement_after"] > 0.5
    dpo = json.loads((tmp_path / "dpo" / "metrics.json").read_text())
    assert dpo["reward_accuracy_after"] > 0.7
    evals = json.loads((tmp_path / "evals.json").read_text())
    rows = {r["row"]: r["metrics"] for r in evals["rows"]}
    assert list(rows) == ["baseline", "sft", "rm", "dpo"]
    assert {"refusal_rate", "over_refusal", "perplexity", "win_rate", "kl"} <= rows["dpo"].keys()
    assert rows["dpo"]["win_rate"] > 0.5 and evals["rows"][3]["judges"]["win_rate"] == "rm stage rm"  # vs sft
    assert "perplexity_increase" in rows["sft"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    print(f"quickstart: {time.perf_counter() - start:.0f} s, eval loss "
          f"{metrics['eval_loss_before']:.3f} -> {metrics['eval_loss_after']:.3f}, "
          f"RM held-out pairwise accuracy {rm['pairwise_accuracy_after']:.3f}, "
          f"DPO win rate vs SFT {rows['dpo']['win_rate']:.3f}")
