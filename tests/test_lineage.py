"""Lineage by artifact id: a forced retrain killed during a LATER stage (issue 23, item 5). Rerunning the same
`--force` command reuses what that run already retrained and resumes the later stage; a plain rerun never
reuses a later stage trained from the replaced artifact."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from align import lineage
from align.pipeline import plan, run_pipeline
from align.recipe import load_recipe
from tests.conftest import chat, write_jsonl
from tests.stages.test_rm import marker_rankings
from tests.test_pipeline import SIGNALLER
from tests.test_run_folder_safety import snapshot


@pytest.fixture(scope="module")
def finished_sft_rm(tmp_path_factory, tiny_model_dir):
    """A finished sft -> rm run (sft: 1 step, so a signal at a later step stops rm; rm checkpoints every 3 steps),
    made once; each test copies it."""
    root = tmp_path_factory.mktemp("sft-rm")
    sft = write_jsonl(root / "sft.jsonl", [chat("what is two plus two", "four is the answer")] * 8)
    ranks = write_jsonl(root / "ranks.jsonl", marker_rankings(12, 1))
    (root / "r.yaml").write_text(f"""name: t
model: {{name: {tiny_model_dir}, lora: {{r: 4, alpha: 8}}}}
data: {{sft: {{train: {sft}}}, rankings: {{train: {ranks}}}}}
tracking: none
output_dir: {root / "run"}
stages:
  - {{name: sft, kind: sft, max_steps: 1, batch_size: 4, max_length: 64}}
  - {{name: rm, kind: rm, init: sft, max_steps: 6, save_steps: 3, batch_size: 4, max_length: 64,
     eval_before: false}}
""")
    run_pipeline(load_recipe(root / "r.yaml"))
    return root


@pytest.fixture
def sft_rm(tmp_path, finished_sft_rm):
    """A copy of the finished run, and `align` run in a subprocess that a signal stops mid-stage."""
    shutil.copytree(finished_sft_rm, tmp_path, dirs_exist_ok=True)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(recipe.read_text().replace(str(finished_sft_rm), str(tmp_path)))
    script = tmp_path / "signaller.py"
    script.write_text(textwrap.dedent(SIGNALLER))

    def align(*args: str, signal: str = "SIGKILL", at: int = 0) -> subprocess.CompletedProcess:
        env = os.environ | {"SIGNAL": signal, "SIGNAL_AT": str(at)}
        return subprocess.run([sys.executable, str(script), *args, str(recipe)], capture_output=True, text=True,
                              env=env, timeout=600)
    return recipe, tmp_path / "run", align


def actions(recipe, **kw) -> dict[str, tuple[str, str]]:
    return {s.stage.name: (s.action, s.reason) for s in plan(load_recipe(recipe), **kw)}


def artifact(folder) -> dict:
    return json.loads((folder / "artifact.json").read_text())


def test_rerunning_a_forced_retrain_killed_in_a_later_stage_resumes_it(sft_rm):
    recipe, run, align = sft_rm
    old_sft = artifact(run / "sft")["artifact_id"]
    assert artifact(run / "rm")["made_from"] == {"init": old_sft, "reward": None}
    out = align("run", "--force", "sft", at=4)  # kill -9 at rm's step 4, after checkpoint-3
    assert out.returncode == -9, out.stderr[-2000:]
    new_sft = artifact(run / "sft")["artifact_id"]
    retrained = snapshot(run / "sft")
    assert new_sft != old_sft and (run / ".rm.partial" / "forced").exists()

    same = actions(recipe, force=("sft",))
    assert same["sft"][0] == "reuse" and re.fullmatch(
        r"retrained by the interrupted --force run started \d\d:\d\d", same["sft"][1]), same
    assert same["rm"] == ("resume", "from step 3, finishing the interrupted retrain (the finished artifact stays "
                                    "until it completes)")
    assert actions(recipe)["rm"][0] == "resume"  # a plain rerun too: the old rm is not reused

    out = align("run", "--force", "sft")
    assert out.returncode == 0, out.stderr[-2000:]
    assert snapshot(run / "sft") == retrained  # not retrained once more
    rm = artifact(run / "rm")
    assert rm["made_from"]["init"] == new_sft
    assert json.loads((run / "rm" / "metrics.json").read_text())["resumed_from_step"] == 3
    manifest = json.loads((run / "manifest.json").read_text())
    assert "forced" not in manifest and manifest["stages"]["rm"]["status"] == "finished"
    # the request is done: asked again, --force retrains again
    assert actions(recipe, force=("sft",)) == {"sft": ("run", "forced"), "rm": ("run", "its start model sft is new")}


def test_a_plain_rerun_never_reuses_a_stage_trained_from_a_replaced_artifact(sft_rm):
    recipe, run, align = sft_rm
    out = align("run", "--force", "sft", signal="SIGTERM", at=2)  # at rm's step 2, before its first checkpoint
    assert out.returncode == 130 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert not list((run / ".rm.partial").glob("checkpoints/checkpoint-*"))
    new_sft = artifact(run / "sft")["artifact_id"]
    assert actions(recipe)["rm"] == ("run", "its start model sft was retrained since")
    out = align("run")
    assert out.returncode == 0, out.stderr[-2000:]
    assert artifact(run / "sft")["artifact_id"] == new_sft and artifact(run / "rm")["made_from"]["init"] == new_sft
    assert actions(recipe)["rm"][0] == "reuse"


def test_folders_without_ids_are_not_retrained(sft_rm):
    """A run folder written before artifacts had ids: unknown lineage is not stale (nothing reruns)."""
    recipe, run, _ = sft_rm
    for name in ("sft", "rm"):
        record = artifact(run / name)
        del record["artifact_id"], record["made_from"]
        (run / name / "artifact.json").write_text(json.dumps(record))
    assert [a for a, _ in actions(recipe).values()] == ["reuse", "reuse"]


def test_changed_and_request_by_hand(tmp_path):
    names = {"init": "sft", "reward": "rm"}
    assert lineage.changed({"init": "a", "reward": "r"}, {"init": "a", "reward": "r2"}, names) == \
        "its reward model rm was retrained since"
    assert lineage.changed({"init": "a"}, {"init": "b"}, names) == "its start model sft was retrained since"
    assert lineage.changed({}, {"init": "b"}, names) is None and lineage.changed(None, {"init": None}, names) is None
    folder = tmp_path / "sft"
    folder.mkdir()
    (folder / "artifact.json").write_text(json.dumps({"status": "finished", "artifact_id": "new"}))
    asked = lineage.request(None, ["sft"], {"sft": folder}, "2026-01-02T14:02:00")
    assert asked == {"stages": {"sft": "new"}, "started_at": "2026-01-02T14:02:00"}
    assert lineage.retrained_by_request(asked, "sft", folder) is None  # not yet
    pending = {"stages": {"sft": "old"}, "started_at": "2026-01-02T14:02:00"}
    assert lineage.retrained_by_request(pending, "sft", folder) == \
        "retrained by the interrupted --force run started 14:02"
    assert lineage.request(pending, ["sft"], {"sft": folder}, "later") == pending  # the same request, resumed
