"""The `align` command: validate, run, and user errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

from align.cli import main
from tests.conftest import write_recipe


def test_validate_ok_and_all_errors(tmp_path, tiny_model_dir, sft_files, capsys):
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run")
    assert main(["validate", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["validate", str(path), "stages.sft.lerning_rate=1", "model.adaptr=full"]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "did you mean 'learning_rate'" in err and "did you mean 'adapter'" in err


def test_user_error_exits_2_without_traceback_unless_debug(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n")
    run = [sys.executable, "-m", "align"]
    out = subprocess.run([*run, "run", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "YAML syntax error" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([*run, "--debug", "run", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_run_with_override_and_force(tmp_path, tiny_model_dir, sft_files):
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run")
    assert main(["run", str(path), "stages.sft.max_steps=2"]) == 0
    assert (tmp_path / "run" / "sft" / "artifact.json").exists()
    assert main(["run", str(path), "stages.sft.max_steps=2", "--force", "nope"]) == 2


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`align runs | head -1`: the pipe closes while align writes; exit 0, nothing on stderr."""
    code = ("import argparse, sys\nimport align.cli as cli\n"
            "def many(args):\n    for i in range(200000):\n        print('row', i)\n    return 0\n"
            "p = argparse.ArgumentParser()\np.add_argument('--debug', action='store_true')\np.set_defaults(func=many)\n"
            "cli._parser = lambda: p\nsys.exit(cli.main([]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"row 0\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_a_bug_is_one_line_and_exit_1_and_debug_shows_the_traceback():
    """An exception that is not an AlignError is align's bug: one 'internal error' line asking for --debug."""
    code = ("import argparse, sys\nimport align.cli as cli\n"
            "def bug(args):\n    raise ZeroDivisionError('division by zero')\n"
            "p = argparse.ArgumentParser()\np.add_argument('--debug', action='store_true')\np.set_defaults(func=bug)\n"
            "cli._parser = lambda: p\nsys.exit(cli.main(sys.argv[1:]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "internal error: ZeroDivisionError: division by zero" in out.stderr and "--debug" in out.stderr
    out = subprocess.run([sys.executable, "-c", code, "--debug"], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" in out.stderr
