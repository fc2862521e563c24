"""The run folder's bookkeeping: its lock, its manifest, stage fingerprints, and finished-artifact records.

    runs/<recipe>/manifest.json   every stage: resolved config, input hashes, status, times, metrics;
                                  package versions; an interrupted --force request (`lineage`)
    runs/<recipe>/.lock           held by the one `align run` working in the folder
    runs/<recipe>/<stage>/artifact.json   written last: the stage finished (with its fingerprint)

Every path the pipeline writes or deletes goes through `inside` or `stage_path`, which refuse any that
leaves the run folder, is the run folder, or is one of the folder's own entries: a defence that holds
whatever names a recipe (or a config built in code) gives its stages.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from align import records
from align.errors import AlignError
from align.paths import FINISHED, RUN_ENTRIES, check_run_folder, open_regular, read_regular
from align.recipe import data_kind
from align.schema import Recipe, StageBase

PACKAGES = ("align", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "wandb")
DEFAULT_ROOT = "runs"  # where a recipe without output_dir gets its run folder
_WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                 errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
                 errno.EPERM: "operation not permitted", errno.ENOTDIR: "a part of the path is not a folder",
                 errno.EEXIST: "a file is in the way", errno.EISDIR: "a folder is in the way",
                 errno.ENAMETOOLONG: "a file name is longer than the file system allows"}
# how libraries that write without raising OSError say the disk is full (safetensors: Rust's io error)
_LIBRARY_DISK_FULL = re.compile(r"os error (28|122)\b|no space left|disk quota exceeded|StorageFull", re.I)
# torch's zip writer names no errno: "PytorchStreamWriter failed writing file ...", "unexpected pos ...",
# "basic_ios::clear: iostream error"
_TORCH_WRITE = re.compile(r"PytorchStreamWriter failed|file write failed|unexpected pos \d+|iostream error", re.I)
log = logging.getLogger("align")


def inside(run_dir: str | Path, relative: str | Path) -> Path:
    """`run_dir / relative` resolved (symlinks followed), refused with an AlignError unless it lies strictly
    inside the resolved run folder: never the folder itself, never outside it."""
    root = Path(run_dir).resolve()
    try:
        path = (root / relative).resolve()
    except (ValueError, OSError):  # a NUL byte, a symlink loop
        path = root
    if root not in path.parents:
        raise AlignError(f"refusing to write {root / relative}: it is not inside {root}",
                         hint="stage names are single folder names such as sft or rm_v2; nothing outside the run "
                              "folder is ever written or deleted")
    return path


def stage_path(run_dir: str | Path, stage: str, form: str = "{}") -> Path:
    """The folder of `stage` in the run folder (`form` '.{}.partial', '.{}.old': its work folders), checked by
    `inside` to be a direct child that is none of the folder's own entries (manifest.json, .lock, evals ...)."""
    name = form.format(stage)
    path = inside(run_dir, name)
    own = stage.casefold() in RUN_ENTRIES or stage.startswith(".")  # dot names: .lock and the work folders
    if not stage or own or path.parent != Path(run_dir).resolve() or path.name != name:
        raise AlignError(f"stage name {stage!r} cannot be a folder of the run folder {run_dir}",
                         hint="name stages with letters, digits, _ and - (not " + ", ".join(sorted(RUN_ENTRIES)) +
                              ", nor starting with a dot)")
    return path


def check_stage_flags(recipe: Recipe, force: Sequence[str], start: str | None, only: str | None) -> None:
    """--force, --from and --only each name a stage of the recipe, exactly (an empty one, from an unset shell
    variable, too): checked before any work, so a typo does not run or retrain anything."""
    names = [s.name for s in recipe.stages]
    for flag, name in [("--force", f) for f in force] + [("--from", start), ("--only", only)]:
        if name is not None and name not in names:
            near = [n for n in names if n.casefold() == name.casefold()]
            raise AlignError(f"{flag} {name!r}: no such stage; stages: {', '.join(names)}",
                             hint=f"did you mean {near[0]}?" if near else None)


def run_folder(recipe: Recipe) -> Path:
    """The recipe's run folder, resolved; without output_dir it must lie inside runs/ (a recipe named
    '../x' does not get to pick a folder elsewhere). An existing folder must be a run folder
    (`paths.check_run_folder`), and its own entries (report.md, evals/ ...) no links out of it (`own_entries`)."""
    if recipe.output_dir:
        folder = Path(recipe.run_dir).resolve()
    else:
        try:
            folder = inside(DEFAULT_ROOT, recipe.name)
        except AlignError:
            raise AlignError(f"recipe name {recipe.name!r} does not name a folder inside {DEFAULT_ROOT}/",
                             hint="name recipes with letters, digits, _ and -, or set output_dir to the run folder "
                                  "you want") from None
    check_run_folder(folder)
    own_entries(folder)
    return folder


