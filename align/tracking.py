"""Experiment tracking: W&B (offline without an API key, online with one), TensorBoard, or none.

One W&B run per stage, grouped by pipeline run, `job_type` = the stage name, the resolved recipe as
config. Training curves are logged as scalars (W&B draws them); a stage's final metrics, evaluation row
and gate results go to its run's summary, not its history. Every logged row also goes to the stage
folder's `history.jsonl` (the report plots it, whatever the backend).

Each stage logs its artifact folder as a W&B artifact (type `model`, or `reward-model` for a reward head)
and declares the artifact it started from as an input, so W&B's lineage graph shows base -> sft -> rm /
dpo / ppo. The base model is an artifact holding only a reference to where it was loaded from (no bytes
uploaded). Offline, both are recorded in the run file and take effect at `wandb sync`.

`read_wandb_history`, `read_wandb_summary` and `read_wandb_artifacts` read an offline run's `.wandb` file
back (wandb ships no reader).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from align import records
from align.errors import AlignError
from align.schema import TrackingSpec

log = logging.getLogger("align.metrics")  # to the stage log file; the console shows the progress bar


class Tracker:
    """Sends one stage's metrics to the recipe's backend and to the stage log."""

    def __init__(self, spec: TrackingSpec, run_dir: Path, group: str, config: dict[str, Any]):
        self.spec, self.run_dir, self.group, self.config = spec, Path(run_dir), group, config
        self._run: Any = None
        self._tb: Any = None
        self._history: Any = None
        self._mode = "offline"

    def start(self, stage: str, folder: Path | None = None) -> None:
        """Open the stage's run; with `folder`, log rows also go to `folder/history.jsonl`."""
        self.finish()
        if folder is not None:
            self._history = (Path(folder) / "history.jsonl").open("a")
        if self.spec.backend == "wandb":
            import wandb

            # an explicit WANDB_MODE wins; otherwise online exactly when there is a key to log in with
            mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
            self._mode = "offline" if mode in ("offline", "dryrun") else mode
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._run = self._wandb_init(wandb, stage, mode)
        elif self.spec.backend == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise AlignError("tracking.backend: tensorboard needs the tensorboard package",
                                 hint="pip install tensorboard, or set tracking.backend: wandb or none") from None
            self._tb = SummaryWriter(str(self.run_dir / "tensorboard" / stage))

    def _wandb_init(self, wandb: Any, stage: str, mode: str) -> Any:
        """`wandb.init`; when going online fails (a bad key, no network: wandb retries for 90 s, then raises),
        warn and log offline instead, so the training is not lost to the tracker. The key is never printed."""
        # 30 s unless WANDB_INIT_TIMEOUT says otherwise: enough for a slow login, not 90 s of retries offline
        timeout = {} if os.environ.get("WANDB_INIT_TIMEOUT") else {"init_timeout": 30}
        kwargs = dict(project=self.spec.project, entity=self.spec.entity, group=self.group, job_type=stage,
                      name=f"{self.group}-{stage}", tags=self.spec.tags, config=self.config, dir=str(self.run_dir),
                      reinit="finish_previous")
        try:
            return wandb.init(mode=mode, settings=wandb.Settings(silent=True, console="off", **timeout), **kwargs)
        except (wandb.errors.Error, ValueError) as e:  # ValueError: a setting W&B's own validation refuses
            key = os.environ.get("WANDB_API_KEY")
            why = " ".join(str(e).split())[:300] or type(e).__name__
            why = why.replace(key, "<WANDB_API_KEY>") if key else why
            if mode in ("offline", "disabled", "dryrun") or not isinstance(e, wandb.errors.Error):
                raise AlignError(f"tracking: W&B refuses the settings ({why})",
                                 hint="fix tracking (and WANDB_* variables), or set tracking: none") from None
            logging.getLogger(__name__).warning(
                "W&B: cannot log online (%s); logging offline to %s instead (`wandb sync` uploads it later)",
                why, self.run_dir / "wandb")
            return wandb.init(mode="offline", settings=wandb.Settings(silent=True, console="off"), **kwargs)

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if not metrics:
            return
        log.info("step %s: %s", step, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self._history is not None:
            self._history.write(json.dumps({"step": step, **metrics}) + "\n")
            self._history.flush()
        if self._run is not None:
            self._run.log(metrics, step=step)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step or 0)

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """A table of rows with the same keys (e.g. sample generations) to W&B; other backends keep no tables."""
        if self._run is not None and rows:
            import wandb

            columns = list(rows[0])
            self._run.log({name: wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])})

    def html(self, name: str, text: str) -> None:
        """One HTML page (the run's report) to W&B as a single panel; other backends keep none."""
        if self._run is not None:
            import wandb

            self._run.log({name: wandb.Html(text)})

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})

    def artifact(self, folder: Path, parent: Path | None, base_model: str) -> None:
        """`folder` (a finished stage) as this run's output artifact, and `parent` (the stage it started from;
        None: the base model) as its input, so that W&B draws the lineage."""
        if self._run is None:
            return
        try:
            self._use(_stage_artifact(parent) if parent is not None else _base_artifact(base_model))
            self._run.log_artifact(_stage_artifact(folder))
        except Exception as e:  # tracking must never cost a finished stage: the folder is in place already
            logging.getLogger("align").warning("W&B: could not log %s as an artifact (%s)", folder, e)

    def _use(self, artifact: Any) -> None:
        if self._mode != "offline":
            self._run.use_artifact(artifact)
        else:
            # wandb refuses `use_artifact` offline; this is what it does online for a new artifact, recorded in
            # the run file for `wandb sync` (tests/test_pins.py fails if a wandb upgrade changes it)
            self._run._log_artifact(artifact, is_user_created=True, use_after_commit=True)

    def finish(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
        if self._run is not None:
            self._run.finish()
            self._run = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def callback(self) -> TrainerCallback:
        return _TrainerLogs(self)


# what a stage artifact's W&B copy holds: the model and what describes it (not logs, which grow later)
_ARTIFACT_FILES = ("adapter", "model", "tokenizer", "model.json", "config.yaml", "metrics.json", "artifact.json")


def artifact_name(text: str) -> str:
    """A W&B artifact name (letters, digits, '-', '_', '.') for a run folder, stage or model name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:120] or "model"


def _stage_artifact(folder: Path) -> Any:
    """A stage folder as a `wandb.Artifact` named <run folder>-<stage>; its digest depends only on the files,
    so the same folder built again by a later stage's run (as its input) is the same artifact version."""
    import wandb

    folder = Path(folder)
    meta = records.read(folder / "model.json", records.MODEL, hint="retrain the stage that wrote it")
    done = records.read(folder / "artifact.json", records.ARTIFACT, hint="retrain the stage that wrote it")
    art = wandb.Artifact(artifact_name(f"{folder.parent.name}-{folder.name}"),
                         type="reward-model" if meta["head"] == "reward" else "model",
                         metadata={"stage": folder.name, "kind": done.get("kind"),
                                   "fingerprint": done.get("fingerprint"), "base": meta["base"], "head": meta["head"],
                                   "weights": meta["weights"]})
    for name in _ARTIFACT_FILES:
        path = folder / name
        if path.is_dir():
            # immutable: W&B reads the files when it uploads (at the run's end, or at `wandb sync` offline)
            # instead of copying (possibly many GB of) weights to its staging folder first
            art.add_dir(str(path), name=name, policy="immutable")
        elif path.is_file():
            art.add_file(str(path), name=name, policy="immutable")
    return art


def _base_artifact(name: str) -> Any:
    """The base model as an artifact that only references where it comes from (nothing is uploaded)."""
    import wandb

    from align.models import EMBEDDED, resolve_model

    local = Path(resolve_model(name)) if name in EMBEDDED else Path(name).expanduser()  # embedded: its converted copy
    art = wandb.Artifact(artifact_name(name if name in EMBEDDED or not local.exists() else local.name), type="model",
                         metadata={"base": name})
    uri = local.resolve().as_uri() if local.exists() else f"https://huggingface.co/{name}"
    art.add_reference(uri, name="model", checksum=False)
    return art


class _TrainerLogs(TrainerCallback):
    """Forwards Trainer logs as train/<name> and eval/<name> (TRL's own W&B reporting stays off)."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            renamed = {(f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"): v for k, v in logs.items()}
            self.tracker.log(renamed, step=state.global_step)


def read_wandb_records(path: str | Path) -> list[Any]:
    """Every `Record` protobuf in a `.wandb` file: a 7-byte W&B header, then LevelDB-log 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise AlignError(f"{path} is not a W&B run file")
    records, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is zero padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4: pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST piece of a record split across blocks
            rec = pb.Record()
            rec.ParseFromString(buf)
            records.append(rec)
            buf = b""
        elif kind == 0:
            buf = b""
    return records


def read_wandb_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows logged with `run.log`, as dicts (`_step` included)."""
    rows = []
    for rec in read_wandb_records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append({(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def read_wandb_summary(path: str | Path) -> dict[str, Any]:
    """The run's summary (its last state) as a dict."""
    out: dict[str, Any] = {}
    for rec in read_wandb_records(path):
        if rec.WhichOneof("record_type") == "summary":
            for i in rec.summary.update:
                out[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
    return out


def read_wandb_artifacts(path: str | Path) -> list[dict[str, Any]]:
    """The artifacts a run logged, in order: name, type, metadata, file paths, and `used` (an input of the
    run, declared offline) or not (an output)."""
    out = []
    for rec in read_wandb_records(path):
        if rec.WhichOneof("record_type") == "artifact":
            a = rec.artifact
            out.append({"name": a.name, "type": a.type, "digest": a.digest, "used": a.use_after_commit,
                        "metadata": json.loads(a.metadata or "{}"),
                        "files": sorted(e.path for e in a.manifest.contents)})
    return out


def find_wandb_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))
