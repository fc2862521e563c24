"""Every stage kind and every evaluation hook on the accelerator, on the tiny model built from a config.

    pytest -m gpu                                   # on a CUDA machine (bench/gpu_check.sh runs it)
    ALIGN_TEST_DEVICE=cpu pytest -m gpu tests/gpu   # the same checks against the CPU: how they are tested here

Checked: every module's forward (in the stages, the TRL trainers, the hooks, the evaluations) gets its weights
and its input tensors on the device (a global forward pre-hook); bf16 weights where the dtype decision picks
them (`model.dtype: auto` on a bf16 GPU); peak GPU memory reported (printed, and written to
$ALIGN_GPU_REPORT as JSON when set); and the numbers of a run on the device equal those of the same run on the
CPU (fp32 both) within tolerance: first losses of sft, rm and dpo, and PPO's statistics and advantages on fixed
rollouts (tests/ppo_ranks.py). Without CUDA (and ALIGN_TEST_DEVICE unset) every test here is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import chat, write_jsonl
from tests.stages.test_rm import marker_rankings

DEVICE = os.environ.get("ALIGN_TEST_DEVICE", "cuda")
ROOT = Path(__file__).parent.parent.parent
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(),
                                                  reason="no CUDA device here: run `pytest -m gpu` on a GPU "
                                                         "machine (bench/gpu_check.sh)")]
QUESTIONS = ["what is two plus two", "how do I bake bread", "please tell me a story", "the cat sat on the mat"]
HOOKS = ("compliance", "perplexity", "win_rate", "kl", "samples", "rm_accuracy")


@contextlib.contextmanager
def placement_guard(device_type: str) -> Iterator[dict]:
    """Records every module forward whose own weights or positional tensor inputs are not on `device_type`
    (inputs reach the first module positionally: the embedding gets the token ids), and the weight dtypes."""
    seen: dict = {"forwards": 0, "wrong": [], "dtypes": set()}

    def check(module: torch.nn.Module, args: tuple) -> None:
        seen["forwards"] += 1
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False),
                   *(a for a in args if isinstance(a, torch.Tensor))]
        for t in tensors:
            if t.device.type != device_type and len(seen["wrong"]) < 10:
                seen["wrong"].append(f"{type(module).__name__}: {tuple(t.shape)} on {t.device}")
        seen["dtypes"] |= {p.dtype for p in module.parameters(recurse=False) if p.is_floating_point()}

    handle = torch.nn.modules.module.register_module_forward_pre_hook(check)
    try:
        yield seen
    finally:
        handle.remove()


def _recipe(root: Path, model: Path, dtype: str, kinds: tuple[str, ...], hooks: tuple[str, ...] = ()) -> Path:
    """A recipe on the tiny model with the given stage kinds (each 2 steps) and evaluation hooks."""
    text = write_jsonl(root / "text.jsonl", [{"text": f"{q}. {q} and then {q}."} for q in QUESTIONS * 4])
    sft = write_jsonl(root / "sft.jsonl", [chat(q, "four is the answer") for q in QUESTIONS] * 4)
    rankings = write_jsonl(root / "rankings.jsonl", marker_rankings(16, 1))
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": q} for q in QUESTIONS * 3])
    compliance = ROOT / "reward_data" / "compliance" / "prompts.jsonl"
    common = "max_steps: 2, max_length: 64, batch_size: 2, logging_steps: 1, save_steps: 0, learning_rate: 1.0e-3"
    on_policy = "rollout_batch_size: 4, eval_prompts: 2, generation: {max_new_tokens: 6, temperature: 1.0}"
    stages = {
        "pretrain": f"{{name: pretrain, kind: pretrain, {common}}}",
        "sft": f"{{name: sft, kind: sft, {common}}}",
        "rm": f"{{name: rm, kind: rm, init: sft, eval_before: false, {common}}}",
        "dpo": f"{{name: dpo, kind: dpo, init: sft, eval_prompts: 2, {common}}}",
        "ppo": f"{{name: ppo, kind: ppo, init: sft, grad_accum: 2, {on_policy}, {common}}}",
        "rloo": f"{{name: rloo, kind: rloo, init: sft, num_generations: 2, {on_policy}, {common}}}",
        "grpo": f"{{name: grpo, kind: grpo, init: sft, num_generations: 2, {on_policy}, {common}}}",
    }
    evals = {"compliance": f"{{hook: compliance, data: {compliance}, max_examples: 4, "
                           "generation: {max_new_tokens: 6, temperature: 0}}",
             "perplexity": f"{{hook: perplexity, data: {text}, max_examples: 4}}",
             "win_rate": f"{{hook: win_rate, data: {prompts}, max_examples: 2, generation: {{max_new_tokens: 6}}}}",
             "kl": f"{{hook: kl, data: {prompts}, max_examples: 2, generation: {{max_new_tokens: 6}}}}",
             "samples": f"{{hook: samples, data: {prompts}, max_examples: 2, generation: {{max_new_tokens: 6}}}}",
             "rm_accuracy": f"{{hook: rm_accuracy, data: {rankings}, max_examples: 8}}"}
    evals_yaml = "".join(f"  - {evals[h]}\n" for h in hooks)
    path = root / "r.yaml"
    path.write_text(f"""name: gpu-check
