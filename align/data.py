"""Reading data: JSONL/JSON/CSV files, local dataset folders and hub datasets, into checked records.

Every problem names the file, the line and the field. SFT records become chat `messages`
(`prompt`/`completion` records are converted), and `tokenize_chat` masks everything but assistant turns.
Raw text for continued pretraining is `{"text": ...}` records, or .txt files read one paragraph per record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from align.console import progress, step
from align.errors import AlignError
from align.jsonsafe import loads
from align.paths import cache_root, path_error
from align.schema import DataSpec, MixSpec

Record = dict[str, Any]
ROLES = ("system", "user", "assistant")


SUPPORTED = ".jsonl, .json, .csv, .parquet, .txt (pretrain text), a dataset folder (save_to_disk) or a hub dataset id"
_BINARY = {b"PK\x03\x04": "a zip archive", b"\x1f\x8b": "gzip-compressed", b"ARROW1": "an Arrow file",
           b"SQLite format 3\x00": "an SQLite database", b"\x89HDF": "an HDF5 file"}


def regular_file(path: Path, ref: str) -> None:
    """Refuse a path that exists but is not a regular file or folder (a FIFO would block the reader
    forever, a device never end), or that can name no file (too long a name, a loop of links)."""
    if why := path_error(str(path)):
        raise AlignError(why, hint=f"use a file: {SUPPORTED}")
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise AlignError(f"{ref} is not a regular file (a pipe, socket or device)", hint=f"use a file: {SUPPORTED}")


def read_records(ref: str, split: str = "train") -> Iterator[tuple[str, int, Record]]:
    """Yield (source, line, record) from a JSONL/JSON/CSV/Parquet file, a dataset folder, or a hub dataset id."""
    path = Path(ref).expanduser()
    regular_file(path, ref)
    if path.is_file():
        yield from _read_file(path)
    elif path.is_dir():
        files = sorted(path.glob("*.jsonl")) or sorted(path.glob("*.txt"))  # a folder of plain-text documents
        if files:
            for f in files:
                yield from _read_file(f)
        else:
            yield from _read_dataset(ref, split, from_disk=True)
    elif ref.startswith((".", "/", "~")) or path.suffix in {".jsonl", ".json", ".csv", ".txt", ".parquet"}:
        raise AlignError(f"data file {ref} does not exist")
    else:
        yield from _read_dataset(ref, split, from_disk=False)


def _read_file(path: Path) -> Iterator[tuple[str, int, Record]]:
    if path.suffix == ".parquet":
        yield from _read_parquet(path)
        return
    text = read_text(path)
    if not text.strip():
        what = "paragraphs separated by blank lines" if path.suffix == ".txt" else "one JSON record per line"
        raise AlignError(f"{path}: the file is empty", hint=f"write {what}, or point the recipe at the right file")
    if path.suffix == ".csv":
        yield from _read_csv(path, text)
        return
    if path.suffix == ".txt":
        yield from _read_paragraphs(path, text)
        return
    if path.suffix == ".json":
        data = loads(text, str(path))
        if not isinstance(data, list):
            raise AlignError(f"{path}: a .json data file holds a list of records")
        for i, rec in enumerate(data):
            yield str(path), i + 1, _object(rec, path, i + 1)
        return
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 and \x85 may be in a string
        if not line.strip():
            continue
        yield str(path), n, _object(loads(line, f"{path} line {n}"), path, n)


def read_bytes(path: Path) -> bytes:
    """A data file's bytes; a binary format (by its magic bytes) is an error saying what is supported."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AlignError(f"cannot read data file {path}: {e.strerror}") from None
    for magic, what in _BINARY.items():
        if raw.startswith(magic):
            raise AlignError(f"{path}: {what}, not a data file align reads", hint=f"supported: {SUPPORTED}")
    # Windows tools save "Unicode" text as UTF-16: a byte-order mark, then a NUL beside every ASCII character
    # (JSON keys, CSV headers); without the NULs, two such bytes are just a bad first line
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) and b"\x00" in raw[:64]:
        raise AlignError(f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark); align reads UTF-8",
                         hint="re-encode the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    if raw.startswith(b"PAR1"):
        raise AlignError(f"{path}: a Parquet file without the .parquet suffix", hint="rename it to .parquet")
    return raw


