"""Running a recipe: plan which stages run, are reused or resume, then run each into its artifact folder.

    runs/<recipe>/<stage>/     adapter/ or model/, tokenizer/, model.json, metrics.json,
                               config.yaml, train.log, artifact.json (written last: "finished")

A stage is written into `.<stage>.partial` (with checkpoints) and renamed into place only when
complete, so a crash never leaves a folder that looks finished; rerun, it resumes from its last
checkpoint. A finished stage whose inputs (`runs.stage_inputs`) are unchanged is reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import set_seed

from align.distributed import Nothing, barrier, failure, is_main, on_main, rank_logging
from align.errors import AlignError
from align.evaluation.gates import GateFailed
from align.evaluation.table import RunEvaluations
from align.recipe import reward_stage
from align.runs import FINISHED, Manifest, RunLock, fingerprint, finished, stage_inputs, what_changed
from align.schema import Recipe, StageBase
from align.stages import dpo, grpo, ppo, pretrain, rloo, rm, sft
from align.stages.common import StageContext
from align.tracking import Tracker

STAGES = {"pretrain": pretrain, "sft": sft, "rm": rm, "dpo": dpo, "ppo": ppo, "rloo": rloo, "grpo": grpo}
"""Stage kind -> the module whose `run(ctx)` trains it (`schema.STAGE_KINDS` holds the same kinds)."""

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
        judge = reward_stage(recipe, stage)
        inputs = stage_inputs(recipe, stage, fps.get(stage.init), fps.get(judge) if judge else None)
        fp = fps[stage.name] = fingerprint(inputs)
        done = finished(run_dir / stage.name)
        upstream = next((s for s in steps if s.stage.name == stage.init), None)
        scorer = next((s for s in steps if s.stage.name == judge), None)
        if only and stage.name != only:
            step = Step(stage, "skip", "--only " + only, inputs, fp)
        elif stage.name in forced:
            step = Step(stage, "run", "forced", inputs, fp)
        elif upstream and upstream.action in ("run", "resume"):
            step = Step(stage, "run", f"its init stage {stage.init} runs again", inputs, fp)
        elif scorer and scorer.action in ("run", "resume"):
            step = Step(stage, "run", f"its reward model {judge} runs again", inputs, fp)
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
    """Run, resume or reuse every stage (holding the run folder's lock); return each stage's metrics.

    Under several processes (`align.distributed`) every rank runs this; rank 0 alone holds the lock and
    writes the folder, manifest and tracker runs, and the plan it makes is the one every rank follows."""
    run_dir = Path(recipe.run_dir)
    if is_main():
        _make_run_dir(run_dir)
    with rank_logging(run_dir), (RunLock(run_dir) if is_main() else contextlib.nullcontext()):
        steps = on_main(plan, recipe, force, start, only)
        manifest = Manifest(run_dir, recipe) if is_main() else Nothing()
        group = f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        tracking = recipe.tracking if is_main() else dataclasses.replace(recipe.tracking, backend="none")
        tracker = Tracker(tracking, run_dir, group, recipe_dict(recipe))
        results: dict[str, dict[str, Any]] = {}
        evals = RunEvaluations(recipe, run_dir)
        if is_main():
            evals.baseline()
        for step in steps:
            name = step.stage.name
            if step.action == "skip":
                continue
            if step.action == "reuse":
                log.info("%s: reused (%s)", name, step.reason)
                results[name] = json.loads((run_dir / name / "metrics.json").read_text())
                manifest.update(name, status="finished", reused_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
                _evaluate(evals, step, results[name], manifest, tracker)
                continue
            log.info("%s: running (%s)", name, step.reason)
            manifest.update(name, status="running", started_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                            inputs=step.inputs, fingerprint=step.fingerprint, config=dataclasses.asdict(step.stage))
            try:
                results[name] = _run_stage(recipe, step, run_dir / name, tracker)
            except BaseException as e:
                manifest.update(name, status="failed", error=failure(e))
                raise _disk_error(e, run_dir) or e from None
            finally:
                tracker.finish()
            info = finished(run_dir / name)
            manifest.update(name, status="finished", finished_at=info["finished_at"], metrics=results[name])
            _evaluate(evals, step, results[name], manifest, tracker)
        if is_main():
            _report(evals, run_dir, tracker)
    return results


def _evaluate(evals: RunEvaluations, step: Step, metrics: dict[str, Any], manifest: Manifest,
              tracker: Tracker) -> None:
    """The stage's evaluation row and gates (on the main process; the other ranks wait for the next stage)."""
    if not is_main():
        return
    try:
        evals.after(step.stage, step.fingerprint, metrics)
    except GateFailed as e:
        manifest.update(step.stage.name, status="failed_gate", gate=e.failed)
        _report(evals, evals.run_dir, tracker)
        raise


def _report(evals: RunEvaluations, run_dir: Path, tracker: Tracker) -> None:
    """evals.json, report.md and report.html in the run folder; the evaluation table to the tracker too."""
    from align.report import summary_rows, write_report

    if evals.write() is None and not any(finished(run_dir / s.name) for s in evals.recipe.stages):
        return
    md, html = write_report(run_dir)
    rows = summary_rows(run_dir)
    if rows:
        tracker.start("report")
        for i, row in enumerate(rows):
            tracker.log({f"eval/{k}": v for k, v in row.items() if isinstance(v, (int, float))}, step=i)
        tracker.table("evaluation", rows)
        tracker.html({f"charts/{p.stem}": p.read_text() for p in sorted((run_dir / "report_plots").glob("*.svg"))})
        tracker.finish()
    log.info("report: %s (and %s)", html, md.name)


def _run_stage(recipe: Recipe, step: Step, final: Path, tracker: Tracker) -> dict[str, Any]:
    stage = step.stage
    work = final.with_name(f".{final.name}.partial")
    resume = step.checkpoint
    if resume is None and is_main():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "fingerprint").write_text(step.fingerprint)
    barrier()  # the Trainer's checkpoints hold a file per rank: the folder must exist before any rank trains
    handler = logging.FileHandler(work / "train.log") if is_main() else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger("align").getEffectiveLevel() > logging.INFO:  # the stage log keeps align's INFO lines
        logging.getLogger("align").setLevel(logging.INFO)
    init = final.parent / stage.init if stage.init != "base" else None
    log.info("%s: %s stage from %s%s", stage.name, stage.kind, init or recipe.model.name,
             f", resuming {resume}" if resume else "")
    start = time.perf_counter()
    try:
        tracker.start(stage.name, work if is_main() else None)
        entry = STAGES[stage.kind].run
        ctx = StageContext(recipe, stage, work, init, tracker, str(resume) if resume else None)
        set_seed(ctx.seed)  # before any model is built: new adapters and heads start from the seed
        metrics = entry(ctx)
        metrics["stage_seconds"] = time.perf_counter() - start
        if is_main():  # every rank trained the same model; one writes its records
            _write_records(recipe, step, work, tracker, metrics)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if is_main():
        _swap_into_place(work, final)
        log.info("%s", summary_line(stage.name, metrics, final))
    barrier()  # the next stage reads this artifact: no rank moves on before it is in place
    return metrics


def _write_records(recipe: Recipe, step: Step, work: Path, tracker: Tracker, metrics: dict[str, Any]) -> None:
    """The stage's metrics and config, and last its completion record (so a crash before leaves no
    folder that looks finished)."""
    stage = step.stage
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
