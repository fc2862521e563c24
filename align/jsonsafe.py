"""Reading JSON data strictly: `json.loads`, minus what Python's reader silently accepts.

A key given twice (Python keeps the last), NaN and Infinity (not JSON; they poison a loss), nesting deeper
than the stack, and text that is not Unicode: a lone UTF-16 surrogate escape (`"\\ud800"`) is valid JSON
syntax, but no character, and the tokenizers refuse such a string deep inside training or generation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from align.errors import AlignError

_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]")  # only such an escape can decode to a surrogate


class DuplicateKey(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str, where: str) -> Any:
    """`json.loads`, strict where Python's is lenient (see the module docstring); errors name `where`."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno}, column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
        raise AlignError(f"{where}: invalid JSON at {at}: {e.msg}") from None
    except DuplicateKey as e:
        raise AlignError(f"{where}: field '{e}' appears twice in one record", hint="keep one of them") from None
    except ValueError as e:
        raise AlignError(f"{where}: {e}", hint="write a number, or leave the field out") from None
    except RecursionError:
        raise AlignError(f"{where}: JSON nested too deeply to read") from None
    if _SURROGATE.search(text) and (field := _lone_surrogate(value)) is not None:
        raise AlignError(f"{where}{field}: a lone surrogate escape (\\ud800-\\udfff) is not a character",
                         hint="fix the escape (a pair such as \\ud83d\\ude00 is one character) or remove it")
    return value


def _lone_surrogate(value: Any, field: str = "") -> str | None:
    """The field (", field 'prompt'") holding a string that UTF-8 cannot encode, or None. Iterative: the value
    may be nested as deep as the JSON reader allowed."""
    stack = [(value, field)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f", field {at}" if at else ""
        elif isinstance(item, dict):
            for k, v in item.items():
                stack += [(k, at or repr(k)), (v, at or repr(k))]
        elif isinstance(item, list):
            stack += [(v, at) for v in item]
    return None
