"""What the terminal shows (issue 21): a tiny run through the real `align` script prints a line before each
long step, no library bars or raw Trainer dicts (unless --verbose), plan lines in plain words, and a final
block with the time, the report (path and file:// URL) and the gates; on a terminal, align's own bars."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from datetime import datetime
from pathlib import Path

import pytest

from align.console import duration, final_block, local_times, plan_line
from tests.conftest import CORPUS, chat, write_jsonl
from tests.stages.test_rm import marker_rankings
from tests.test_bad_inputs import ROOT, align_cli

NOISE = ["Map", "Building labels", "Truncating", "Dropping fully", "Saving the dataset", "{'loss':", "{'eval_loss':",
         "'train_runtime'", "Loading weights", "Loading checkpoint shards", "Writing model shards"]


def _recipe(root: Path, model: Path, rm: bool = True) -> Path:
    pairs = [("what is two plus two", "four is the answer"), ("how do I bake bread", "mix flour and water")]
    sft = write_jsonl(root / "sft.jsonl", [chat(q, a) for q, a in pairs] * 4)
    train = write_jsonl(root / "train.jsonl", marker_rankings(16, 1))
    held = write_jsonl(root / "eval.jsonl", marker_rankings(6, 2))
    text = write_jsonl(root / "text.jsonl", [{"text": t} for t in CORPUS[:4]])
    stages = "  - {name: sft, kind: sft, max_steps: 2, batch_size: 4, max_length: 64, logging_steps: 1}\n"
    if rm:
        stages += ("  - {name: rm, kind: rm, init: sft, max_steps: 2, batch_size: 4, max_length: 64,"
                   " eval_before: false, gate: ['rm_accuracy >= 0']}\n")
    hooks = f"  - {{hook: perplexity, data: {text}}}\n"
    if rm:
        hooks += ("  - {hook: win_rate, max_examples: 2, generation: {max_new_tokens: 4}}\n"
                  "  - {hook: rm_accuracy, max_examples: 4}\n")
    (root / "r.yaml").write_text(f"""name: tiny
