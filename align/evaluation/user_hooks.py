"""User evaluation hooks: a recipe's `module:function`, imported and checked at validation, called per row.

A hook is called as `function(model, tok, ctx)` and returns a dict of metric name -> finite number (or None:
not measured). Both halves are checked where the user can act on them: the import and the signature when
the recipe is validated (before any stage trains), the result when the hook returns (its metrics go into
evals.json, gates, the report and the trackers).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from align.errors import AlignError


def import_user_hook(ref: str) -> Any:
    """Import a user hook 'module:function' now (at validation, before any training) and return the function.

    The current folder is appended to sys.path, as `python -m align` would put it first: the `align`
    console script's sys.path lacks it, so `myhooks.py` beside the recipe would not import. Appended, not
    prepended, so a file in the current folder cannot shadow an installed package. The module stays in
    sys.modules; the evaluation and `align eval` load hooks through this same function."""
    module, _, name = ref.partition(":")
    if not module or not name:
        raise AlignError(f"hook '{ref}' is not 'module:function'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise AlignError(f"cannot load hook {ref}: {e}", hint="name it as 'package.module:function', importable "
                         "from the current folder or the installed packages") from None
    except Exception as e:  # the user's module failed while importing: their bug, reported as such
        raise AlignError(f"importing hook {ref} raised {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise AlignError(f"hook {ref} is a {type(fn).__name__}, not a function")
    try:
        inspect.signature(fn).bind(None, None, None)
    except TypeError:  # found now, not after a stage has trained
        raise AlignError(f"hook {ref} takes {_parameters(fn)}; a hook is called as function(model, tok, ctx)",
                         hint="give it those three parameters (it may ignore any of them)") from None
    except ValueError:  # no signature to read (a builtin): its call will tell
        pass
    return fn


def _parameters(fn: Callable) -> str:
    params = list(inspect.signature(fn).parameters)
    return f"({', '.join(params)})" if params else "no arguments"


def run_user_hook(ref: str, model: Any, tok: Any, ctx: Any) -> dict[str, Any]:
    """Call a user hook: what it raises is an error in its code (said so, not as a bug in align; --debug shows
    its traceback), and what it returns must be a dict of metric name -> number (or None: not measured), which
    gates compare and the report and trackers print."""
    fn = import_user_hook(ref)
    try:
        result = fn(model, tok, ctx)
    except AlignError:
        raise
    except Exception as e:
        raise AlignError(f"hook {ref} raised {type(e).__name__}: {str(e)[:300]}",
                         hint="the error is in the hook's own code; rerun with --debug for its traceback") from e
    if not isinstance(result, dict):
        raise AlignError(f"hook {ref} returned {type(result).__name__}; a hook returns a dict of metric name -> number")
    bad = [k for k, v in result.items() if not isinstance(k, str) or not _metric(v)]
    if bad:  # NaN or infinity would be written into evals.json, which JSON readers other than Python's refuse
        raise AlignError(f"hook {ref} returned {bad[0]!r}: {result[bad[0]]!r}; a hook returns a dict of metric name "
                         "(a string) -> a finite number", hint="leave out what is not a finite number, or return "
                         "None for it (not measured)")
    return result


def _metric(value: Any) -> bool:
    """A value a hook may return for a metric: a finite number, or None (not measured)."""
    return value is None or isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
