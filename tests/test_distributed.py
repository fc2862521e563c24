"""Data parallelism, tested on this CPU machine: `align run --num-processes 2` (torchrun, two gloo ranks).

One recipe (sft, rm, dpo, ppo) runs once in 2 processes at batch_size 2 and once in this process at batch_size 4:
the same global batch, so the same per-step losses (TOL) and the same artifacts. PPO samples, so its curves
differ; on the same fixed rollouts (tests/ppo_ranks.py) its gathered statistics and averaged gradients
agree. A rank made to fail (ALIGN_FAIL_RANK) stops the run with its own error. The accelerate presets load in
accelerate's parser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from align.launch import command, strip_launch_flags, wanted
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import LaunchSpec, Recipe
from tests.conftest import chat, write_jsonl
from tests.stages.test_rm import marker_rankings

# Measured here: the losses of 2 x batch 2 and 1 x batch 4 agree to <= 3e-7 (float32 sums in another order);
# a real difference (a rank training on the wrong rows, gradients not averaged) moves them by > 1e-3.
TOL = {"rel": 1e-4, "abs": 1e-5}
STAGES = ("sft", "rm", "dpo")
PRESETS = Path(__file__).parent.parent / "recipes" / "accelerate"


def _recipe(root: Path, model: Path, batch: int) -> Path:
    pairs = [("what is two plus two", "four is the answer"), ("how do I bake bread", "mix flour and water"),
             ("please tell me a story", "once upon a time there was a fox")]
    sft = write_jsonl(root / "sft.jsonl", [chat(q, a) for q, a in pairs] * 8)
    rankings = write_jsonl(root / "rankings.jsonl", marker_rankings(32, 1))
    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": q} for q, _ in pairs] * 4)
    common = f"batch_size: {batch}, max_steps: 3, max_length: 64, logging_steps: 1, save_steps: 0, " \
             "warmup_ratio: 0.0, lr_scheduler: constant"
    path = root / "r.yaml"
    path.write_text(f"""name: dist
model: {{name: {model}, lora: {{r: 8, alpha: 16}}}}
data:
  sft: {{train: {sft}}}
  rankings: {{train: {rankings}}}
  prompts: {{train: {prompts}, eval_fraction: 0.25}}
tracking: none
output_dir: {root / "run"}
stages:
  - {{name: sft, kind: sft, learning_rate: 1.0e-2, {common}}}
  - {{name: rm, kind: rm, learning_rate: 1.0e-2, eval_before: false, {common}}}
  - {{name: dpo, kind: dpo, init: sft, learning_rate: 1.0e-2, eval_prompts: 0, {common}}}
  - {{name: ppo, kind: ppo, init: sft, learning_rate: 1.0e-2, rollout_batch_size: 4, grad_accum: 1, ppo_epochs: 1,
      generation: {{max_new_tokens: 6, temperature: 1.0}}, {common}}}
