"""The paths users give align: what they can name, checked before any work, so a mistake costs nothing.

Four rules, one home each:

* `path_error`: a path that can name no file at all (longer than the file system allows, a loop of links)
  is a user error, not an OSError deep inside a library;
* `output_file` / `output_folder`: what `align generate --out`, `eval --json` and `export --out` write must
  be a new or replaceable file in a writable folder, never one of the command's own inputs nor a record of
  a run folder (a stage's artifact.json, manifest.json ...), checked before a model loads;
* `check_run_folder`: a recipe's `output_dir` that exists must be a run folder align made (or empty):
  align writes manifest.json, recipe.yaml, report.* and a folder per stage there, replacing what has
  those names, so a home or project folder is refused;
* `open_regular` / `read_regular`: align's own files (a run folder's records, its lock) are opened only when
  they are regular files: a FIFO put in their place would block the reader forever, a device never end.

`cache_root` is the one reading of `$ALIGN_CACHE`, so the folder checked before the work is the one written.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from align.errors import AlignError

FINISHED = "artifact.json"  # a stage artifact's completion record, written last
# what the run folder holds besides stage folders: a stage may not be named like one of them
RUN_ENTRIES = frozenset({"manifest.json", "recipe.yaml", "evals", "evals.json", "report.md", "report.html",
                         "report_plots", "logs", "tensorboard", "wandb"})
NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems
TEMP_ROOM = 32  # align writes through a temporary name this much longer (".<name>.partial-<pid>")


def path_error(ref: str) -> str | None:
    """Why `ref` can name no file at all, or None (a path that merely does not exist is not an error here)."""
    try:
        Path(ref).expanduser().stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        why = {errno.ELOOP: " (a link that leads back to itself)",
               errno.ENAMETOOLONG: f" (a file or folder name is at most {NAME_MAX} bytes)"}.get(e.errno, "")
        return f"'{_short(ref)}': {(e.strerror or str(e)).lower()}{why}"
    return None


def cache_root() -> Path:
    """Where converted models, tokenized data and benchmarks are cached: $ALIGN_CACHE (`~` is the home folder,
    as in a shell), else ~/.cache/align."""
    return Path(os.environ.get("ALIGN_CACHE") or Path.home() / ".cache" / "align").expanduser()


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """`os.open` that refuses what is not a regular file with an OSError, as for a missing file, so a caller that
    treats an unreadable file as absent (or names it in an error) does so for a FIFO or device too. Opened
    without blocking: opening a FIFO for reading would otherwise wait for a writer."""
    fd = os.open(path, flags | os.O_NONBLOCK, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file (a pipe, socket or device)", str(path))
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path) -> str:
    """The UTF-8 text of `path`, a regular file (`open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as f:
        return f.read().decode("utf-8")


def looks_local(ref: str) -> bool:
    """A path with a file suffix, a leading ./ / ~ or a trailing / is local; 'org/name' is a hub dataset id."""
    return ref.startswith((".", "/", "~")) or ref.endswith("/") or \
        Path(ref).suffix in {".jsonl", ".json", ".csv", ".parquet", ".txt"} or \
        (path_error(ref) is None and Path(ref).expanduser().exists())


def _short(ref: str) -> str:
    return ref if len(ref) <= 60 else ref[:57] + "..."


def _writable(folder: Path, what: str) -> None:
    """A file can be created in `folder` (a read-only file system, /proc or a full disk say so now)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".align-write-test-"):
            pass
    except OSError as e:
        raise AlignError(f"{what}: cannot write in {folder} ({(e.strerror or str(e)).lower()})",
                         hint="name a file in a folder you can write") from None


def _record_of_a_run(path: Path) -> str | None:
    """What `path` is to align when it lies in a run folder: a stage artifact's file, or one of the run folder's
    own records; None for any other path."""
    for folder in path.parents:
        if (folder / FINISHED).is_file():
            return f"inside the stage artifact {folder}"
        if (folder / "manifest.json").is_file():
            own = path.parent == folder and (path.name in RUN_ENTRIES or path.name.startswith("."))
            return f"the run folder's own {path.name}" if own else None
    return None


def output_file(flag: str, value: str, inputs: dict[str, str | None] | None = None) -> Path:
    """The file a command will write for `flag`, checked before any work: not empty, not a folder, in a folder
    that exists and can be written, a name the file system takes, none of the command's `inputs` ({what it is:
    path}), no record of a run folder."""
    what = f"{flag} {value}"
    if not value.strip():
        raise AlignError(f"{flag}: an empty file name", hint="name the file to write")
    out = Path(value).expanduser()
    if why := path_error(value):
        raise AlignError(f"{flag} {why}")
    if len(out.name.encode()) + TEMP_ROOM > NAME_MAX:
        raise AlignError(f"{flag}: the file name is {len(out.name.encode())} bytes; at most "
                         f"{NAME_MAX - TEMP_ROOM} (the file system's {NAME_MAX}, less room for a temporary name)")
    if out.is_dir() or value.endswith(("/", os.sep)):
        raise AlignError(f"{what}: is a folder", hint="name a file in it, e.g. " + str(out / "out.jsonl"))
    if out.exists() and not out.is_file():  # written through a temporary file renamed over it: /dev/null replaced
        raise AlignError(f"{what}: is not a regular file (a pipe, socket or device)", hint="name a file to write")
    if not out.parent.is_dir():
        raise AlignError(f"{what}: the folder {out.parent} does not exist", hint="create it first")
    resolved = out.resolve()
    for label, given in (inputs or {}).items():
        if given and Path(given).expanduser().resolve() == resolved:
            raise AlignError(f"{what} is {label} itself", hint="write to another file")
    if where := _record_of_a_run(resolved):
        raise AlignError(f"{what} is {where}; writing it would damage the run", hint="write outside the run folder")
    _writable(out.parent, what)
    return out


def output_folder(flag: str, value: str) -> Path:
    """A folder a command will create (or fill, when empty) for `flag`: the same checks as `output_file`, and an
    existing folder must be empty."""
    if not value.strip():
        raise AlignError(f"{flag}: an empty folder name", hint="name the folder to write")
    out = Path(value).expanduser()
    if why := path_error(value):
        raise AlignError(f"{flag} {why}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise AlignError(f"{flag} {out} exists and is not empty", hint="give a new or empty folder")
    if len(name := out.resolve().name.encode()) + TEMP_ROOM > NAME_MAX:
        raise AlignError(f"{flag}: the folder name is {len(name)} bytes; at most {NAME_MAX - TEMP_ROOM} (the file "
                         f"system's {NAME_MAX}, less room for a temporary name)")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise AlignError(f"{flag} {out}: the folder {parent} does not exist", hint="create it first")
    if where := _record_of_a_run(out.resolve()):
        raise AlignError(f"{flag} {out} is {where}; writing there would change the run",
                         hint="write outside the run folder")
    if (parent / "manifest.json").is_file():  # a stage of that name would later replace (and delete) it
        raise AlignError(f"{flag} {out} is a folder of the run folder {parent}, where stage artifacts go",
                         hint="write outside the run folder")
    _writable(parent, f"{flag} {out}")
    return out


def check_run_folder(run_dir: Path) -> None:
    """An existing run folder must be align's: holding the manifest.json or .lock a run writes first, or else only
    finished stage folders and work folders (a run folder whose manifest was deleted). Any other folder (a home,
    a project, the recipe's own folder) is refused before anything is written."""
    if not run_dir.is_dir() or (run_dir / "manifest.json").exists() or (run_dir / ".lock").exists():
        return  # new (made by the run), or a run folder (a broken manifest included: the run starts a new one)
    try:
        entries = sorted(os.listdir(run_dir))
    except OSError as e:
        raise AlignError(f"cannot read the run folder {run_dir}: {(e.strerror or str(e)).lower()}") from None
    foreign = [e for e in entries if not (run_dir / e / "artifact.json").is_file()
               and not e.endswith((".partial", ".old")) and not _rank_logs(run_dir / e)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise AlignError(f"output_dir {run_dir} is a folder align did not make (no manifest.json) and holds "
                         f"{len(foreign)} entr{'ies' if len(foreign) > 1 else 'y'} of its own: {shown}",
                         hint="align writes manifest.json, recipe.yaml, report.* and a folder per stage into its run "
                              "folder, replacing what has those names: set output_dir to a new or empty folder")


def _rank_logs(folder: Path) -> bool:
    """logs/ holding only rank-<r>.log files: what the other ranks of a data-parallel run write first, maybe
    before rank 0 has made the run folder's .lock (`distributed.rank_logging`)."""
    try:
        return folder.name == "logs" and all(re.fullmatch(r"rank-\d+\.log", f) for f in os.listdir(folder))
    except OSError:
        return False
