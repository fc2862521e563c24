"""A stage's work folder and its checkpoints: which checkpoint a rerun resumes from, and the running totals
saved with each so the metrics of a resumed stage cover all of its parts.

    runs/<recipe>/.<stage>.partial/   fingerprint   the inputs it was started with (`runs.fingerprint`)
                                      forced        present when `--force`/`--from` started it, or its
                                                    init/reward stage was retrained (a rerun resumes it)
                                      made_from.json  the ids of the artifacts it trains from (`lineage`)
                                      checkpoints/checkpoint-N/   the Trainer's, or PPO's state.pt

A checkpoint counts only when complete. The Trainer writes weights, optimizer, scheduler and RNG first and
`trainer_state.json` last, then deletes older checkpoints; a crash or a full disk in between leaves a
`checkpoint-N` without its state (often just a README), which is skipped for the one before it. PPO writes
its checkpoint under a temporary name and renames it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from align.paths import read_regular
from align.runs import stage_path

log = logging.getLogger("align")
WEIGHTS = ("*.safetensors", "*.bin", "pytorch_model_fsdp_*", "global_step*")  # plain, FSDP, DeepSpeed layouts
OPTIMIZER = ("optimizer.pt", "optimizer.bin", "optimizer_*", "*-optimizer.pt", "global_step*")


@dataclass
class Resumable:
    checkpoint: Path
    forced: bool  # the interrupted attempt was started by --force / --from, or because its upstream retrained
    made_from: dict[str, Any] | None = None  # the artifact ids it trains from (None: not recorded)

    @property
    def step(self) -> int:
        """The optimizer step the checkpoint was saved at (`checkpoint-N`: N)."""
        return int(self.checkpoint.name.split("-")[-1])


def resumable(work: Path, fingerprint: str) -> Resumable | None:
    """The latest complete checkpoint in the work folder `work` when it was started with these inputs."""
    try:
        if read_regular(work / "fingerprint") != fingerprint:
            return None
    except OSError:
        return None
    found = sorted((p for p in (work / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in found:
        missing = incomplete(checkpoint)
        if not missing:
            return Resumable(checkpoint, (work / "forced").exists(), _read_json(work / "made_from.json"))
        log.warning("%s is incomplete (%s; a crash or a full disk while it was written): skipped", checkpoint, missing)
    return None


def work_folder(folder: Path) -> Path:
    """`.<stage>.partial`, where the stage in `folder` is written (and checkpointed) until it is complete."""
    return stage_path(folder.parent, folder.name, ".{}.partial")


def drop_stale(folder: Path, fp: str, main: bool) -> None:
    """Remove a reused stage's work folder left with these inputs and no complete checkpoint (`plan` resumes
    one that has): nothing in it can be used. One with other inputs is kept, resumable if they come back."""
    work = work_folder(folder)
    try:
        stale = read_regular(work / "fingerprint") == fp
    except OSError:
        stale = work.is_dir()  # it died before recording its inputs
    if main and stale:
        log.info("%s: removing %s (an interrupted attempt with no complete checkpoint; the finished artifact "
                 "is used)", folder.name, work)
        shutil.rmtree(work, ignore_errors=True)


def start(work: Path, fingerprint: str, forced: bool, made_from: dict[str, Any] | None = None) -> None:
    """Record in a new work folder what started it, for a rerun to know whether its checkpoints fit."""
    (work / "fingerprint").write_text(fingerprint)
    (work / "made_from.json").write_text(json.dumps(made_from or {}))
    if forced:
        (work / "forced").write_text("started by --force or --from, or by a retrained upstream: a rerun resumes it\n")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_regular(path))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def incomplete(checkpoint: Path) -> str | None:
    """What a checkpoint lacks to resume from, or None when it is complete."""
    if (checkpoint / "state.pt").is_file():  # PPO's: written whole, then renamed into place
        return None
    state = _read_json(checkpoint / "trainer_state.json")
    if state is None:
        return "no readable trainer_state.json"
    if str(state.get("global_step")) != checkpoint.name.split("-")[-1]:
        return f"trainer_state.json is of step {state.get('global_step')}"
    for what, patterns in (("weights", WEIGHTS), ("optimizer state", OPTIMIZER)):
        if not any(any(checkpoint.glob(p)) for p in patterns):
            return f"no {what}"
    return None


class StageProgress(TrainerCallback, ExportableState):
    """Totals of the training so far (steps, loss summed over steps, tokens, seconds), saved in every checkpoint
    through the Trainer's `stateful_callbacks`, and read back on resume: `whole` then gives the stage's train
    loss, tokens and seconds over every part, not only the part after the crash."""

    def __init__(self, totals: dict[str, float] | None = None):
        self.begin = totals or {"step": 0, "loss_sum": 0.0, "tokens": 0, "seconds": 0.0}
        self.step = self.logged = self.begin["step"]  # the last step seen, the last step whose loss was logged
        self.loss_sum, self.tokens = 0.0, 0
        self.started = time.perf_counter()

    @classmethod
    def resuming(cls, checkpoint: str | Path | None) -> StageProgress:
        """Progress continuing from `checkpoint` (none: from the start); a checkpoint without totals (written
        by an older align) counts from its step with the Trainer's log history."""
        if not checkpoint:
            return cls()
        try:
            state = json.loads(read_regular(Path(checkpoint) / "trainer_state.json"))
        except (OSError, ValueError):
            return cls()
        saved = state.get("stateful_callbacks", {}).get(cls.__name__, {})
        return cls(saved.get("attributes", {}).get("totals") or _from_history(state))

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        if control.should_save:  # log the loss up to the checkpoint: nothing trained is left out of the totals
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs and state.global_step > self.logged:
            self.loss_sum += logs["loss"] * (state.global_step - self.logged)
            self.logged = state.global_step
        if "num_tokens" in logs:  # TRL's count of this process's attempt, cumulative
            self.tokens = int(logs["num_tokens"])

    def totals(self) -> dict[str, float]:
        return {"step": self.step, "loss_sum": self.begin["loss_sum"] + self.loss_sum,
                "tokens": self.begin["tokens"] + self.tokens,
                "seconds": self.begin["seconds"] + time.perf_counter() - self.started}

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"totals": self.totals()}}

    def whole(self, steps: int, loss: float, seconds: float, tokens: int | None) -> dict[str, Any]:
        """The stage's train loss (mean over all `steps`), seconds and tokens, from this attempt's (`loss`: its
        mean over the steps it trained) and the totals it resumed from."""
        begin = self.begin
        out: dict[str, Any] = {"train_seconds": begin["seconds"] + seconds,
                               "train_loss": (begin["loss_sum"] + loss * (steps - begin["step"])) / max(steps, 1)}
        if tokens is not None:
            out["train_tokens"] = begin["tokens"] + tokens
            out["train_tokens_per_second"] = out["train_tokens"] / out["train_seconds"]
        if begin["step"]:
            out["resumed_from_step"] = begin["step"]
        return out


def _from_history(state: dict[str, Any]) -> dict[str, float]:
    """Totals from a checkpoint's log history alone: loss over the logged steps, TRL's last token count."""
    loss_sum, last, tokens = 0.0, 0, 0
    for entry in state.get("log_history", []):
        if "loss" in entry:
            loss_sum += entry["loss"] * (entry["step"] - last)
            last = entry["step"]
        tokens = int(entry.get("num_tokens", tokens))
    return {"step": state.get("global_step", 0), "loss_sum": loss_sum, "tokens": tokens, "seconds": 0.0}
