"""Running recipes: the plan (reuse, resume, --from/--only), the lock, the manifest, and kill -9 resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from align.cli import main
from align.errors import AlignError
from align.pipeline import plan, run_pipeline
from align.recipe import load_recipe
from align.runs import RunLock
from tests.conftest import write_recipe

TWO_STAGES = "    max_steps: 2\n  - name: sft2\n    kind: sft\n    init: sft\n    max_steps: 2\n"


@pytest.fixture
def two_stage(tmp_path, tiny_model_dir, sft_files):
    return write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run", stage=TWO_STAGES)


def actions(recipe_path, overrides=(), **kw):
    return {s.stage.name: (s.action, s.reason) for s in plan(load_recipe(recipe_path, list(overrides)), **kw)}


def test_plan_reuses_unchanged_and_reruns_what_changed_downstream(two_stage, tmp_path):
    assert actions(two_stage) == {"sft": ("run", "new"), "sft2": ("run", "its start model sft is new")}
    run_pipeline(load_recipe(two_stage))
    now = actions(two_stage)
    assert now["sft"][0] == "reuse" and now["sft2"][0] == "reuse"
    # a knob of the second stage only: the first is reused
    changed = actions(two_stage, ["stages.sft2.learning_rate=1e-3"])
    assert changed["sft"][0] == "reuse" and changed["sft2"] == ("run", "changed: config")
    # a knob of the first: both rerun
    changed = actions(two_stage, ["stages.sft.learning_rate=1e-3"])
    assert changed["sft"] == ("run", "changed: config") and changed["sft2"][0] == "run"
    # data contents count, not only names
    train = tmp_path / "train.jsonl"
    train.write_text(train.read_text() + train.read_text().splitlines()[0] + "\n")
    assert actions(two_stage)["sft"] == ("run", "changed: data train")
    assert actions(two_stage, force=("sft2",))["sft2"] == ("run", "forced")


def test_from_and_only(two_stage):
    run_pipeline(load_recipe(two_stage))
    assert actions(two_stage, start="sft") == {"sft": ("run", "forced"), "sft2": ("run", "forced")}
    assert actions(two_stage, only="sft2") == {"sft": ("skip", "--only sft2"), "sft2": ("reuse", actions(
        two_stage)["sft2"][1])}
    with pytest.raises(AlignError, match="no such stage"):
        actions(two_stage, only="nope")


def test_only_needs_a_finished_upstream(two_stage):
    with pytest.raises(AlignError, match="starts from stage sft, which has not finished"):
        actions(two_stage, only="sft2")


def test_second_run_on_the_same_folder_is_refused(two_stage, tmp_path):
    with RunLock(tmp_path / "run"), pytest.raises(AlignError, match="is in use by another align run \\(pid"):
        run_pipeline(load_recipe(two_stage))
    assert not (tmp_path / "run" / "sft").exists()


def test_manifest_records_every_stage(two_stage, tmp_path, capsys):
    run_pipeline(load_recipe(two_stage))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["versions"]["torch"].startswith("2.")
    for name in ("sft", "sft2"):
        stage = manifest["stages"][name]
        assert stage["status"] == "finished" and stage["metrics"]["train_examples"] == 24
        assert stage["inputs"]["data"] and stage["config"]["name"] == name and stage["finished_at"]
    assert manifest["stages"]["sft2"]["inputs"]["upstream"] == manifest["stages"]["sft"]["fingerprint"]
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"sft2\s+finished", out)
    assert main(["run", str(two_stage), "--dry-run", "stages.sft2.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^sft: reuse \(unchanged since \d\d:\d\d\)$", out, re.M)  # plain words, local time
    assert re.search(r"^sft2: train \(changed: config", out, re.M)


KILLER = """
import os, signal, sys
from transformers import TrainerCallback
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.stages import common

class KillNine(TrainerCallback):  # the process dies at this step exactly as under an outside kill -9
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

