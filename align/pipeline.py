"""Running a recipe: each stage in order, each into its own artifact folder in the run folder.

    runs/<recipe>/<stage>/     adapter/ or model/, tokenizer/, model.json, metrics.json,
                               config.yaml, train.log, artifact.json (written last: "finished")

A stage is written into `.<stage>.partial` and renamed into place only when complete, so a crash never
leaves a folder that looks finished. A finished stage whose fingerprint (its config, the model, its
data files and its upstream artifact) is unchanged is reused instead of retrained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from align.recipe import data_kind
from align.schema import Recipe, StageBase
from align.stages.common import StageContext
from align.tracking import Tracker

log = logging.getLogger("align")
FINISHED = "artifact.json"


def run_pipeline(recipe: Recipe, force: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Run (or reuse) every stage; return each stage's metrics."""
    run_dir = Path(recipe.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    group = f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker = Tracker(recipe.tracking, run_dir, group, recipe_dict(recipe))
    results: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, str] = {}
    try:
        for stage in recipe.stages:
            final = run_dir / stage.name
            fp = fingerprint(recipe, stage, fingerprints.get(stage.init))
            fingerprints[stage.name] = fp
            done = finished(final)
            if done and done.get("fingerprint") == fp and stage.name not in force:
                log.info("%s: unchanged since %s, reusing %s", stage.name, done["finished_at"], final)
                results[stage.name] = json.loads((final / "metrics.json").read_text())
                continue
            results[stage.name] = _run_stage(recipe, stage, final, fp, tracker)
    finally:
        tracker.finish()
    return results


def finished(artifact: Path) -> dict[str, Any] | None:
    """The artifact's completion record, or None if the folder is missing or unfinished."""
    try:
        info = json.loads((artifact / FINISHED).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("status") == "finished" else None


def _run_stage(recipe: Recipe, stage: StageBase, final: Path, fp: str, tracker: Tracker) -> dict[str, Any]:
    work = final.with_name(f".{final.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    handler = logging.FileHandler(work / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger("align").getEffectiveLevel() > logging.INFO:  # the stage log keeps align's INFO lines
        logging.getLogger("align").setLevel(logging.INFO)
    init = final.parent / stage.init if stage.init != "base" else None
    log.info("%s: %s stage starting from %s", stage.name, stage.kind, init or recipe.model.name)
    start = time.perf_counter()
    try:
        tracker.start(stage.name)
        entry = importlib.import_module(f"align.stages.{stage.kind}").run
        metrics = entry(StageContext(recipe, stage, work, init, tracker))
        metrics["stage_seconds"] = time.perf_counter() - start
        tracker.log({f"final/{k}": v for k, v in metrics.items()})
        tracker.summary(metrics)
        (work / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (work / "config.yaml").write_text(yaml.safe_dump(
            {"model": dataclasses.asdict(recipe.model), "stage": dataclasses.asdict(stage)}, sort_keys=False))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
        (work / FINISHED).write_text(json.dumps({
            "status": "finished", "stage": stage.name, "kind": stage.kind, "fingerprint": fp,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "recipe": recipe.source}, indent=2))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        tracker.finish()
    _swap_into_place(work, final)
    log.info("%s", summary_line(stage.name, metrics, final))
    return metrics


def _swap_into_place(work: Path, final: Path) -> None:
    """Replace `final` by `work`; at every instant `final` is either absent or a finished artifact."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)


def summary_line(name: str, metrics: dict[str, Any], where: Path) -> str:
    """'sft: eval_loss 2.41 -> 1.93, 118 s, artifact runs/x/sft' from the metrics' *_before/*_after pairs."""
    pairs = [f"{k[:-7]} {metrics[k]:.4g} -> {metrics[k[:-7] + '_after']:.4g}"
             for k in metrics if k.endswith("_before") and k[:-7] + "_after" in metrics]
    seconds = f"{metrics.get('stage_seconds', 0):.0f} s"
    return f"{name}: {', '.join(pairs + [seconds])}, artifact {where}"


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    out = dataclasses.asdict(recipe)
    out.pop("source", None)
    return out


def fingerprint(recipe: Recipe, stage: StageBase, upstream: str | None) -> str:
    """Hash of everything a stage's result depends on: config, model spec, data contents, upstream."""
    data = stage.data or getattr(recipe.data, data_kind(stage.kind))
    parts = {"stage": dataclasses.asdict(stage), "model": dataclasses.asdict(recipe.model), "seed": recipe.seed,
             "upstream": upstream, "data": {}}
    for ref in filter(None, (data.train, data.eval)):
        path = Path(ref)
        parts["data"][ref] = _file_hash(path) if path.is_file() else ref
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
