"""What a pipeline needs to know when it runs as one of several data-parallel processes (ranks).

Launched by `align run --num-processes N`, `torchrun` or `accelerate launch`, every rank runs the whole
pipeline: each trains on its share of every batch (the TRL trainers do the DDP / FSDP / DeepSpeed part).
Around the trainers, align keeps one rule: rank 0 alone writes the run folder (lock, manifest, artifacts,
reports, W&B runs), and the other ranks wait for it (`barrier`) wherever they next read what it wrote.

    runs/<recipe>/logs/rank-<r>.log     every rank's log (align's lines, warnings, its error if it fails)

A failing rank records its error for the launcher (`record_error`, read by `align.launch`), which shows
the first one: the rank that failed first is the cause, the others only lost their peer.
Single-process runs (no RANK / WORLD_SIZE in the environment) skip all of this at no cost.

`device()` is the one device decision (accelerate's `PartialState().device`); PPO's collectives and gradient
averaging are accelerate's (`align/stages/ppo.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
ERROR_DIR_ENV = "ALIGN_ERROR_DIR"  # set by align.launch: where each failing rank leaves its error
FAIL_ENV = "ALIGN_FAIL_RANK"  # "RANK[:STEP]": that rank raises at that training step (tests of the teardown)
log = logging.getLogger("align")


def rank() -> int:
    """This process's global rank (0 when not launched as one of several)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on the one process that writes the run folder; read from the launcher's environment, so it
    holds before (and without) any process group."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (no-op in a single process)."""
    if world_size() > 1:
        _state().wait_for_everyone()


def _state() -> Any:
    """accelerate's process state, which joins the process group on first use. `cpu` must be said on a
    machine without GPUs, or accelerate sees no backend and every collective silently does nothing."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def device() -> torch.device:
    """THE device: where every model align loads (`align.models.load_model`) and every batch goes. accelerate's
    process state picks it: this rank's GPU (LOCAL_RANK under a launcher) when CUDA is there, else the CPU.
    Nothing else in align chooses a device; tests patch this function to check placement."""
    return _state().device


def on_main(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` computed on rank 0 and sent to every rank, so all ranks act on one answer (the plan:
    rank 0 reads the run folder before it changes it). An error raised there stops the others too."""
    if world_size() == 1:
        return fn(*args)
    from accelerate.utils import broadcast_object_list

    _state()
    box: list[Any] = [None, None]
    if is_main():
        try:
            box[0] = fn(*args)
        except Exception as e:
            box[1] = str(e)
            broadcast_object_list(box)
            raise
    broadcast_object_list(box)
    if box[1] is not None:
        from align.errors import AlignError

        raise AlignError(f"rank 0 failed: {box[1].splitlines()[0]}")
    return box[0]


def gathered_state_dict(trainer: Any) -> dict[str, Any] | None:
    """The model's full weights when FSDP or DeepSpeed ZeRO-3 shards them across ranks, else None (the model
    holds them whole). Call on EVERY rank: gathering is a collective; rank 0 then writes the result."""
    from accelerate.utils import DistributedType

    acc = getattr(trainer, "accelerator", None)
    if acc is None:
        return None
    zero3 = acc.distributed_type == DistributedType.DEEPSPEED and acc.state.deepspeed_plugin.zero_stage == 3
    if acc.distributed_type == DistributedType.FSDP or zero3:
        return acc.get_state_dict(trainer.model_wrapped)
    return None


class Nothing:
    """Stands in for rank 0's writers (manifest, ...) on the other ranks: every method call does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def rank_logging(run_dir: Path) -> Iterator[None]:
    """Under several ranks: each logs to `logs/rank-<r>.log`, only rank 0 prints INFO lines on the console
    (N copies of every line help nobody), and a rank's error is logged and recorded for the launcher."""
    if world_size() == 1:
        yield
        return
    folder = Path(run_dir) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(folder / f"rank-{rank()}.log", mode="w")
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank {rank()} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    quiet = [h for h in root.handlers if type(h) is logging.StreamHandler and h.level < logging.WARNING] \
        if not is_main() else []  # the console handler; file handlers keep every line
    for h in quiet:
        h.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        yield
    except BaseException as e:
        log.error("rank %d failed: %s\n%s", rank(), e, traceback.format_exc())
        record_error(e)
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
        for h in quiet:
            h.setLevel(logging.NOTSET)


def record_error(e: BaseException) -> None:
    """Leave this rank's error where `align.launch` looks for it (when launched by align)."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if not folder:
        return
    from align.errors import AlignError

    message = str(e) if isinstance(e, AlignError) else f"{type(e).__name__}: {e}"
    record = {"rank": rank(), "time": time.time(), "error": message, "user_error": isinstance(e, AlignError)}
    with contextlib.suppress(OSError):
        (Path(folder) / f"rank-{rank()}.json").write_text(json.dumps(record))


def failure(e: BaseException) -> str:
    """One line for the manifest: this rank's error, or the error of a rank that failed before it (when this
    one only lost its connection to that rank)."""
    mine = (str(e).splitlines() or [type(e).__name__])[0]
    folder = os.environ.get(ERROR_DIR_ENV)
    cause = first_error(Path(folder)) if folder and world_size() > 1 else None
    if cause and cause["rank"] != rank():
        return f"rank {cause['rank']} failed: {cause['error'].splitlines()[0]}"
    return mine


def first_error(folder: Path) -> dict[str, Any] | None:
    """The earliest recorded rank error: the cause (peers that lost their connection fail after it)."""
    found = []
    for path in Path(folder).glob("rank-*.json"):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text()))
    return min(found, key=lambda r: r["time"]) if found else None


def failure_callbacks() -> list[Any]:
    """With ALIGN_FAIL_RANK=RANK[:STEP], a Trainer callback that raises on that rank at that step (default 1),
    while its peers sit in a collective: how the tests check that one failing rank stops the whole run."""
    wanted = os.environ.get(FAIL_ENV)
    which, _, step = (wanted or "").partition(":")
    if not wanted or int(which) != rank():
        return []
    from transformers import TrainerCallback

    from align.errors import AlignError

    class FailHere(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= int(step or 1):
                raise AlignError(f"injected failure on rank {rank()} at step {state.global_step} ({FAIL_ENV})")

    return [FailHere()]