""")
    return path


def _align(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "align", *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def _history(stage_dir: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (stage_dir / "history.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The run folders of the 2-process run (batch 2 per rank) and of the 1-process run (batch 4)."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    done = _align("run", str(_recipe(two, tiny_model_dir, 2)), "--num-processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    run_pipeline(load_recipe(_recipe(one, tiny_model_dir, 4)))
    return two / "run", one / "run"


def test_two_processes_give_the_loss_curve_of_one_with_the_same_global_batch(runs):
    two, one = runs
    for stage in STAGES:
        for key in ("train/loss", "train/grad_norm"):
            got, want = _history(two / stage, key), _history(one / stage, key)
            assert len(got) == len(want) == 3, (stage, key, got)
            assert got == pytest.approx(want, **TOL), (stage, key)
        steps = [json.loads(line)["step"] for line in (two / stage / "history.jsonl").read_text().splitlines()
                 if "train/loss" in line]
        assert steps == [1, 2, 3]  # logged once (by rank 0), not once per rank


def test_two_processes_write_the_same_artifacts_once(runs):
    two, one = runs
    for stage in STAGES:
        files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
        assert files(two / stage) == files(one / stage), stage
        assert (two / stage / "model.json").read_text().replace(str(two), "") == \
            (one / stage / "model.json").read_text().replace(str(one), "")
        a, b = (load_file(d / stage / "adapter" / "adapter_model.safetensors") for d in (two, one))
        # Adam's first steps divide by tiny second moments, so 1e-6 loss agreement leaves ~1e-5 in the weights;
        # each step moves them by ~lr = 1e-2
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a), stage
        got, want = (json.loads((d / stage / "metrics.json").read_text()) for d in (two, one))
        assert got.keys() == want.keys(), stage
        counts = {k: v for k, v in want.items() if isinstance(v, int)}  # examples, pairs, tokens: global counts
        assert {k: got[k] for k in counts} == counts, stage
    assert sorted(p.name for p in (two / "logs").iterdir()) == ["rank-0.log", "rank-1.log"]
    assert "dpo: dpo stage" in (two / "logs" / "rank-1.log").read_text()  # rank 1 logs to its own file
    assert not (one / "logs").exists()  # one process: no rank logs
    manifest = json.loads((two / "manifest.json").read_text())
    assert all(manifest["stages"][s]["status"] == "finished" for s in (*STAGES, "ppo"))


def test_ppo_runs_data_parallel_and_writes_one_artifact(runs):
    two, one = runs
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(two / "ppo") == files(one / "ppo")
    got, want = (json.loads((d / "ppo" / "metrics.json").read_text()) for d in (two, one))
    assert got.keys() == want.keys()
    assert got["ppo_steps"] == want["ppo_steps"] == 3
    rows = [json.loads(line) for line in (two / "ppo" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "ppo/reward_mean" in r] == [1, 2, 3]  # logged once, by rank 0
    assert "ppo step 3/3" in (two / "logs" / "rank-1.log").read_text()


def test_a_failing_rank_stops_every_rank_with_its_error(tiny_model_dir, tmp_path):
    recipe = _recipe(tmp_path, tiny_model_dir, 2)
    done = _align("run", str(recipe), "--only", "sft", "--num-processes", "2", env={"ALIGN_FAIL_RANK": "1:2"})
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last == "error: rank 1 failed (the other ranks were stopped): " \
                   "injected failure on rank 1 at step 2 (ALIGN_FAIL_RANK)", done.stderr[-3000:]
    run = tmp_path / "run"
    assert not (run / "sft").exists()  # no artifact that looks finished; .sft.partial is kept to resume
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["status"] == "failed"
    assert manifest["stages"]["sft"]["error"].startswith("rank 1 failed: injected failure")


def test_launch_command_lines(tmp_path):
    argv = ["--debug", "run", "r.yaml", "--num-processes", "4", "a.b=1", "--accelerate-config=x.yaml", "--only", "x"]
    assert strip_launch_flags(argv) == ["--debug", "run", "r.yaml", "a.b=1", "--only", "x"]
    assert command(argv, 4, None) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      "--nproc_per_node", "4", "-m", "align", "--debug", "run", "r.yaml", "a.b=1",
                                      "--only", "x"]
    assert command(["run", "r.yaml"], 1, "fsdp.yaml") == [sys.executable, "-m", "accelerate.commands.launch",
                                                         "--config_file", "fsdp.yaml", "-m", "align", "run", "r.yaml"]


def test_when_align_run_launches(tmp_path, monkeypatch):
    import argparse

    parsed = Recipe(name="t", launch=LaunchSpec(num_processes=3))  # a recipe's `launch: {num_processes: 3}`
    args = lambda **kw: argparse.Namespace(**{"num_processes": None, "accelerate_config": None,  # noqa: E731
                                              "dry_run": False, **kw})
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert wanted(args(), parsed) == (3, None)  # the recipe's launch section
    assert wanted(args(num_processes=2), parsed) == (2, None)  # the flag wins
    assert wanted(args(num_processes=1), parsed) is None
    assert wanted(args(dry_run=True), parsed) is None
    with pytest.raises(Exception, match="no such file"):
        wanted(args(accelerate_config=str(tmp_path / "missing.yaml")), parsed)
    monkeypatch.setenv("LOCAL_RANK", "0")  # inside a launched process: never launch again
    assert wanted(args(num_processes=2), parsed) is None


@pytest.mark.parametrize("preset", sorted(p.name for p in PRESETS.glob("*.yaml")))
def test_preset_loads_in_accelerate(preset):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(PRESETS / preset))  # refuses unknown top-level keys
    raw = yaml.safe_load((PRESETS / preset).read_text())
    assert (PRESETS / preset).read_text().startswith("# ")  # says when to pick it
    # nested keys are copied onto `accelerate launch`'s options, where an unknown one is silently ignored
    options = {a.dest for a in launch_command_parser()._actions}
    nested = {**raw.get("fsdp_config", {}), **raw.get("deepspeed_config", {})}
    assert set(nested) <= options, set(nested) - options
    kind = config.distributed_type.value
    assert kind in {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    if kind == "FSDP":
        assert nested["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and nested["fsdp_reshard_after_forward"]
    if kind == "DEEPSPEED":
        assert nested["zero_stage"] in (2, 3) and ("offload" in preset) == (nested["offload_optimizer_device"] == "cpu")
        assert "gradient_accumulation_steps" not in nested  # "auto": from the recipe


def test_slurm_example_launches_the_multi_node_preset():
    script = (PRESETS / "slurm-multinode.sh").read_text()
    assert "multi-node.yaml" in script and "--machine_rank \\$SLURM_NODEID" in script
    assert subprocess.run(["bash", "-n", str(PRESETS / "slurm-multinode.sh")]).returncode == 0


def test_ppo_statistics_and_gradients_of_two_ranks_equal_one_process(tiny_model_dir, tmp_path):
    """The same 8 rollouts, shared by 2 ranks or held by 1 process: every gathered statistic, every row's
    advantages and returns (whitened with global statistics) and the averaged gradients agree."""
    worker = [str(Path(__file__).parent / "ppo_ranks.py"), str(tiny_model_dir), str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    for cmd in ([sys.executable, *worker], [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                            *worker]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (json.loads((tmp_path / f"world-{n}.json").read_text()) for n in (1, 2))
    assert two["stats"].keys() == one["stats"].keys()
    for key, value in one["stats"].items():
        assert two["stats"][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    for row, got in two["rows"].items():  # rank 0 held rows 0, 2, 4, 6
        for key in ("advantages", "returns"):
            assert got[key] == pytest.approx(one["rows"][row][key], rel=1e-4, abs=1e-5), (row, key)
    for name, grad in one["grads"].items():
        torch.testing.assert_close(torch.tensor(two["grads"][name]), torch.tensor(grad), rtol=1e-4, atol=1e-6)
    assert any(torch.tensor(g).abs().sum() > 0 for g in one["grads"].values())  # something was learned from


@pytest.mark.parametrize("preset", sorted(p.name for p in PRESETS.glob("*.yaml")))
def test_every_preset_accepts_the_ppo_stage_or_says_why_not(preset, tmp_path):
    """Each preset launches a recipe with a ppo stage; under a sharding preset (FSDP, ZeRO-3) PPO's checkpoints
    are refused before any process starts, with the fix (save_steps: 0, which then launches)."""
    import argparse

    from align.errors import AlignError

    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / "quickstart-ppo.yaml")  # ppo save_steps: 4
    args = argparse.Namespace(num_processes=None, accelerate_config=str(PRESETS / preset), dry_run=False)
    raw = yaml.safe_load((PRESETS / preset).read_text())
    sharded = raw["distributed_type"] == "FSDP" or raw.get("deepspeed_config", {}).get("zero_stage") == 3
    if sharded:
        with pytest.raises(AlignError, match="stage ppo: PPO checkpoints .* shards the weights"):
            wanted(args, recipe)
        recipe.stage("ppo").save_steps = 0
    assert wanted(args, recipe) == (1, str(PRESETS / preset))


def test_sharded_ppo_checkpoints_refused_by_the_console_script(tmp_path):
    done = subprocess.run(["align", "run", str(Path(__file__).parent.parent / "recipes" / "quickstart-ppo.yaml"),
                           "--accelerate-config", str(PRESETS / "fsdp.yaml"), f"output_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "stage ppo: PPO checkpoints (save_steps: 4) cannot be written" in done.stderr
    assert "stages.ppo.save_steps=0" in done.stderr and not (tmp_path / "run").exists()
