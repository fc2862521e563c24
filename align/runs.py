"""The run folder's bookkeeping: its lock, its manifest, stage fingerprints, and finished-artifact records.

    runs/<recipe>/manifest.json   every stage: resolved config, input hashes, status, times, metrics;
                                  package versions
    runs/<recipe>/.lock           held by the one `align run` working in the folder
    runs/<recipe>/<stage>/artifact.json   written last: the stage finished (with its fingerprint)
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from align.errors import AlignError
from align.recipe import data_kind
from align.schema import Recipe, StageBase

FINISHED = "artifact.json"
PACKAGES = ("align", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "wandb")


class RunLock:
    """An exclusive lock on a run folder, so a second run on it is refused instead of corrupting it."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise AlignError(f"run folder {self.path.parent} is in use by another align run ({holder})",
                             hint="wait for it to finish, or set output_dir to another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def finished(artifact: Path) -> dict[str, Any] | None:
    """The artifact's completion record, or None if the folder is missing or unfinished."""
    try:
        info = json.loads((Path(artifact) / FINISHED).read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("status") == "finished" else None


def stage_inputs(recipe: Recipe, stage: StageBase, upstream: str | None,
                 reward: str | None = None) -> dict[str, Any]:
    """Hashes of everything a stage's result depends on: its config, the model, data contents, upstream
    (the fingerprint of its init stage) and reward (that of the rm stage that scores or judges it)."""
    data = stage.data or getattr(recipe.data, data_kind(stage.kind))
    files = {}  # by role and content: a renamed copy of the same data does not retrain
    for role in ("train", "eval"):
        ref = getattr(data, role) if data else None
        if ref:
            files[role] = _file_hash(Path(ref)) if Path(ref).is_file() else f"dataset {ref}"
    mix = getattr(stage, "mix", None)
    if mix and Path(mix.data).is_file():
        files["mix"] = _file_hash(Path(mix.data))
    settings = dataclasses.asdict(stage)
    settings.pop("gate")  # a gate judges the result, it does not change it: editing one retrains nothing
    config = {"stage": settings, "seed": recipe.seed}
    out = {"config": content_hash(config), "model": content_hash(dataclasses.asdict(recipe.model)), "data": files,
           "upstream": upstream}
    return out | ({"reward": reward} if reward else {})


def fingerprint(inputs: dict[str, Any]) -> str:
    return content_hash(inputs)


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'config', 'data train', 'upstream' ...: why a finished stage is out of date."""
    changed = [k for k in ("config", "model", "upstream", "reward") if old.get(k) != new.get(k)]
    changed += [f"data {ref}" for ref in set(old.get("data", {})) | set(new["data"])
                if old.get("data", {}).get(ref) != new["data"].get(ref)]
    return ", ".join(changed) or "inputs"


class Manifest:
    """`manifest.json`, rewritten atomically at every change of a stage's state."""

    def __init__(self, run_dir: Path, recipe: Recipe):
        self.path = Path(run_dir) / "manifest.json"
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = {}
        self.data = {"recipe": recipe.source, "name": recipe.name, "versions": package_versions(),
                     "stages": {s.name: old.get("stages", {}).get(s.name, {}) for s in recipe.stages}}

    def update(self, stage: str, **fields: Any) -> None:
        self.data["stages"].setdefault(stage, {}).update(fields)
        self.data["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.path, self.data)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run folder under `root` with a manifest, newest first."""
    runs = []
    for manifest in Path(root).glob("*/manifest.json"):
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        data["folder"] = str(manifest.parent)
        runs.append(data)
    return sorted(runs, key=lambda r: r.get("updated_at", ""), reverse=True)


def content_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able value (dict keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
