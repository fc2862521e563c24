"""The records align writes into a run folder, read back with their shape checked.

artifact.json, model.json, config.yaml, manifest.json, evals.json and the evaluation cache are align's own
files, but a run folder is the user's: a file edited by hand, truncated, or replaced by another file's content
must be an error naming the file and what is wrong in it (or, where a bad record only means "not finished" or
"not cached", be treated so), never a TypeError or KeyError deep in the code that reads it. Each record's
expected shape is declared here once, as nested Python values:

    {"head": str, "?parent": (str, NONE)}   a mapping with these keys ("?": optional) of these types
    {"*": dict}                             a mapping whose every value is a dict
    [dict]                                  a list of dicts
    frozenset({"adapter", "full"})          one of these values
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from align.errors import AlignError
from align.paths import read_regular

NONE = type(None)
NUMBER = (int, float, NONE)  # a metric: a number, or None for one a row did not measure
TIME = (str, NONE)

ARTIFACT = {"status": str, "?fingerprint": str, "?finished_at": str, "?artifact_id": (str, NONE),
            "?made_from": (dict, NONE), "?inputs": dict, "?stage": str, "?kind": str}
MODEL = {"head": frozenset({"causal_lm", "reward"}), "weights": frozenset({"adapter", "full"}), "?base": str,
         "?parent": (str, NONE)}
CONFIG = {"model": dict, "stage": {"?init": str}}
STAGE_RECORD = {"?status": str, "?metrics": dict, "?config": dict, "?error": str, "?gate": list,
                "?started_at": TIME, "?finished_at": TIME, "?reused_at": TIME, "?interrupted_at": TIME}
MANIFEST = {"?stages": {"*": STAGE_RECORD}, "?updated_at": TIME, "?name": (str, NONE), "?recipe": (str, NONE)}
EVAL_ROW = {"row": str, "metrics": {"*": NUMBER}, "?judges": dict, "?gates": [dict], "?own_reward": list}
EVALS = {"?rows": [EVAL_ROW], "?compliance": {"*": dict}, "?samples": {"*": [dict]}}
CACHED_ROW = EVAL_ROW | {"key": str, "?compliance": dict, "?samples": list}


def problem(value: Any, spec: Any, where: str = "") -> str | None:
    """Where `value` departs from `spec` ("stages.sft.status: expected str, got list"), or None."""
    at = where or "the top level"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{at}: expected a mapping, got {type(value).__name__}"
        for key, sub in spec.items():
            if key == "*":
                found = (problem(v, sub, f"{where}.{k}".lstrip(".")) for k, v in value.items())
            elif key.startswith("?") or key in value:
                name = key.lstrip("?")
                found = iter([problem(value[name], sub, f"{where}.{name}".lstrip("."))] if name in value else [])
            else:
                return f"{where}.{key}".lstrip(".") + ": missing"
            if (first := next((p for p in found if p), None)) is not None:
                return first
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{at}: expected a list, got {type(value).__name__}"
        return next((p for i, v in enumerate(value) if (p := problem(v, spec[0], f"{where}[{i}]"))), None)
    if isinstance(spec, frozenset):
        return None if value in spec else f"{at}: {value!r} is not one of {', '.join(sorted(spec))}"
    return None if isinstance(value, spec) else f"{at}: expected {_names(spec)}, got {type(value).__name__}"


def _names(spec: type | tuple) -> str:
    types = spec if isinstance(spec, tuple) else (spec,)
    return " or ".join("nothing" if t is NONE else t.__name__ for t in types)


def load(path: Path) -> Any:
    """A JSON or YAML (by suffix) file's value; AlignError when it cannot be read or parsed."""
    try:
        text = read_regular(Path(path))
        return yaml.safe_load(text) if Path(path).suffix == ".yaml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as e:
        why = getattr(e, "strerror", None) or str(e).splitlines()[0] or type(e).__name__
        raise AlignError(f"{path}: cannot read it ({why[:200]})") from None


def read(path: Path, spec: Any, hint: str) -> Any:
    """The record at `path`, of the shape `spec`; else an AlignError naming the file, where it is wrong and `hint`."""
    try:
        value = load(path)
    except AlignError as e:
        e.hint = hint
        raise
    if why := problem(value, spec):
        raise AlignError(f"{path}: not the record align writes ({why})", hint=hint)
    return value


def read_or_none(path: Path, spec: Any) -> Any:
    """The record at `path` when it is readable and of the shape `spec`, else None (missing, damaged, other)."""
    try:
        value = load(path)
    except AlignError:
        return None
    return None if problem(value, spec) else value
