"""The run folder is all a recipe may touch: stage names that are paths, broken run-folder files, a real full
disk, half-written checkpoints. User-facing cases drive the `align` console script in a subprocess."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from align.checkpoints import resumable
from align.errors import AlignError
from align.pipeline import plan, run_pipeline
from align.recipe import load_recipe
from tests.conftest import chat, write_jsonl, write_recipe

ROOT = Path(__file__).resolve().parents[1]
SECOND = "    max_steps: 1\n  - name: sft2\n    kind: sft\n    init: sft\n    max_steps: 1\n"


def align(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The `align` console script as users run it (this checkout first on the path)."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([str(Path(sys.executable).parent / "align"), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (symlinks as their target's name), to compare byte for byte."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = os.readlink(path).encode()
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = b"<dir>"
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir) -> Path:
    """A folder with a recipe (sft, then sft2 from it) whose sft stage has finished; each test copies it."""
    root = tmp_path_factory.mktemp("finished")
    train = write_jsonl(root / "train.jsonl", [chat("what is two plus two", "four is the answer")] * 8)
    recipe = write_recipe(root / "r.yaml", tiny_model_dir, train, None, root / "run", stage=SECOND)
    run_pipeline(dataclasses.replace(load_recipe(recipe), stages=load_recipe(recipe).stages[:1]))
    return root


@pytest.fixture
def case(tmp_path, finished) -> Path:
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    recipe = tmp_path / "r.yaml"  # its paths: this copy's
    recipe.write_text(recipe.read_text().replace(str(finished), str(tmp_path)))
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("a sibling of the run folder")
    return tmp_path


@pytest.mark.parametrize("name", [".", "..", "../victim", "a/b", "", "manifest.json", ".lock", "evals", "Evals",
                                  "report_plots", ".sft.partial", "/tmp/abs", "sft2\0x"])
def test_a_stage_name_that_is_no_folder_of_the_run_folder_touches_nothing(case, name):
    recipe = load_recipe(case / "r.yaml")
    stages = [recipe.stages[0], dataclasses.replace(recipe.stages[1], name=name)]  # past the schema's checks
    bad = dataclasses.replace(recipe, stages=stages)
    before = snapshot(case)
    for attempt in (lambda: plan(bad), lambda: run_pipeline(bad), lambda: run_pipeline(bad, force=(name,))):
        with pytest.raises(AlignError, match="cannot be a folder of the run folder|is not inside"):
            attempt()
    assert snapshot(case) == before  # the finished sft, the sibling, the manifest and lock: byte for byte


def test_a_stage_folder_that_is_a_symlink_out_of_the_run_folder_is_refused(case):
    (case / "run" / "sft2").symlink_to(case / "victim")
    before = snapshot(case)
    with pytest.raises(AlignError, match="run/sft2: it is not inside"):
        run_pipeline(load_recipe(case / "r.yaml"))
    assert snapshot(case) == before


def test_a_recipe_name_cannot_put_its_run_folder_outside_runs(case, monkeypatch):
    work = case / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    recipe = dataclasses.replace(load_recipe(case / "r.yaml"), output_dir=None)
    before = snapshot(case)
    for name in ("../../x", "..", ".", "../runs-victim"):
        with pytest.raises(AlignError, match=f"recipe name '{re.escape(name)}' does not name a folder inside runs/"):
            run_pipeline(dataclasses.replace(recipe, name=name))
    assert snapshot(case) == before


# ---- checkpoints -------------------------------------------------------------------------------------

def _checkpoint(work: Path, step: int, complete: bool) -> Path:
    path = work / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "README.md").write_text("model card")
    if complete:
        (path / "adapter_model.safetensors").write_bytes(b"x")
        (path / "optimizer.pt").write_bytes(b"x")
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_an_incomplete_checkpoint_is_skipped_for_the_one_before(tmp_path, caplog):
    work = tmp_path / ".sft.partial"
    work.mkdir()
    (work / "fingerprint").write_text("fp")
    assert resumable(work, "fp") is None
    _checkpoint(work, 10, complete=False)  # a full disk while checkpoint-10 was written: only its README
    assert resumable(work, "fp") is None
    assert "checkpoint-10 is incomplete (no readable trainer_state.json" in caplog.text
    earlier = _checkpoint(work, 5, complete=True)
    assert resumable(work, "fp").checkpoint == earlier and resumable(work, "other inputs") is None
    (earlier / "optimizer.pt").unlink()
    assert resumable(work, "fp") is None and "checkpoint-5 is incomplete (no optimizer state" in caplog.text


def test_a_reused_stage_removes_a_work_folder_with_nothing_to_resume(case, caplog):
    """A forced retrain killed before its first complete checkpoint: a plain rerun uses the finished artifact
    and says it removes the leftover; a work folder of other inputs stays (resumable if they come back)."""
    recipe = load_recipe(case / "r.yaml")
    first = dataclasses.replace(recipe, stages=recipe.stages[:1])
    fp = json.loads((case / "run" / "sft" / "artifact.json").read_text())["fingerprint"]
    work = case / "run" / ".sft.partial"
    work.mkdir()
    (work / "fingerprint").write_text(fp)
    (work / "forced").write_text("")
    _checkpoint(work, 1, complete=False)
    artifact = snapshot(case / "run" / "sft")
    assert [(s.action, s.reason.split(" since")[0]) for s in plan(first)] == [("reuse", "unchanged")]
    run_pipeline(first)
    assert not work.exists() and "sft: removing" in caplog.text and snapshot(case / "run" / "sft") == artifact
    work.mkdir()
    (work / "fingerprint").write_text("other inputs")
    run_pipeline(first)
    assert (work / "fingerprint").exists()


# ---- a real full disk --------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size, mounted for the test (skipped where this process may not mount)."""
    mounted = []

    def mount(size: str, options: str = "") -> Path:
        folder = tmp_path / f"disk-{len(mounted)}"
        folder.mkdir()
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
        if out.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {out.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("size, library", [("128k", "safetensors"), ("320k", "torch.save")])
def test_a_full_disk_is_a_clean_error_and_keeps_finished_stages(case, small_disk, tiny_model_dir, size, library):
    """128k: the weights (safetensors: 'os error 28') do not fit; 320k: they do, the optimizer (torch's zip
    writer: 'unexpected pos') does not. Either way: exit 2, the folder named, no traceback."""
    disk = small_disk(size)
    recipe = write_recipe(case / "full.yaml", tiny_model_dir, case / "train.jsonl", None, disk / "run",
                          stage="    max_steps: 2\n")
    out = align("run", str(recipe), "model.adapter=full")
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"cannot write {disk / 'run'}" in out.stderr and "no space left on the device" in out.stderr
    assert "Traceback" not in out.stderr and "hint:" in out.stderr
    assert not (disk / "run" / "sft").exists() and not list((disk / "run").glob(".manifest.json.*.tmp"))


def test_a_full_disk_in_a_later_stage_keeps_the_finished_one(case, small_disk):
    disk = small_disk("2m")
    shutil.copytree(case / "run", disk / "run")
    recipe = case / "r.yaml"
    recipe.write_text(recipe.read_text().replace(str(case / "run"), str(disk / "run")))
    before = snapshot(disk / "run" / "sft")
    fs = os.statvfs(disk)
    (disk / "filler").write_bytes(bytes(fs.f_bavail * fs.f_frsize - 16 * 1024))  # 16 KiB left: not sft2's artifact
    out = align("run", str(recipe))
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"cannot write {disk / 'run'}" in out.stderr and "no space left on the device" in out.stderr
    assert "Traceback" not in out.stderr and "finished stages are kept" in out.stderr
    assert snapshot(disk / "run" / "sft") == before and not (disk / "run" / "sft2").exists()


# ---- run-folder files --------------------------------------------------------------------------------

def test_a_lock_that_is_a_folder_is_a_clean_error(case):
    (case / "run" / ".lock").unlink(missing_ok=True)
    (case / "run" / ".lock").mkdir()
    out = align("run", str(case / "r.yaml"))
    assert out.returncode == 2 and "run/.lock is a folder" in out.stderr and "hint: remove the folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_runs_lists_an_unreadable_manifest_and_goes_on(case):
    broken = {"a-list": "[1, 2]", "a-string": '"text"', "not-json": "{", "bad-stages": '{"stages": 3}'}
    for name, text in broken.items():
        (case / name).mkdir()
        (case / name / "manifest.json").write_text(text)
    out = align("runs", str(case))
    assert out.returncode == 0, out.stderr
    for name in ("a-list", "a-string", "not-json", "bad-stages"):
        assert f"{case / name}  unreadable: manifest.json is not a manifest align wrote" in out.stdout
    assert re.search(r"sft\s+finished", out.stdout)  # the good run is still listed
    out = align("report", str(case / "a-list"))
    assert out.returncode == 2 and "not a manifest align wrote" in out.stderr and "Traceback" not in out.stderr


def test_a_run_over_a_manifest_of_another_shape_starts_a_new_one(case, caplog):
    (case / "run" / "manifest.json").write_text("[]")
    steps = {s.stage.name: s.action for s in plan(load_recipe(case / "r.yaml"))}
    assert steps == {"sft": "reuse", "sft2": "run"}
    recipe = load_recipe(case / "r.yaml")
    run_pipeline(dataclasses.replace(recipe, stages=recipe.stages[:1]))
    assert "is not a readable manifest; starting a new one" in caplog.text
    assert json.loads((case / "run" / "manifest.json").read_text())["stages"]["sft"]["status"] == "finished"


def test_a_deleted_metrics_json_is_reused_from_the_manifest_or_retrained(case):
    recipe = load_recipe(case / "r.yaml")
    first = dataclasses.replace(recipe, stages=recipe.stages[:1])
    artifact = snapshot(case / "run" / "sft")
    recorded = json.loads((case / "run" / "manifest.json").read_text())["stages"]["sft"]["metrics"]
    (case / "run" / "sft" / "metrics.json").unlink()
    (step,) = plan(first)
    assert step.action == "reuse" and step.metrics == recorded
    out = align("run", str(case / "r.yaml"), "--only", "sft")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "metrics.json is missing or unreadable: using the metrics manifest.json recorded" in out.stderr
    assert snapshot(case / "run" / "sft") == {k: v for k, v in artifact.items() if k != "metrics.json"}
    manifest = json.loads((case / "run" / "manifest.json").read_text())
    manifest["stages"]["sft"].pop("metrics")
    (case / "run" / "manifest.json").write_text(json.dumps(manifest))
    (step,) = plan(first)
    assert (step.action, step.reason) == ("run", "sft/metrics.json is missing or unreadable, and the manifest has none")


def test_report_on_a_read_only_folder_is_a_clean_error(case, small_disk):
    disk = small_disk("4m")
    shutil.copytree(case / "run", disk / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    out = align("report", str(disk / "run"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"cannot write {disk / 'run'}" in out.stderr and "read-only file system" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_cache_that_cannot_be_written_is_said_before_the_work(tmp_path, monkeypatch):
    from align.models import cached_folder

    (tmp_path / "cache").write_text("ALIGN_CACHE is a file")
    with pytest.raises(AlignError, match="cannot write the cache folder .*cache/models"):
        cached_folder(tmp_path / "cache" / "models" / "m", "config.json", lambda folder: pytest.fail("worked"))
