"""Running a recipe: plan which stages run, are reused or resume, then run each into its artifact folder.

    runs/<recipe>/<stage>/     adapter/ or model/, tokenizer/, model.json, metrics.json,
                               config.yaml, train.log, artifact.json (written last: "finished")

A stage is written into `.<stage>.partial` (with checkpoints) and renamed into place only when
complete, so a crash never leaves a folder that looks finished; rerun, it resumes from its last
checkpoint. A finished stage whose inputs (`runs.stage_inputs`) are unchanged is reused.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import set_seed

from align.errors import AlignError
from align.runs import FINISHED, Manifest, RunLock, fingerprint, finished, stage_inputs, what_changed
from align.schema import Recipe, StageBase
from align.stages.common import StageContext
from align.tracking import Tracker

log = logging.getLogger("align")
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
                errno.EPERM: "operation not permitted", errno.ENOTDIR: "a part of the path is not a folder",
                errno.EEXIST: "a file is in the way"}


@dataclasses.dataclass
class Step:
    stage: StageBase
    action: str  # run | reuse | resume | skip
    reason: str
    inputs: dict[str, Any]
    fingerprint: str
    checkpoint: Path | None = None  # with action "resume": the checkpoint to continue from


def plan(recipe: Recipe, force: tuple[str, ...] = (), start: str | None = None,
         only: str | None = None) -> list[Step]:
    """What `align run` would do with each stage, and why (`align run --dry-run` prints this)."""
    run_dir = Path(recipe.run_dir)
    names = [s.name for s in recipe.stages]
    for flag, name in (("--from", start), ("--only", only)):
        if name and name not in names:
            raise AlignError(f"{flag} {name}: no such stage; stages: {', '.join(names)}")
    forced = set(force) | (set(names[names.index(start):]) if start else set())
    steps: list[Step] = []
    fps: dict[str, str] = {}
    for stage in recipe.stages:
        inputs = stage_inputs(recipe, stage, fps.get(stage.init))
        fp = fps[stage.name] = fingerprint(inputs)
        done = finished(run_dir / stage.name)
        upstream = next((s for s in steps if s.stage.name == stage.init), None)
        if only and stage.name != only:
            step = Step(stage, "skip", "--only " + only, inputs, fp)
        elif stage.name in forced:
            step = Step(stage, "run", "forced", inputs, fp)
        elif upstream and upstream.action in ("run", "resume"):
            step = Step(stage, "run", f"its init stage {stage.init} runs again", inputs, fp)
        elif done and done.get("fingerprint") == fp:
            step = Step(stage, "reuse", f"unchanged since {done['finished_at']}", inputs, fp)
        elif done:
            step = Step(stage, "run", f"changed: {what_changed(done.get('inputs', {}), inputs)}", inputs, fp)
        elif checkpoint := _checkpoint(run_dir, stage.name, fp):
            step = Step(stage, "resume", f"from {checkpoint.name}", inputs, fp, checkpoint)
        else:
            step = Step(stage, "run", "not run yet", inputs, fp)
        if step.action != "skip" and upstream and upstream.action == "skip" \
                and not finished(run_dir / stage.init):
            raise AlignError(f"--only {stage.name}: it starts from stage {stage.init}, which has not finished",
                             hint=f"run without --only first, or with --only {stage.init}")
        steps.append(step)
    return steps


def run_pipeline(recipe: Recipe, force: tuple[str, ...] = (), start: str | None = None,
                 only: str | None = None) -> dict[str, dict[str, Any]]:
    """Run, resume or reuse every stage (holding the run folder's lock); return each stage's metrics."""
    run_dir = Path(recipe.run_dir)
    _make_run_dir(run_dir)
    with RunLock(run_dir):
        steps = plan(recipe, force, start, only)
        manifest = Manifest(run_dir, recipe)
        group = f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        tracker = Tracker(recipe.tracking, run_dir, group, recipe_dict(recipe))
        results: dict[str, dict[str, Any]] = {}
        for step in steps:
            name = step.stage.name
            if step.action == "skip":
                continue
            if step.action == "reuse":
                log.info("%s: reused (%s)", name, step.reason)
                results[name] = json.loads((run_dir / name / "metrics.json").read_text())
                manifest.update(name, status="finished", reused_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
                continue
            log.info("%s: running (%s)", name, step.reason)
            manifest.update(name, status="running", started_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                            inputs=step.inputs, fingerprint=step.fingerprint, config=dataclasses.asdict(step.stage))
            try:
                results[name] = _run_stage(recipe, step, run_dir / name, tracker)
            except BaseException as e:
                manifest.update(name, status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
                raise _disk_error(e, run_dir) or e from None
            finally:
                tracker.finish()
            info = finished(run_dir / name)
            manifest.update(name, status="finished", finished_at=info["finished_at"], metrics=results[name])
    return results


def _run_stage(recipe: Recipe, step: Step, final: Path, tracker: Tracker) -> dict[str, Any]:
    stage = step.stage
    work = final.with_name(f".{final.name}.partial")
    resume = step.checkpoint
    if resume is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "fingerprint").write_text(step.fingerprint)
    handler = logging.FileHandler(work / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger("align").getEffectiveLevel() > logging.INFO:  # the stage log keeps align's INFO lines
        logging.getLogger("align").setLevel(logging.INFO)
    init = final.parent / stage.init if stage.init != "base" else None
    log.info("%s: %s stage from %s%s", stage.name, stage.kind, init or recipe.model.name,
             f", resuming {resume}" if resume else "")
    start = time.perf_counter()
    try:
        tracker.start(stage.name, work)
        entry = importlib.import_module(f"align.stages.{stage.kind}").run
        ctx = StageContext(recipe, stage, work, init, tracker, str(resume) if resume else None)
        set_seed(ctx.seed)  # before any model is built: new adapters and heads start from the seed
        metrics = entry(ctx)
        metrics["stage_seconds"] = time.perf_counter() - start
        tracker.log({f"final/{k}": v for k, v in metrics.items()})
        tracker.summary(metrics)
        (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (work / "config.yaml").write_text(yaml.safe_dump(
            {"model": dataclasses.asdict(recipe.model), "stage": dataclasses.asdict(stage)}, sort_keys=False))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        (work / FINISHED).write_text(json.dumps({
            "status": "finished", "stage": stage.name, "kind": stage.kind, "fingerprint": step.fingerprint,
            "inputs": step.inputs, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "recipe": recipe.source},
            indent=2))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    _swap_into_place(work, final)
    log.info("%s", summary_line(stage.name, metrics, final))
    return metrics


def _checkpoint(run_dir: Path, name: str, fp: str) -> Path | None:
    """The latest checkpoint of an interrupted run of this stage with the same inputs, if any."""
    work = run_dir / f".{name}.partial"
    try:
        if (work / "fingerprint").read_text() != fp:
            return None
    except OSError:
        return None
    found = sorted((work / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return found[-1] if found else None


def _swap_into_place(work: Path, final: Path) -> None:
    """Replace `final` by `work`; at every instant `final` is either absent or a finished artifact."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)


def _make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise _disk_error(e, run_dir) or e from None


def _disk_error(e: BaseException, run_dir: Path) -> AlignError | None:
    """An OS error writing the run folder, as a user error that says where and what to do."""
    if isinstance(e, OSError) and e.errno in _DISK_ERRORS:
        where = e.filename or run_dir
        return AlignError(f"cannot write {where}: {_DISK_ERRORS[e.errno]}",
                          hint="free space or fix permissions there, or set output_dir to another folder; "
                               "finished stages are kept")
    return None


def summary_line(name: str, metrics: dict[str, Any], where: Path) -> str:
    """'sft: eval_loss 2.41 -> 1.93, 118 s, artifact runs/x/sft' from the metrics' *_after (and *_before)."""
    pairs = [f"{k[:-6]} {metrics[k[:-6] + '_before']:.4g} -> {v:.4g}" if k[:-6] + "_before" in metrics
             else f"{k[:-6]} {v:.4g}" for k, v in metrics.items() if k.endswith("_after")]
    seconds = f"{metrics.get('stage_seconds', 0):.0f} s"
    return f"{name}: {', '.join(pairs + [seconds])}, artifact {where}"


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    out = dataclasses.asdict(recipe)
    out.pop("source", None)
    return out