callbacks = common.StageContext.callbacks
common.StageContext.callbacks = lambda self: callbacks(self) + [KillNine()]
run_pipeline(load_recipe(sys.argv[1]))
"""


def _losses(log_text: str) -> dict[int, float]:
    return {int(m[1]): float(m[2]) for m in re.finditer(r"step (\d+): train/loss=([-\d.e+]+)", log_text)}


def test_kill_9_resumes_from_the_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path, tiny_model_dir,
                                                                                   sft_files):
    stage = "    max_steps: 20\n    save_steps: 5\n    learning_rate: 1.0e-2\n"
    killed = write_recipe(tmp_path / "k.yaml", tiny_model_dir, *sft_files, tmp_path / "killed", stage=stage)
    whole = write_recipe(tmp_path / "w.yaml", tiny_model_dir, *sft_files, tmp_path / "whole", stage=stage)
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(KILLER))
    out = subprocess.run([sys.executable, str(script), str(killed), "12"], capture_output=True, text=True)
    assert out.returncode == -9, out.stderr[-2000:]
    partial = tmp_path / "killed" / ".sft.partial"
    assert not (tmp_path / "killed" / "sft").exists()
    assert [p.name for p in (partial / "checkpoints").glob("checkpoint-*")] == ["checkpoint-10"]
    assert actions(killed)["sft"] == ("resume", "from step 10")

    resumed = run_pipeline(load_recipe(killed))["sft"]
    reference = run_pipeline(load_recipe(whole))["sft"]
    log = (tmp_path / "killed" / "sft" / "train.log").read_text()
    before_kill, after_resume = log.split("resuming", 1)
    # killed at step 12 before its log line; the resumed run redoes steps 11 and 12 from checkpoint-10
    assert max(_losses(before_kill)) == 11 and min(_losses(after_resume)) == 11
    assert _losses(after_resume)[11] == pytest.approx(_losses(before_kill)[11], rel=1e-3)
    expected = _losses((tmp_path / "whole" / "sft" / "train.log").read_text())
    for step, loss in _losses(after_resume).items():  # the resumed curve continues the same run
        assert loss == pytest.approx(expected[step], rel=1e-3), step
    assert resumed["eval_loss_after"] == pytest.approx(reference["eval_loss_after"], rel=1e-4)
    a = load_file(tmp_path / "killed" / "sft" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "whole" / "sft" / "adapter" / "adapter_model.safetensors")
    weight_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"kill -9 at step 12, resumed from checkpoint-10: eval loss {resumed['eval_loss_after']:.6f} vs "
          f"uninterrupted {reference['eval_loss_after']:.6f}; max adapter weight difference {weight_diff:.2e}")
    assert weight_diff < 1e-4
    assert not partial.exists() and not any(torch.isnan(v).any() for v in a.values())


def test_a_retrained_reward_model_reruns_the_stages_it_scores(tmp_path):
    from align.pipeline import plan
    from align.recipe import load_recipe
    from tests.conftest import write_jsonl
    from tests.stages.test_rm import marker_rankings

    data = write_jsonl(tmp_path / "r.jsonl", marker_rankings(4, 0))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: t
data: {{rankings: {{train: {data}}}, sft: {{train: {data}}}, prompts: {{train: {data}}}}}
output_dir: {tmp_path / "run"}
stages:
  - {{name: rm, kind: rm}}
  - {{name: dpo, kind: dpo}}
  - {{name: ppo, kind: ppo}}
""")
    steps = {s.stage.name: s for s in plan(load_recipe(recipe), force=("rm",))}
    assert steps["ppo"].reason == "its reward model rm is new"
    assert steps["ppo"].inputs["reward"] == steps["rm"].fingerprint and steps["rm"].inputs.get("reward") is None
    # dpo learns from no reward model (its win rate is an evaluation row, re-judged there): it is not retrained
    assert steps["dpo"].reason == "new" and steps["dpo"].inputs.get("reward") is None