def read_text(path: Path) -> str:
    """A data file as text: UTF-8, a leading byte-order mark dropped (spreadsheets write one into CSV)."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, column = raw[: e.start].count(b"\n") + 1, e.start - raw.rfind(b"\n", 0, e.start)
        raise AlignError(f"{path} line {line}: not UTF-8 text (byte {column} of the line)",
                         hint="re-encode the file as UTF-8") from None


def _read_parquet(path: Path) -> Iterator[tuple[str, int, Record]]:
    """A Parquet file's rows as records (line = row number, from 1)."""
    import pyarrow
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as e:
        raise AlignError(f"{path}: cannot read as Parquet: {e}", hint=f"supported: {SUPPORTED}") from None
    for i, rec in enumerate(rows):
        yield str(path), i + 1, rec


def _read_csv(path: Path, text: str) -> Iterator[tuple[str, int, Record]]:
    """A CSV file with a header row; each row a record of strings (line numbers count the header as 1). A
    column named twice, or a value under a column with no name, is an error: a record would silently lose it."""
    csv.field_size_limit(1 << 30)  # the default 128 KiB per field refuses a long document or prompt
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise AlignError(f"{path}: a CSV data file needs a header row naming its columns (e.g. prompt,label)")
        twice = sorted({h for h in header if h.strip() and header.count(h) > 1})
        if twice:
            raise AlignError(f"{path} line 1: the header names column '{twice[0]}' twice",
                             hint="give each column its own name")
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) > len(header):
                raise AlignError(f"{path} line {reader.line_num}: more values than the {len(header)} header "
                                 "columns", hint="quote values that contain commas")
            if any(v.strip() and not h.strip() for h, v in zip(header, row)):
                raise AlignError(f"{path} line {reader.line_num}: a value in a column the header does not name",
                                 hint="name every column in the header row")
            yield str(path), reader.line_num, {h: v for h, v in zip(header, row) if h.strip()}
    except csv.Error as e:
        raise AlignError(f"{path} line {reader.line_num}: not readable as CSV ({e})") from None


def _read_paragraphs(path: Path, text: str) -> Iterator[tuple[str, int, Record]]:
    """A plain-text file: each blank-line-separated paragraph is one {"text": ...} record, at its first line."""
    start, lines = 0, []
    for n, line in enumerate([*text.splitlines(), ""], start=1):
        if line.strip():
            start = start or n
            lines.append(line)
        elif lines:
            yield str(path), start, {"text": "\n".join(lines).strip()}
            start, lines = 0, []


