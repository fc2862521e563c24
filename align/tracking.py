"""Experiment tracking: W&B (offline without an API key, online with one), TensorBoard, or none.

One W&B run per stage, grouped by pipeline run, `job_type` = the stage name, the resolved recipe as
config. Every logged row also goes to the stage folder's `history.jsonl` (the report plots it, whatever
the backend). `read_wandb_history` reads an offline run's `.wandb` file back (wandb ships no reader).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

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

    def start(self, stage: str, folder: Path | None = None) -> None:
        """Open the stage's run; with `folder`, log rows also go to `folder/history.jsonl`."""
        self.finish()
        if folder is not None:
            self._history = (Path(folder) / "history.jsonl").open("a")
        if self.spec.backend == "wandb":
            import wandb

            # an explicit WANDB_MODE wins; otherwise online exactly when there is a key to log in with
            mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
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
        except wandb.errors.Error as e:
            if mode == "offline":
                raise
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            key = os.environ.get("WANDB_API_KEY")
            logging.getLogger(__name__).warning(
                "W&B: cannot log online (%s); logging offline to %s instead (`wandb sync` uploads it later)",
                why.replace(key, "<WANDB_API_KEY>") if key else why, self.run_dir / "wandb")
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

    def html(self, items: dict[str, str]) -> None:
        """HTML snippets (the report's SVG charts) to W&B as media; other backends keep none."""
        if self._run is not None and items:
            import wandb

            self._run.log({name: wandb.Html(text) for name, text in items.items()})

    def summary(self, metrics: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})

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


def find_wandb_files(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/*run-*/run-*.wandb"))