RESUMING = "from step {} of the interrupted forced run"
SIGNALLER = """
import os, signal, sys
from transformers import TrainerCallback
from align.cli import main
from align.stages import common

class Signal(TrainerCallback):  # the process gets the signal at this step, as from an outside kill
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["SIGNAL_AT"]):
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))

callbacks = common.StageContext.callbacks
common.StageContext.callbacks = lambda self: callbacks(self) + [Signal()]
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_forced_retrain_resumes_and_its_metrics_cover_the_whole_stage(tmp_path, tiny_model_dir, sft_files):
    """kill -9 at step 12 of `--force sft`, then SIGTERM at step 17 of the same command rerun, then a half-written
    checkpoint-16: the third run resumes from checkpoint-15, and the stage matches one uninterrupted run."""
    from align.runs import Manifest, list_runs

    stage = "    max_steps: 20\n    save_steps: 5\n    learning_rate: 1.0e-2\n"
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run", stage=stage)
    every3 = ["stages.sft.logging_steps=3"]  # checkpoints between log lines: the loss up to each is still counted
    reference = run_pipeline(load_recipe(path, every3))["sft"]
    weights = load_file(tmp_path / "run" / "sft" / "adapter" / "adapter_model.safetensors")
    script = tmp_path / "signaller.py"
    script.write_text(textwrap.dedent(SIGNALLER))

    def forced(signal: str, at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), "run", str(path), "--force", "sft", *every3],
                              capture_output=True, text=True, env=os.environ | {"SIGNAL": signal, "SIGNAL_AT": str(at)})

    out = forced("SIGKILL", 12)
    assert out.returncode == -9, out.stderr[-2000:]
    partial, lock = tmp_path / "run" / ".sft.partial", tmp_path / "run" / ".lock"
    assert (partial / "forced").exists() and (partial / "checkpoints" / "checkpoint-10").is_dir()
    assert actions(path, every3, force=("sft",))["sft"] == ("resume", RESUMING.format(10))
    assert actions(path, every3)["sft"][0] == "resume"  # a plain rerun finishes it too, not reuse beside a .partial
    assert "pid" in lock.read_text()  # the dead run's record
    assert list_runs(tmp_path)[0]["stages"]["sft"]["status"] == "interrupted"  # `align runs`: not "running"
    assert Manifest(tmp_path / "run", load_recipe(path)).data["stages"]["sft"]["status"] == "interrupted"

    out = forced("SIGTERM", 17)
    assert out.returncode == 130 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "taking over the run folder's lock from a run that ended without releasing it (pid" in out.stderr
    assert "resuming" in (partial / "train.log").read_text() and lock.read_text() == ""  # released on SIGTERM
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["sft"]
    assert manifest["status"] == "interrupted" and manifest["interrupted_at"] >= manifest["started_at"]
    assert [p.name for p in (partial / "checkpoints").glob("checkpoint-*")] == ["checkpoint-15"]
    (partial / "checkpoints" / "checkpoint-16").mkdir()
    (partial / "checkpoints" / "checkpoint-16" / "README.md").write_text("a full disk stopped this save")

    assert actions(path, every3, force=("sft",))["sft"] == ("resume", RESUMING.format(15))
    resumed = run_pipeline(load_recipe(path, every3), force=("sft",))["sft"]
    assert resumed["resumed_from_step"] == 15 and resumed["train_tokens"] == reference["train_tokens"]
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    assert resumed["train_loss_first"] == reference["train_loss_first"]
    assert resumed["train_seconds"] > 0 and not partial.exists()
    a = load_file(tmp_path / "run" / "sft" / "adapter" / "adapter_model.safetensors")
    assert max((a[k] - weights[k]).abs().max().item() for k in a) < 1e-4
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["sft"]["status"] == "finished"