def _object(rec: Any, path: Path, line: int) -> Record:
    if not isinstance(rec, dict):
        raise AlignError(f"{path} line {line}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _read_dataset(ref: str, split: str, from_disk: bool) -> Iterator[tuple[str, int, Record]]:
    import datasets

    try:
        ds = datasets.load_from_disk(ref) if from_disk else datasets.load_dataset(ref, split=split)
    except Exception as e:  # datasets raises many types; the user needs the reference and the reason
        raise AlignError(f"cannot load dataset '{ref}': {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[split]
    for i, rec in enumerate(ds):
        yield f"{ref}[{split}]", i + 1, rec


def load_split(spec: DataSpec, parse: Callable[[str, int, Record], Record], seed: int) -> tuple[list, list]:
    """Read and parse train and eval records; hold out `eval_fraction` of train when no eval set is given;
    keep the first `max_examples` and `max_eval_examples`."""
    train = [parse(src, n, rec) for src, n, rec in read_records(spec.train, spec.split)]
    evals = [parse(src, n, rec) for src, n, rec in read_records(spec.eval, spec.split)] if spec.eval else []
    if not evals and spec.eval_fraction > 0:
        random.Random(seed).shuffle(train)
        k = max(1, round(len(train) * spec.eval_fraction))
        evals, train = train[:k], train[k:]
    train, evals = train[: spec.max_examples or None], evals[: spec.max_eval_examples or None]  # the first N
    if not train:
        raise AlignError(f"{spec.train}: no training examples")
    return train, evals


def mix_in(train: list, spec: MixSpec | None, parse: Callable[[str, int, Record], Record], seed: int) \
        -> tuple[list, int]:
    """`train` with general-domain records mixed in so they make up `spec.ratio` of the result (drawn
    without repetition while they last), shuffled; returns the mixed list and how many were added."""
    if spec is None or spec.ratio <= 0:
        return train, 0
    if not 0 < spec.ratio < 1:
        raise AlignError(f"mix.ratio must be in [0, 1), got {spec.ratio}")
    extra = [parse(src, n, rec) for src, n, rec in read_records(spec.data)]
    if not extra:
        raise AlignError(f"{spec.data}: no records to mix in")
    want = round(len(train) * spec.ratio / (1 - spec.ratio))
    rng = random.Random(seed)
    picked = [x for _ in range(want // len(extra) + 1) for x in rng.sample(extra, len(extra))][:want]
    mixed = train + picked
    rng.shuffle(mixed)
    return mixed, len(picked)


# ---- prompts ------------------------------------------------------------------------------------

def parse_prompt(src: str, line: int, rec: Record) -> Record:
    """A prompt record -> {"prompt": messages, **its other fields} (e.g. id, label, category).

    Accepts `prompt` (a string or messages), or chat `messages` (a trailing assistant turn is dropped:
    the model writes its own).
    """
    where = f"{src} line {line}"
    if "prompt" in rec and rec["prompt"] not in (None, ""):
        messages = as_messages(rec["prompt"], "user", f"{where}, field 'prompt'")
    elif "messages" in rec:
        messages = check_messages(rec["messages"], f"{where}, field 'messages'")
        while messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
    else:
        raise AlignError(f"{where}: a prompt record needs a non-empty 'prompt' (or chat 'messages')",
                         hint=f"found fields: {', '.join(rec) or 'none'}")
    if not messages or messages[-1]["role"] != "user":
        raise AlignError(f"{where}: the prompt must end with a user message")
    return {k: v for k, v in rec.items() if k not in ("prompt", "messages")} | {"prompt": messages}


def distinct(prompts: Iterable[list[dict]]) -> list[list[dict]]:
    """Each prompt (chat messages) once, in first-seen order: rankings and pairwise records repeat theirs."""
    seen: set[str] = set()
    out = []
    for messages in prompts:
        key = json.dumps(messages)
        if key not in seen:
            seen.add(key)
            out.append(messages)
    return out


# ---- raw text (pretrain) ---------------------------------------------------------------------------

def parse_text(src: str, line: int, rec: Record) -> Record:
    """A raw-text record -> {"text": ...}: one document of a continued-pretraining corpus."""
    where = f"{src} line {line}"
    text = rec.get("text")
    if not isinstance(text, str):
        found = f"'text' is {type(text).__name__}" if "text" in rec else f"found fields: {', '.join(rec) or 'none'}"
        hint = "chat data belongs to sft stages; " if "messages" in rec or "prompt" in rec else ""
        raise AlignError(f"{where}, field 'text': a text record needs a 'text' string ({found})",
                         hint=hint + 'write {"text": "..."} per line, or use a .txt file of blank-line-separated '
                                     "paragraphs")
    if not text.strip():
        raise AlignError(f"{where}, field 'text': empty text", hint="remove the line or fill it in")
    return {"text": text}


# ---- SFT ------------------------------------------------------------------------------------------

def parse_chat(src: str, line: int, rec: Record) -> Record:
    """An SFT record -> {"messages": [...]}: chat `messages`, or `prompt`/`completion` (strings or messages)."""
    where = f"{src} line {line}"
    if "messages" in rec:
        messages = check_messages(rec["messages"], f"{where}, field 'messages'")
    elif "prompt" in rec and "completion" in rec:
        prompt = as_messages(rec["prompt"], "user", f"{where}, field 'prompt'")
        completion = as_messages(rec["completion"], "assistant", f"{where}, field 'completion'")
        messages = prompt + completion
    else:
        raise AlignError(f"{where}: an SFT record needs 'messages' or 'prompt' and 'completion'",
                         hint=f"found fields: {', '.join(rec) or 'none'}")
    if not any(m["role"] == "assistant" for m in messages):
        raise AlignError(f"{where}: no assistant message, so there is nothing to learn")
    return {"messages": messages}


def as_messages(value: Any, role: str, where: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise AlignError(f"{where}: empty text")
        return [{"role": role, "content": value}]
    return check_messages(value, where)


def check_messages(value: Any, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise AlignError(f"{where}: expected a non-empty list of {{role, content}} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise AlignError(f"{where}[{i}]: expected {{\"role\": one of {'/'.join(ROLES)}, "
                             f"\"content\": a string}}, got {json.dumps(m)[:80]}")
        if not m["content"].strip():
            raise AlignError(f"{where}[{i}]: empty content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def tokenize_chat(tok: Any, messages: list[dict]) -> dict[str, list[int]]:
    """Token ids of a rendered conversation and a mask that is 1 on assistant-turn tokens.

    Renders growing prefixes of the conversation and marks the tokens each assistant turn adds, which
    works for any chat template that renders a prefix of a conversation as a prefix of its text
    (no `{% generation %}` markers needed, unlike TRL's assistant_only_loss).
    """
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render_chat(tok, messages[:i], add_generation_prompt=True) if i else []
        upto = render_chat(tok, messages[: i + 1], add_generation_prompt=False)
        if upto[: len(ids)] != ids or before[: len(ids)] != ids:
            raise AlignError("the chat template does not render conversation prefixes as prefixes, so assistant "
                             "tokens cannot be located", hint="set stage assistant_only_loss: false")
        mask += [0] * (len(before) - len(ids)) + [1] * (len(upto) - len(before))
        ids = upto
    tail = render_chat(tok, messages, add_generation_prompt=False)
    mask += [0] * (len(tail) - len(ids))
    return {"input_ids": tail, "assistant_masks": mask}


def render_chat(tok: Any, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    return render_chats(tok, [messages], add_generation_prompt)[0]


def render_chats(tok: Any, conversations: Sequence[list[dict]], add_generation_prompt: bool,
                 batch_size: int = 1024) -> list[list[int]]:
    """Token ids of each conversation under the chat template: rendered to text, then tokenized a batch at a
    time (a fast tokenizer encodes a batch on all cores; 1.5x faster than one `apply_chat_template` call per
    conversation on 2 cores). The ids are those of `apply_chat_template(tokenize=True)`, which encodes its
    rendered text the same way (no special tokens added)."""
    out: list[list[int]] = []
    for start in range(0, len(conversations), batch_size):
        texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=add_generation_prompt)
                 for m in conversations[start:start + batch_size]]
        out += [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        progress(len(out), len(conversations), "tokenized")
    return out


# ---- tokenization cache ---------------------------------------------------------------------------

def cached_tokens(kind: str, key: Any, tok: Any, build: Callable[[], tuple[Any, dict]],
                  what: str = "") -> tuple[Any, dict]:
    """`build()`'s tokenized `datasets.Dataset` and counts, kept on disk under a hash of `key` (the records
    and lengths), the tokenizer (vocabulary, special tokens, chat template) and the align, TRL and
    transformers versions. A stage that reruns on the same data with other training settings then skips
    tokenizing (minutes for 100k pairs: bench/README.md). The cache is `$ALIGN_CACHE/tokenized` (default
    ~/.cache/align/tokenized; delete it at will), each entry written once by `models.cached_folder`, so a
    crash never leaves one that looks complete. `what` names the data on the console."""
    import datasets
    import transformers
    import trl

    from align import __version__
    from align.models import cached_folder

    backend = getattr(tok, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else sorted(tok.get_vocab().items())
    text = json.dumps([kind, key, type(tok).__name__, vocab, tok.chat_template, tok.all_special_tokens,
                       __version__, trl.__version__, transformers.__version__], default=repr)

    def write(folder: Path) -> None:
        with step(f"{kind}: tokenizing {what or 'its data'} (cached for the next run)"):
            data, counts = build()
        data.save_to_disk(str(folder / "data"))
        (folder / "counts.json").write_text(json.dumps(counts))

    path = cached_folder(cache_root() / "tokenized" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}",
                         "counts.json", write)
    return datasets.load_from_disk(str(path / "data")), json.loads((path / "counts.json").read_text())