model: {{name: {model}, dtype: {dtype}, lora: {{r: 8, alpha: 16}}}}
data:
  text: {{train: {text}}}
  sft: {{train: {sft}}}
  rankings: {{train: {rankings}}}
  prompts: {{train: {prompts}, eval_fraction: 0.34}}
{"evals:" + chr(10) + evals_yaml if hooks else ""}tracking: none
output_dir: {root / "run"}
stages:
""" + "".join(f"  - {stages[k]}\n" for k in kinds))
    return path


def _report(**numbers: float) -> None:
    print(json.dumps(numbers))
    target = os.environ.get("ALIGN_GPU_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps(numbers) + "\n")


def test_every_stage_and_hook_runs_on_the_device(tiny_model_dir, tmp_path):
    kinds = ("pretrain", "sft", "rm", "dpo", "ppo", "rloo", "grpo")
    recipe = load_recipe(_recipe(tmp_path, tiny_model_dir, "auto", kinds, HOOKS))
    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with placement_guard(DEVICE) as seen:
        metrics = run_pipeline(recipe)
    assert set(kinds) <= set(metrics), metrics.keys()
    assert seen["forwards"] > 1000 and not seen["wrong"], seen["wrong"]
    bf16 = DEVICE == "cuda" and torch.cuda.is_bf16_supported()
    assert torch.bfloat16 in seen["dtypes"] if bf16 else seen["dtypes"] == {torch.float32}, seen["dtypes"]
    if DEVICE == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        _report(test="every_stage_and_hook", peak_gpu_mib=round(peak, 1), bf16=bf16)
        assert peak > 0


def _first_losses(run: Path) -> dict[str, float]:
    out = {}
    for stage in ("sft", "rm", "dpo"):
        rows = [json.loads(line) for line in (run / stage / "history.jsonl").read_text().splitlines()]
        out[stage] = next(r["train/loss"] for r in rows if "train/loss" in r)
    return out


def test_device_run_matches_the_cpu_run(tiny_model_dir, tmp_path):
    """fp32 on both: the first logged loss of sft, rm and dpo (before sampling or reductions in another order
    can move them apart) agree to 1e-3, and PPO's statistics and advantages on fixed rollouts to 1e-3."""
    here, cpu = tmp_path / "device", tmp_path / "cpu"
    here.mkdir()
    cpu.mkdir()
    run_pipeline(load_recipe(_recipe(here, tiny_model_dir, "float32", ("sft", "rm", "dpo"))))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "align", "run", str(_recipe(cpu, tiny_model_dir, "float32",
                                                                              ("sft", "rm", "dpo")))],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _first_losses(here / "run") == pytest.approx(_first_losses(cpu / "run"), rel=1e-3)

    worker = [sys.executable, str(ROOT / "tests" / "ppo_ranks.py"), str(tiny_model_dir)]
    for out, extra in ((here, {}), (cpu, {"CUDA_VISIBLE_DEVICES": ""})):
        done = subprocess.run([*worker, str(out), "float32"], capture_output=True, text=True, timeout=600,
                              env={**env, **extra} if extra else {**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-3000:]
    a, b = (json.loads((d / "world-1.json").read_text()) for d in (here, cpu))
    assert a["device"] == DEVICE and b["device"] == "cpu"
    for key, value in b["stats"].items():
        assert a["stats"][key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    for row, got in a["rows"].items():
        assert got["advantages"] == pytest.approx(b["rows"][row]["advantages"], rel=1e-3, abs=1e-4), row
