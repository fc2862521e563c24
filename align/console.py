"""What the terminal shows while align works (issue 21): one line before each long step and one after with its
duration, a single progress bar at a time (stderr, on a terminal only: a log file gets the lines), the
libraries' own bars, warnings and raw metric dicts off unless `--verbose`, plan lines in plain words, and the
block that ends `align run` (time, report, gates).

Loops that take long (generation, scoring, tokenizing) report where they are with `progress(done, total,
what)`; it costs nothing when no bar is shown, and the bar is named after the innermost `step` (outside any
step there is no bar: its line would not say what runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from align import records

log = logging.getLogger("align")

VERBOSE = False  # --verbose / --debug: the libraries speak for themselves (their bars, dicts, warnings)
_labels: list[str] = []  # the steps under way, innermost last
_bar: Any = None  # the one progress bar on screen, if any

VERBS = {"run": "train", "reuse": "reuse", "resume": "resume", "skip": "skip"}
"""`pipeline.Step.action` -> the word a plan line uses."""


def quiet_libraries(verbose: bool) -> None:
    """Turn the libraries' console output off (or leave it, verbose) before any of them is imported: their
    documented switches, read from the environment at import, so processes `align.launch` starts inherit them."""
    global VERBOSE
    VERBOSE = verbose
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # datasets' Map, filter, "Saving the dataset"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("WANDB_SILENT", "true")


def quiet_transformers() -> None:
    """transformers' own bars ("Loading weights", "Writing model shards") off unless verbose (`align.models`
    calls this once it imports transformers). The Hub's download bars stay: a download is a long step the user
    should see, and transformers' switch turns them off too, so they are turned back on."""
    if VERBOSE:
        return
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    downloads = not hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    if downloads:
        hub.enable_progress_bars()


def trainer_settings() -> dict[str, Any]:
    """TrainingArguments for the console: align's own bar (`TrainingBar`) replaces the Trainer's, unless verbose."""
    return {} if VERBOSE else {"disable_tqdm": True, "log_level": "error"}


def quiet_trainer(trainer: Any) -> None:
    """Drop the Trainer's printer of raw metric dicts (`{'loss': ...}`); the stage log keeps every value."""
    from transformers.trainer_callback import PrinterCallback

    if not VERBOSE:
        trainer.remove_callback(PrinterCallback)


def bars_on() -> bool:
    """Bars on a terminal only (a log file gets the step lines), and from the main process only."""
    from align.distributed import is_main

    return sys.stderr.isatty() and is_main()


@contextlib.contextmanager
def step(label: str) -> Iterator[list[str]]:
    """'label ...' now, 'label: done in 41 s' when it ends (with what the caller appends to the list it is
    given, e.g. that there was nothing to do); loops inside draw their bar under this label."""
    log.info("%s ...", label)
    _labels.append(label)
    notes: list[str] = []
    start = time.perf_counter()
    try:
        yield notes
    finally:
        _labels.pop()
        close_bar()
    log.info("%s: %s", label, "; ".join(notes + [f"done in {duration(time.perf_counter() - start)}"]))


def progress(done: int, total: int, what: str) -> None:
    """A long loop inside a `step` is `done` of `total` (units of `what`, e.g. 'prompts generated'): the bar
    shows it, and goes when the loop is through, so the lines that follow start on their own line."""
    global _bar
    if not _labels or not bars_on() or total <= 0:
        return
    desc = f"{_labels[-1]} ({what})"
    if _bar is None or _bar.total != total or _bar.desc != desc or done < _bar.n:
        from tqdm.auto import tqdm

        close_bar()
        _bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
    _bar.update(done - _bar.n)
    if done >= total:
        close_bar()


def hold(bar: Any) -> None:
    """Make `bar` (a tqdm a caller drew, e.g. the training bar) the one on screen: the step it runs in closes it."""
    global _bar
    close_bar()
    _bar = bar


def close_bar() -> None:
    global _bar
    if _bar is not None:
        _bar.close()
        _bar = None


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def plan_line(stage: str, action: str, reason: str) -> str:
    """'sft: train (new)', 'sft: reuse (unchanged since 14:02)', 'dpo: resume from checkpoint-40'."""
    verb, reason = VERBS.get(action, action), local_times(reason)
    return f"{stage}: {verb} {reason}" if reason.startswith("from ") else f"{stage}: {verb} ({reason})"


_STAMP = re.compile(r"\b(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


def local_times(text: str) -> str:
    """ISO time stamps in `text` as local HH:MM (today) or 'YYYY-MM-DD HH:MM'. A stamp without a zone is local
    already (align writes them with time.strftime)."""
    def short(m: re.Match) -> str:
        try:
            when = datetime.fromisoformat(m.group(0).replace("Z", "+00:00"))
        except ValueError:
            return m.group(0)
        when = when.astimezone() if when.tzinfo else when
        day = when.strftime("%Y-%m-%d")
        return when.strftime("%H:%M") if day == datetime.now().strftime("%Y-%m-%d") else f"{day} {when:%H:%M}"
    return _STAMP.sub(short, text)


def final_block(run_dir: Path, seconds: float) -> str:
    """The lines `align run` ends with: its wall time, where the report is, and each gate's result."""
    lines = [f"finished in {duration(seconds)}"]
    html = Path(run_dir).resolve() / "report.html"
    if html.is_file():
        lines += [f"report: {html}", f"        {html.as_uri()}"]
    rows = (records.read_or_none(Path(run_dir) / "evals.json", records.EVALS) or {}).get("rows", [])
    gates = [(r["row"], g) for r in rows for g in r.get("gates", [])]
    for row, g in gates:
        value = g["value"] if isinstance(g.get("value"), (int, float)) else float("nan")
        lines.append(f"gate {row}: {g['gate']}  {'passed' if g['passed'] else 'FAILED'} "
                     f"({g['metric']} = {value:.4g})")
    if not gates:
        lines.append("gates: none in this recipe")
    return "\n".join(lines)
