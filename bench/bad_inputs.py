"""How many generated bad inputs align handles (issue 23): the property tests' strategies, at scale.

    PYTHONPATH=. python bench/bad_inputs.py 2000 60 20   # 2000 recipes and 2000 rankings files in-process,
                                                         # 60 of each through the installed `align` script,
                                                         # 20 recipes (and chat files) RUN by `align run`

Handled: accepted with in-range values and folder-safe names, or refused with an AlignError naming the key
(in-process) / exit 2 without a traceback (console), every data line counted as good or bad, nothing
written; a run (tests/test_properties_run.py, on a tiny model, against a filled run folder): exit 0 or 2, no
traceback, nothing outside the run folder touched, finished artifacts kept, a recipe that validates runs to
the end. Prints {"recipes": [handled, violated a property, other exception], "data": [...],
"console_recipes": [mishandled, handled], "console_data": [...], "console_runs": [...like recipes],
"console_runs_exit_0": how many of those runs were accepted and trained to the end} and the seconds taken.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from tests import test_properties as props
from tests import test_properties_run as runs
from tests.conftest import save_tiny_model
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


def main(n: int, c: int, r: int, work: Path) -> dict:
    warnings.filterwarnings("ignore")
    out = {"recipes": [0, 0, 0], "data": [0, 0, 0], "console_recipes": [0, 0], "console_data": [0, 0],
           "console_runs": [0, 0, 0], "console_runs_exit_0": 0}
    model = save_tiny_model(work / "tiny-model")
    (work / "filled").mkdir()
    filled = runs.fill(work / "filled", model)

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

    @settings(max_examples=r, **SETTINGS)
    @given(runs.run_mutations(), runs.chat_files())
    def console_runs(changes, data):
        def check(arg):
            with tempfile.TemporaryDirectory() as tmp:
                out["console_runs_exit_0"] += runs.check_run(Path(tmp), filled, model, *arg) == 0
        _tally(out, "console_runs", check, (changes, data))

    for run in (recipes, data, console_recipes, console_data, console_runs):
        run()
    return out


if __name__ == "__main__":
    start = time.time()
    args = [int(a) for a in sys.argv[1:4]] + [2000, 60, 20][len(sys.argv[1:4]):]
    with tempfile.TemporaryDirectory() as work:
        os.environ["ALIGN_CACHE"] = str(Path(work) / "cache")  # not the user's cache
        result = main(*args, Path(work))
    print(json.dumps(result), f"{time.time() - start:.0f} s")