def own_entries(run_dir: Path) -> None:
    """Refuse a run folder whose own entries (report.md, evals/, manifest.json, .lock ...) lead out of it through
    a link: align writes and deletes in them, and nothing outside the run folder is ever written or deleted."""
    for name in sorted(RUN_ENTRIES | {".lock"}):
        link = Path(run_dir) / name
        try:
            target = str(link.resolve()) if link.is_symlink() else None
        except (OSError, RuntimeError):  # a loop of links
            target = "itself (a loop of links)"
        if target is not None and Path(run_dir).resolve() not in Path(target).parents:
            raise AlignError(f"{link} is a link to {target}, outside the run folder; align writes there",
                             hint="remove the link (or replace it by a copy of what it points to): nothing outside "
                                  "the run folder is ever written or deleted")


def write_error(e: BaseException, where: str | Path) -> AlignError | None:
    """An error writing under `where` as a user error that says where and what to do, or None when `e` is not
    one: OSError by errno, safetensors' and torch's own disk-full errors (found through the exception chain)."""
    seen: BaseException | None = e
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:  # a chain can loop (an exception raised from itself)
        visited.add(id(seen))
        text = str(seen)
        if isinstance(seen, OSError) and seen.errno in _WRITE_ERRORS:
            # a rename's destination (filename2), not its temporary source: the entry in the way is there
            return _cannot_write(seen.filename2 or seen.filename or where, _WRITE_ERRORS[seen.errno])
        if _LIBRARY_DISK_FULL.search(text):
            quota = "122" in text or "quota" in text.lower()
            return _cannot_write(where, _WRITE_ERRORS[errno.EDQUOT if quota else errno.ENOSPC])
        if isinstance(seen, RuntimeError) and _TORCH_WRITE.search(text):
            return _cannot_write(where, _WRITE_ERRORS[errno.ENOSPC] if _nearly_full(where)
                                 else f"the write failed ({text.splitlines()[0][:200]})")
        seen = seen.__cause__ or seen.__context__
    return None


def memory_error(e: BaseException, stage: str) -> AlignError | None:
    """Running out of memory (the machine's or a GPU's) as a user error naming the settings that size it, or None
    when `e` is not that: torch says so in a RuntimeError ("can't allocate memory") or its OutOfMemoryError."""
    text = str(e).strip()
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or \
            (isinstance(e, RuntimeError) and re.search(r"can't allocate memory|out of memory", text, re.I)):
        return AlignError(f"stage {stage}: out of memory ({(text.splitlines() or [type(e).__name__])[0][:200]})",
                          hint="lower batch_size (raise grad_accum to keep the batch), max_length or model.lora.r, "
                               "or use a smaller model; finished stages are kept")
    return None


def _cannot_write(where: str | Path, why: str) -> AlignError:
    return AlignError(f"cannot write {where}: {why}",
                      hint="free space or fix permissions there, or set output_dir to another folder; "
                           "finished stages are kept")


def _nearly_full(where: str | Path) -> bool:
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


