"""Running a recipe: plan which stages run, are reused or resume, then run each into its artifact folder.

    runs/<recipe>/<stage>/     adapter/ or model/, tokenizer/, model.json, metrics.json,
                               config.yaml, train.log, artifact.json (written last: "finished")

A stage is written into `.<stage>.partial` (with checkpoints) and renamed into place only when
complete, so a crash never leaves a folder that looks finished; rerun, it resumes from its last
checkpoint. A finished stage whose inputs (`runs.stage_inputs`) are unchanged, and whose init and reward
stages are the very artifacts it was trained from (`lineage`), is reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import set_seed

from align import checkpoints, lineage
from align.console import plan_line
from align.distributed import Nothing, barrier, failure, is_main, on_main, rank_logging
from align.errors import AlignError
from align.evaluation.gates import GateFailed
from align.evaluation.table import RunEvaluations
from align.recipe import reward_stage
from align.runs import (
    FINISHED,
    Manifest,
    RunLock,
    check_stage_flags,
    fingerprint,
    finished,
    finished_metrics,
    inside,
    memory_error,
    read_manifest,
    refuse_damaged,
    run_folder,
    stage_inputs,
    stage_path,
    what_changed,
    write_error,
)
from align.schema import Recipe, StageBase
from align.stages import dpo, grpo, ppo, pretrain, rloo, rm, sft
from align.stages.common import StageContext
from align.tracking import Tracker

STAGES = {"pretrain": pretrain, "sft": sft, "rm": rm, "dpo": dpo, "ppo": ppo, "rloo": rloo, "grpo": grpo}
"""Stage kind -> the module whose `run(ctx)` trains it (`schema.STAGE_KINDS` holds the same kinds)."""

log = logging.getLogger("align")


@dataclasses.dataclass
class Step:
    stage: StageBase
    action: str  # run | reuse | resume | skip
    reason: str
    inputs: dict[str, Any]
    fingerprint: str
    folder: Path  # the stage's artifact folder (checked by `runs.stage_path`)
    checkpoint: Path | None = None  # with action "resume": the checkpoint to continue from
    forced: bool = False  # by --force / --from / a retrained upstream (its work folder says so: a rerun resumes it)
    metrics: dict[str, Any] | None = None  # with action "reuse": the finished stage's metrics


def plan(recipe: Recipe, force: tuple[str, ...] = (), start: str | None = None,
         only: str | None = None) -> list[Step]:
    """What `align run` would do with each stage, and why (`align run --dry-run` prints this)."""
    run_dir = run_folder(recipe)
    folders = {s.name: stage_path(run_dir, s.name) for s in recipe.stages}  # before anything is read or written
    names = list(folders)
    check_stage_flags(recipe, force, start, only)
    forced = _forced(names, force, start)
    manifest = read_manifest(run_dir / "manifest.json") or {}
    steps: list[Step] = []
    fps: dict[str, str] = {}
    for stage in recipe.stages:
        judge = reward_stage(recipe, stage)
        inputs = stage_inputs(recipe, stage, fps.get(stage.init), fps.get(judge) if judge else None)
        fp = fps[stage.name] = fingerprint(inputs)
        # forced by a request the interrupted run it came from has already carried out: reused, not redone
        done_by = lineage.retrained_by_request(manifest.get("forced"), stage.name, folders[stage.name]) \
            if stage.name in forced else None
        sources = lineage.made_from(folders.get(stage.init), folders.get(judge) if judge else None)
        step = _decide(stage, inputs, fp, folders[stage.name], steps, stage.name in forced and not done_by, only,
                       judge, manifest.get("stages", {}).get(stage.name, {}), sources, done_by)
        upstream = next((s for s in steps if s.stage.name == stage.init), None)
        if step.action != "skip" and upstream and upstream.action == "skip" and not finished(upstream.folder):
            raise AlignError(f"--only {stage.name}: it starts from stage {stage.init}, which has not finished",
                             hint=f"run without --only first, or with --only {stage.init}")
        steps.append(step)
    return steps


def _forced(names: list[str], force: tuple[str, ...], start: str | None) -> list[str]:
    """The stages --force and --from ask to retrain, in recipe order."""
    return [n for n in names if n in force or (start and names.index(n) >= names.index(start))]


def _decide(stage: StageBase, inputs: dict[str, Any], fp: str, folder: Path, steps: list[Step], forced: bool,
            only: str | None, judge: str | None, recorded: dict[str, Any], sources: dict[str, str | None],
            done_by: str | None) -> Step:
    """One stage's step. A retrain (by --force, --from, or because its init or reward stage retrained) records so
    in its work folder: interrupted, it is resumed by rerunning the same command or a plain one, and the finished
    artifact stays until it completes. A finished stage made from an init or reward artifact that has been
    replaced since (`sources`: their ids now) is stale, and so are checkpoints made from one."""
    def step(action: str, reason: str, **kw: Any) -> Step:
        return Step(stage, action, reason, inputs, fp, folder, **({"forced": forced} | kw))

    upstream = {"init": stage.init, "reward": judge}
    done = finished(folder)
    partial = checkpoints.resumable(checkpoints.work_folder(folder), fp)
    old_partial = partial and lineage.changed(partial.made_from, sources, upstream)
    partial = None if old_partial else partial
    ran = {s.stage.name: s.action in ("run", "resume") for s in steps}
    if only and stage.name != only:
        return step("skip", "--only " + only)
    if forced and partial and partial.forced:
        return step("resume", f"from step {partial.step} of the interrupted forced run",
                    checkpoint=partial.checkpoint)
    if forced:
        return step("run", "forced")
    refuse_damaged(folder, stage.name)
    if ran.get(stage.init):
        return step("run", f"its start model {stage.init} is new", forced=True)
    if judge and ran.get(judge):
        return step("run", f"its reward model {judge} is new", forced=True)
    stale = lineage.changed(done.get("made_from"), sources, upstream) if done else None
    if done and done.get("fingerprint") == fp and partial and (partial.forced or stale):
        return step("resume", f"from step {partial.step}, finishing the interrupted retrain (the finished "
                    "artifact stays until it completes)", checkpoint=partial.checkpoint, forced=True)
    if stale:
        return step("run", stale, forced=True)
    if done and done.get("fingerprint") == fp:
        metrics = finished_metrics(folder, fp, recorded)
        if metrics is None:
            return step("run", f"{folder.name}/metrics.json is missing or unreadable, and the manifest has none")
        return step("reuse", done_by or f"unchanged since {done.get('finished_at', '?')}", metrics=metrics)
    if done:
        return step("run", f"changed: {what_changed(done.get('inputs', {}), inputs)}")
    if partial:
        return step("resume", f"from step {partial.step}", checkpoint=partial.checkpoint, forced=partial.forced)
    return step("run", f"{old_partial}: its checkpoints are of the old one" if old_partial else "new")


def run_pipeline(recipe: Recipe, force: tuple[str, ...] = (), start: str | None = None,
                 only: str | None = None) -> dict[str, dict[str, Any]]:
    """Run, resume or reuse every stage (holding the run folder's lock); return each stage's metrics.

    Under several processes (`align.distributed`) every rank runs this; rank 0 alone holds the lock and
    writes the folder, manifest and tracker runs, and the plan it makes is the one every rank follows.
    SIGTERM stops it as Ctrl-C does: the stage is marked interrupted, its checkpoints kept, the lock released."""
    run_dir = run_folder(recipe)
    for stage in recipe.stages:  # a stage's folders, each a folder of the run folder: refused before anything is
        for form in ("{}", ".{}.partial", ".{}.old"):  # written (a link among them could lead out of it)
            stage_path(run_dir, stage.name, form)
    try:
        if is_main():
            _make_run_dir(run_dir)
        with _terminate_as_interrupt(), rank_logging(run_dir), \
                (RunLock(run_dir) if is_main() else contextlib.nullcontext()):
            steps = on_main(plan, recipe, force, start, only)
            manifest = Manifest(run_dir, recipe) if is_main() else Nothing()
            if is_main():  # the resolved recipe, overrides applied: what `align export` puts in the model card
                inside(run_dir, "recipe.yaml").write_text(yaml.safe_dump(recipe_dict(recipe), sort_keys=False))
                if asked := _forced([s.stage.name for s in steps], force, start):  # kept until a run completes
                    manifest.record("forced", lineage.request(manifest.data.get("forced"), asked,
                                                              {s.stage.name: s.folder for s in steps}, _now()))
            return _run_steps(recipe, run_dir, steps, manifest)
    except (AlignError, GateFailed, KeyboardInterrupt):
        raise
    except BaseException as e:
        if mapped := write_error(e, run_dir):
            raise mapped from e
        raise


def _run_steps(recipe: Recipe, run_dir: Path, steps: list[Step], manifest: Manifest) -> dict[str, dict[str, Any]]:
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
            log.info("%s", plan_line(name, step.action, step.reason))
            checkpoints.drop_stale(step.folder, step.fingerprint, is_main())
            results[name] = step.metrics or {}
            manifest.update(name, status="finished", reused_at=_now())
            _evaluate(evals, step, results[name], manifest, tracker)
            continue
        log.info("%s", plan_line(name, step.action, step.reason))
        manifest.update(name, status="running", started_at=_now(), inputs=step.inputs, fingerprint=step.fingerprint,
                        config=dataclasses.asdict(step.stage))
        try:  # the stage's tracker run stays open for its evaluation row and gate results
            try:
                results[name] = _run_stage(recipe, step, tracker)
            except KeyboardInterrupt:
                _record(manifest, name, status="interrupted", interrupted_at=_now(), error="interrupted (Ctrl-C or "
                        "SIGTERM); rerun the same command to resume from the last checkpoint")
                raise
            except BaseException as e:
                _record(manifest, name, status="failed", error=failure(e))
                if mapped := write_error(e, checkpoints.work_folder(step.folder)) or memory_error(e, name):
                    raise mapped from e
                raise
            info = finished(step.folder)
            manifest.update(name, status="finished", finished_at=info["finished_at"], metrics=results[name])
            _evaluate(evals, step, results[name], manifest, tracker)
        finally:
            tracker.finish()
    manifest.record("forced", None)  # every stage done: a --force request from now on retrains again
    if is_main():
        _report(evals, run_dir, tracker)
    return results


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler's stop, `kill`) raises KeyboardInterrupt as Ctrl-C does, so that every `finally`
    runs: the manifest says interrupted, logs are closed, the lock is released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _record(manifest: Manifest, stage: str, **fields: Any) -> None:
    """Record how a stage ended, where the folder still takes it: on a full disk the stage's own error counts."""
    try:
        manifest.update(stage, **fields)
    except OSError as e:
        log.warning("could not record in the manifest that %s is %s: %s", stage, fields["status"], e)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _evaluate(evals: RunEvaluations, step: Step, metrics: dict[str, Any], manifest: Manifest,
              tracker: Tracker) -> None:
    """The stage's evaluation row and gates (on the main process; the other ranks wait for the next stage)."""
    if not is_main():
        return
    try:
        evals.after(step.stage, step.fingerprint, metrics)
    except GateFailed as e:
        manifest.update(step.stage.name, status="failed_gate", gate=e.failed)
        tracker.summary(_row_summary(evals, step.stage.name))
        _report(evals, evals.run_dir, tracker)
        raise
    tracker.summary(_row_summary(evals, step.stage.name))


def _row_summary(evals: RunEvaluations, name: str) -> dict[str, Any]:
    """A stage's evaluation row, who judged it (marked when by its own reward) and its gate results, for its
    tracker run's summary."""
    from align.report_data import judged_by

    row = next((r for r in evals.rows if r["row"] == name), {})
    gates = {f"gate/{g['gate']}": "passed" if g["passed"] else "failed" for g in row.get("gates", [])}
    judges = {"eval/judged_by": text} if (text := judged_by(row)) else {}
    return {f"eval/{k}": v for k, v in row.get("metrics", {}).items()} | judges | gates


def _report(evals: RunEvaluations, run_dir: Path, tracker: Tracker) -> None:
    """evals.json, report.md and report.html in the run folder; the evaluation table to the tracker too."""
    from align.report import summary_rows, write_report

    if evals.write() is None and not any(finished(run_dir / s.name) for s in evals.recipe.stages):
        return
    _, html = write_report(run_dir)
    rows = summary_rows(run_dir)
    if rows:
        tracker.start("report")
        for i, row in enumerate(rows):
            tracker.log({f"eval/{k}": v for k, v in row.items() if isinstance(v, (int, float))}, step=i)
        tracker.table("evaluation", rows)
        tracker.summary({f"{row['row']}/{k}": v for row in rows for k, v in row.items() if k != "row"})
        tracker.html("report", html.read_text())
        tracker.finish()


def _run_stage(recipe: Recipe, step: Step, tracker: Tracker) -> dict[str, Any]:
    stage, final = step.stage, step.folder
    work = checkpoints.work_folder(final)
    resume = step.checkpoint
    init = stage_path(final.parent, stage.init) if stage.init != "base" else None
    judge = reward_stage(recipe, stage)
    sources = lineage.made_from(init, stage_path(final.parent, judge) if judge else None)
    if resume is None and is_main():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        checkpoints.start(work, step.fingerprint, step.forced, sources)
    barrier()  # the Trainer's checkpoints hold a file per rank: the folder must exist before any rank trains
    handler = logging.FileHandler(work / "train.log") if is_main() else logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger("align").getEffectiveLevel() > logging.INFO:  # the stage log keeps align's INFO lines
        logging.getLogger("align").setLevel(logging.INFO)
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
            _write_records(recipe, step, work, tracker, metrics, sources)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    if is_main():
        _swap_into_place(work, final)
        tracker.artifact(final, init, recipe.model.name)  # W&B lineage: this stage's artifact, made from init's
        log.info("%s", summary_line(stage.name, metrics, final))
    barrier()  # the next stage reads this artifact: no rank moves on before it is in place
    return metrics


def _write_records(recipe: Recipe, step: Step, work: Path, tracker: Tracker, metrics: dict[str, Any],
                   sources: dict[str, str | None]) -> None:
    """The stage's metrics and config, and last its completion record (so a crash before leaves no
    folder that looks finished), with a new artifact id and the ids of the artifacts it was made from."""
    stage = step.stage
    tracker.summary(metrics)  # constants, not curves: the summary holds them
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (work / "config.yaml").write_text(yaml.safe_dump(
        {"model": dataclasses.asdict(recipe.model), "stage": dataclasses.asdict(stage)}, sort_keys=False))
    shutil.rmtree(inside(work, "checkpoints"), ignore_errors=True)
    (work / FINISHED).write_text(json.dumps({
        "status": "finished", "stage": stage.name, "kind": stage.kind, "fingerprint": step.fingerprint,
        "artifact_id": lineage.new_id(), "made_from": sources, "inputs": step.inputs,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "recipe": recipe.source},
        indent=2))


def _swap_into_place(work: Path, final: Path) -> None:
    """Replace `final` by `work`; at every instant `final` is either absent or a finished artifact."""
    old = stage_path(final.parent, final.name, ".{}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)


def _make_run_dir(run_dir: Path) -> None:
    """Create the run folder and write a file in it: any failure here is the folder's (/proc, a read-only disk)."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = inside(run_dir, f".write-test-{os.getpid()}")
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise write_error(e, run_dir) or AlignError(f"cannot make the run folder {run_dir}: "
                                                    f"{(e.strerror or str(e)).lower()}",
                                                    hint="set output_dir to a folder you can write") from e


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