model: {{name: {model}, lora: {{r: 4, alpha: 8}}}}
data: {{sft: {{train: {sft}, eval: {sft}}}, rankings: {{train: {train}, eval: {held}}}}}
tracking: {{backend: none}}
output_dir: {root / "run"}
evals:
{hooks}stages:
{stages}""")
    return root / "r.yaml"


def _on_terminal(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str, str]:
    """The `align` script with stderr on a pseudo-terminal (80 columns), as a user sees it: (rc, stdout, stderr)."""
    import shutil
    import sys

    script = shutil.which("align") or str(Path(sys.executable).parent / "align")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    # a cache of its own: tokenized data another test cached would skip the tokenizing line and TRL's maps
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(cwd / "home"), "TERM": "xterm",
           "ALIGN_CACHE": str(cwd / "align-cache")}
    proc = subprocess.Popen([script, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    err, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.communicate(timeout=30)[0]
    return proc.returncode, out, err.decode(errors="replace")


def test_tiny_run_on_a_terminal_shows_steps_bars_and_final_block(tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir)
    rc, out, err = _on_terminal(["run", str(recipe)], tmp_path)
    both = out + err
    assert rc == 0, both[-3000:]
    for noise in NOISE:  # the libraries' bars and the Trainer's dicts stay off by default
        assert noise not in both, (noise, both[-3000:])
    lines = [line.strip() for line in re.split(r"[\r\n]+", err)]
    for line in ("baseline: perplexity on text.jsonl (scoring) ...", "sft: training ...",
                 "sft: held-out loss before training, 8 examples ...", "rm: tokenizing 16 rankings (cached for the "
                 "next run) ...", "rm: rm_accuracy on eval.jsonl, at most 4 (scoring) ...",
                 "sft: win_rate on eval.jsonl, at most 2 (generation, judged) ..."):
        assert line in lines, (line, err[-3000:])
    assert "sft: train (new)" in err and "rm: train (its start model sft is new)" in err  # the plan lines
    assert re.search(r"sft: training \(?.*\| ?\d+/2 \[", err) or "sft: training:" in err  # the training bar
    assert re.search(r"\d+/2 \[.*loss=", err), err[-3000:]  # steps with the logged loss
    assert "prompts generated" in err  # the generation bar, named after its step
    # the final block, on stdout: total time, the report's path and URL, each gate with its value
    html = (tmp_path / "run" / "report.html").resolve()
    assert re.search(r"^finished in \d+ s$", out, re.M), out
    assert f"report: {html}" in out and html.as_uri() in out and html.as_uri().startswith("file:///")
    assert re.search(r"gate rm: rm_accuracy >= 0 {2}passed \(rm_accuracy = [\d.]+\)", out), out
    # rerun with a stricter gate: the stages are reused, said in plain words with a local time (not an ISO
    # stamp); the gate fails, and the final block still says where the report is and which gate failed
    rerun = align_cli("run", str(recipe), 'stages.rm.gate=["rm_accuracy >= 1.01"]', cwd=tmp_path, timeout=120)
    assert rerun.returncode == 2 and "error: stage rm failed its gate" in rerun.stderr, rerun.stderr[-2000:]
    assert re.search(r"^sft: reuse \(unchanged since \d\d:\d\d\)$", rerun.stderr, re.M), rerun.stderr
    assert re.search(r"^gate rm: rm_accuracy >= 1.01  FAILED \(rm_accuracy = [\d.]+\)$", rerun.stdout, re.M)
    assert html.as_uri() in rerun.stdout


def test_piped_run_is_quiet_and_verbose_brings_the_libraries_back(tmp_path, tiny_model_dir):
    recipe = _recipe(tmp_path, tiny_model_dir, rm=False)
    quiet = align_cli("run", str(recipe), cwd=tmp_path, timeout=120, env={"ALIGN_CACHE": str(tmp_path / "cache")})
    both = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, both[-3000:]
    for noise in NOISE:
        assert noise not in both, (noise, both[-3000:])
    assert "\r" not in quiet.stderr  # not a terminal: no bars at all, the step lines say what happens
    assert re.search(r"^sft: training: done in \d+ s$", quiet.stderr, re.M), quiet.stderr
    assert re.search(r"^baseline: perplexity on text.jsonl \(scoring\): done in \d+ s$", quiet.stderr, re.M)
    assert "gates: none in this recipe" in quiet.stdout
    # an empty cache, so that the data is prepared again (the first run cached it) and TRL's maps show; and
    # datasets' bars allowed: a test that ran align in-process leaves its quiet settings in this environment
    loud = align_cli("run", str(recipe), "--force", "sft", "--verbose", cwd=tmp_path, timeout=120,
                     env={"ALIGN_CACHE": str(tmp_path / "fresh-cache"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "0"})
    both = loud.stdout + loud.stderr
    assert loud.returncode == 0, both[-3000:]
    assert "sft: train (forced)" in loud.stderr
    assert "{'loss':" in both and "'train_runtime'" in both  # the Trainer's own output
    assert "Loading weights" in both  # transformers' weight-loading bar
    assert "Building labels" in both or "Map" in both  # TRL's datasets maps


def test_plan_line_words_and_local_times():
    today = datetime.now().strftime("%Y-%m-%d")
    assert plan_line("sft", "run", "new") == "sft: train (new)"
    assert plan_line("sft", "reuse", f"unchanged since {today}T14:02:11") == "sft: reuse (unchanged since 14:02)"
    assert plan_line("dpo", "resume", "from step 40") == "dpo: resume from step 40"
    assert plan_line("rm", "skip", "--only sft") == "rm: skip (--only sft)"
    assert local_times("since 2020-03-04T05:06:07") == "since 2020-03-04 05:06"
    utc = datetime(2020, 3, 4, 5, 6).astimezone().utcoffset()  # a stamp with a zone is shown in local time
    assert local_times("at 2020-03-04T05:06:07Z") == f"at {(datetime(2020, 3, 4, 5, 6) + utc):%Y-%m-%d %H:%M}"
    assert [duration(s) for s in (0.4, 41, 192, 3725)] == ["0 s", "41 s", "3 min 12 s", "1 h 02 min"]


def test_final_block_names_each_gate(tmp_path):
    (tmp_path / "report.html").write_text("<html></html>")
    gates = [{"gate": "rm_accuracy >= 0.65", "metric": "rm_accuracy", "value": 0.5, "passed": False, "op": ">=",
              "bound": 0.65}]
    rows = [{"row": "baseline", "metrics": {}}, {"row": "rm", "metrics": {}, "gates": gates}]
    (tmp_path / "evals.json").write_text(json.dumps({"rows": rows}))
    block = final_block(tmp_path, 75.2).splitlines()
    html = (tmp_path / "report.html").resolve()
    assert block == ["finished in 1 min 15 s", f"report: {html}", f"        {html.as_uri()}",
                     "gate rm: rm_accuracy >= 0.65  FAILED (rm_accuracy = 0.5)"]


@pytest.mark.parametrize("command", ["run", "eval", "chat", "generate", "export"])
def test_commands_that_load_models_take_verbose(command, tmp_path):
    done = align_cli(command, "--help", cwd=tmp_path)
    assert done.returncode == 0 and "-v, --verbose" in done.stdout, done.stdout


def test_transformers_bars_go_and_download_bars_stay(monkeypatch):
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    from align import console

    monkeypatch.setattr(console, "VERBOSE", False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    hf_logging.enable_progress_bar()
    console.quiet_transformers()
    assert not hf_logging.is_progress_bar_enabled()  # "Loading weights", "Writing model shards"
    assert not hub.are_progress_bars_disabled()  # a Hub download still shows its bar