class RunLock:
    """An exclusive lock on a run folder, so a second run on it is refused instead of corrupting it.

    `flock` dies with its process (kill -9 included); the file records the holder's pid and is emptied on a
    clean exit, so a recorded pid found on taking the lock is a run that died: it is taken over, with a word."""

    def __init__(self, run_dir: Path):
        self.path = inside(run_dir, ".lock")
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as e:
            if e.errno in (errno.EISDIR, errno.EINVAL):
                folder = e.errno == errno.EISDIR
                raise AlignError(f"{self.path} is {'a folder' if folder else e.strerror}; align keeps its run lock "
                                 "in this file", hint=f"remove the {'folder' if folder else 'entry'} {self.path} "
                                                      "(align never puts anything in it)") from None
            if mapped := write_error(e, self.path):
                raise mapped from e
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise AlignError(f"run folder {self.path.parent} is in use by another align run ({holder})",
                             hint="wait for it to finish, or set output_dir to another folder") from None
        if previous := os.read(fd, 200).decode(errors="replace").strip():
            log.warning("taking over the run folder's lock from a run that ended without releasing it (%s)", previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean exit: the next run has nothing to take over
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def finished(artifact: Path) -> dict[str, Any] | None:
    """The artifact's completion record, or None if the folder is missing, unfinished, or its record damaged."""
    info = records.read_or_none(Path(artifact) / FINISHED, records.ARTIFACT)
    return info if info and info["status"] == "finished" else None


def refuse_damaged(folder: Path, stage: str) -> None:
    """Refuse a stage folder that exists without a finished record. align moves a stage's folder into place only
    after writing its artifact.json (a crash leaves the work folder, which resumes), so such a folder was
    changed by hand: training the stage again would replace weights that may be all that is left of it."""
    if not folder.exists() or finished(folder):
        return
    hint = f"restore {folder.name}/{FINISHED}, or train the stage again with --force {stage} (its folder is replaced)"
    try:
        why = f"{folder / FINISHED}: status {records.read(folder / FINISHED, records.ARTIFACT, hint)['status']!r}"
    except AlignError as e:
        why = e.message
    raise AlignError(f"stage {stage}: its folder holds no finished record, so align will not train over it ({why})",
                     hint=hint)


def finished_metrics(folder: Path, fp: str, recorded: dict[str, Any]) -> dict[str, Any] | None:
    """A finished stage's metrics.json; lost or broken, the copy the manifest recorded with the same inputs."""
    try:
        metrics = json.loads(read_regular(folder / "metrics.json"))
        if isinstance(metrics, dict):
            return metrics
    except (OSError, ValueError, RecursionError):
        pass
    if recorded.get("fingerprint") == fp and isinstance(recorded.get("metrics"), dict):
        log.warning("%s/metrics.json is missing or unreadable: using the metrics manifest.json recorded", folder)
        return recorded["metrics"]
    return None


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
    """`manifest.json`, rewritten atomically at every change of a stage's state. Made by the run holding the
    lock: a stage still `running` in the old file belonged to a run that died (kill -9, out of memory)."""

    def __init__(self, run_dir: Path, recipe: Recipe):
        self.path = inside(run_dir, "manifest.json")
        old = read_manifest(self.path)
        if old is None and self.path.exists():
            log.warning("%s is not a readable manifest; starting a new one (the stage folders are kept)", self.path)
        stages = (old or {}).get("stages", {})
        self.data = {"recipe": recipe.source, "name": recipe.name, "versions": package_versions(),
                     "stages": {s.name: stages.get(s.name, {}) for s in recipe.stages}}
        if isinstance((old or {}).get("forced"), dict):  # an interrupted --force request (`lineage.request`)
            self.data["forced"] = old["forced"]
        for stage in self.data["stages"].values():
            if stage.get("status") == "running":
                stage.update(status="interrupted", interrupted_at=(old or {}).get("updated_at"),
                             error="the run ended without a word (kill -9, out of memory, power loss); "
                                   "interrupted_at is its last manifest update")

    def record(self, key: str, value: Any) -> None:
        """Set (None: remove) a field of the whole run."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        write_json(self.path, self.data)

    def update(self, stage: str, **fields: Any) -> None:
        self.data["stages"].setdefault(stage, {}).update(fields)
        self.data["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_json(self.path, self.data)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """A manifest as written by `Manifest`, or None when it is missing, not JSON or of another shape (a stage's
    status that is no string, say: `align runs` and the report print them)."""
    return records.read_or_none(Path(path), records.MANIFEST)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def list_runs(root: Path) -> list[dict[str, Any]]:
    """Every run folder under `root` with a manifest, newest first; one whose manifest cannot be read is
    listed with `unreadable` set (and no stages), not left out."""
    runs = []
    for manifest in Path(root).glob("*/manifest.json"):
        data = read_manifest(manifest)
        if data is None:
            data = {"unreadable": f"{manifest.name} is not a manifest align wrote (unreadable, not JSON, or of "
                                  "another shape)"}
        running = [s for s in data.get("stages", {}).values() if s.get("status") == "running"]
        if running and not _lock_holder_alive(manifest.parent / ".lock"):  # its run died (kill -9): say so
            for stage in running:
                stage["status"] = "interrupted"
        data["folder"] = str(manifest.parent)
        runs.append(data)
    return sorted(runs, key=lambda r: str(r.get("updated_at", "")), reverse=True)


def _lock_holder_alive(lock: Path) -> bool:
    """Whether the process a run folder's lock file names still runs (the file is emptied on a clean exit)."""
    try:
        found = re.match(r"pid (\d+)", read_regular(lock))
    except (OSError, ValueError):
        return False
    if not found:
        return False
    try:
        os.kill(int(found[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def content_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able value (dict keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
