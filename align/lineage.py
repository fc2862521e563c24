"""Which artifacts each stage was trained from, by identity, and the `--force`/`--from` request a rerun of an
interrupted command finishes instead of starting over.

Every finished artifact gets an `artifact_id` (new each time the stage trains) and records in `made_from` the
ids of the artifacts it was trained from: its init stage's and its reward stage's. Fingerprints hash a stage's
inputs, so they cannot tell a retrained `sft` from the old one (same recipe, same data); ids can: an `rm` that
records an `sft` id other than the current one was trained on an sft that no longer exists, and is stale.
Folders written before ids existed have none: "unknown", which never forces a rerun.

    runs/<recipe>/manifest.json   "forced": {"stages": {"sft": <its artifact_id when asked>}, "started_at": ...}
                                  kept until a run of the folder completes

A rerun of `align run R --force sft` interrupted after sft finished finds sft's id changed since the request:
sft was retrained by that run, and is reused; the stages after it resume.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from align.runs import finished

ROLES = {"init": "start model", "reward": "reward model"}


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def artifact_id(folder: Path) -> str | None:
    """The id of the finished artifact in `folder` (None: unfinished, or finished before ids were recorded)."""
    return (finished(folder) or {}).get("artifact_id")


def made_from(init: Path | None, reward: Path | None) -> dict[str, str | None]:
    """The ids of the artifacts a stage trains from now: its init stage's (None: the base model) and its reward
    stage's."""
    return {role: artifact_id(folder) if folder else None for role, folder in (("init", init), ("reward", reward))}


def changed(recorded: dict[str, Any] | None, current: dict[str, str | None],
            names: dict[str, str | None]) -> str | None:
    """Why an artifact (or a checkpoint) recorded as made from `recorded` ids is stale now: 'its start model sft
    was retrained since'; None when every id both sides know is the same."""
    for role, what in ROLES.items():
        old, new = (recorded or {}).get(role), current.get(role)
        if old and new and old != new:
            return f"its {what} {names[role]} was retrained since"
    return None


def retrained_by_request(pending: dict[str, Any] | None, name: str, folder: Path) -> str | None:
    """When the remembered request forced `name` and its artifact has been replaced since the request (by the
    interrupted run that made it): the reason to reuse it rather than retrain it once more."""
    asked = (pending or {}).get("stages", {})
    if not isinstance(asked, dict) or name not in asked:
        return None
    now = artifact_id(folder)
    if now is None or now == asked[name]:
        return None
    started = str(pending.get("started_at", ""))
    return f"retrained by the interrupted --force run started {started[11:16] or started}"


def request(pending: dict[str, Any] | None, forced: list[str], folders: dict[str, Path], now: str) -> dict[str, Any]:
    """The request to remember for a run forcing `forced`: a rerun of the interrupted request keeps its record
    (the stages it already retrained stay done); a new request records each stage's artifact id as it is now."""
    asked = (pending or {}).get("stages", {}) if isinstance(pending, dict) else {}
    kept = {n: asked[n] for n in forced if isinstance(asked, dict) and n in asked
            and retrained_by_request(pending, n, folders[n])}
    started = pending.get("started_at", now) if kept else now
    return {"stages": {n: kept[n] if n in kept else artifact_id(folders[n]) for n in forced}, "started_at": started}
