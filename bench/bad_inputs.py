"""How many generated bad inputs align handles (issue 23): the property tests' strategies, at scale.

    PYTHONPATH=. python bench/bad_inputs.py 2000 60   # 2000 recipes and 2000 rankings files in-process,
                                                      # 60 of each through the installed `align` script

Handled: accepted with in-range values and folder-safe names, or refused with an AlignError naming the key
(in-process) / exit 2 without a traceback (console), every data line counted as good or bad, nothing
written. Prints {"recipes": [handled, violated a property, other exception], "data": [...],
"console_recipes": [mishandled, handled], "console_data": [...]} and the seconds taken.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from tests import test_properties as props
from tests.test_bad_inputs import align_cli

SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def _tally(out: dict, key: str, check, arg) -> None:
    try:
        check(arg)
        out[key][0] += 1
    except AssertionError:
        out[key][1] += 1
    except Exception as e:  # an exception that is not an AlignError: mishandled, and shown
        out[key][2] += 1
        print(key, type(e).__name__, str(e)[:200])


def _in_folder(check):
    def run(arg):
        with tempfile.TemporaryDirectory() as tmp:
            props._write_folder(Path(tmp))
            check(Path(tmp), arg)
    return run


def _console(folder: Path, args: list[str]) -> bool:
    (folder / "home").mkdir()
    out = align_cli(*args, cwd=folder)
    return out.returncode in (0, 2) and "Traceback" not in out.stderr


def main(n: int, c: int) -> dict:
    warnings.filterwarnings("ignore")
    out = {"recipes": [0, 0, 0], "data": [0, 0, 0], "console_recipes": [0, 0], "console_data": [0, 0]}

    @settings(max_examples=n, **SETTINGS)
    @given(props.mutations())
    def recipes(changes):
        _tally(out, "recipes", _in_folder(props.check_recipe), changes)

    @settings(max_examples=n, **SETTINGS)
    @given(props.data_lines())
    def data(raw):
        _tally(out, "data", props.check_data, raw)

    @settings(max_examples=c, **SETTINGS)
    @given(props.mutations())
    def console_recipes(changes):
        with tempfile.TemporaryDirectory() as tmp:
            props._write_folder(Path(tmp))
            props._recipe(Path(tmp), changes)
            out["console_recipes"][_console(Path(tmp), ["validate", "r.yaml"])] += 1

    @settings(max_examples=c, **SETTINGS)
    @given(props.data_lines())
    def console_data(raw):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "d.jsonl").write_bytes(raw)
            out["console_data"][_console(Path(tmp), ["data", "check", "d.jsonl"])] += 1

    for run in (recipes, data, console_recipes, console_data):
        run()
    return out


if __name__ == "__main__":
    start = time.time()
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000, int(sys.argv[2]) if len(sys.argv) > 2 else 60)
    print(json.dumps(result), f"{time.time() - start:.0f} s")
