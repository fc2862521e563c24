"""A second catalogue of bad inputs (the classes a probe of other cases found), each through the real `align`
console script: exit 2, a message naming the file, line or key and the fix, no traceback, and nothing written
or deleted outside the run folder (nor, for a refused request, inside it)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import chat, write_jsonl
from tests.test_bad_inputs import GOOD, RECIPE, _stage, align_cli, refused
from tests.test_run_folder_safety import snapshot

BIG = "1" + "0" * 400  # an integer no float holds
TINY_RECIPE = """name: one
model: {{name: {model}, lora: {{r: 4, alpha: 8}}}}
data: {{sft: {{train: chat.jsonl}}}}
tracking: none
output_dir: {out}
stages:
  - {{name: sft, kind: sft, max_steps: 1, batch_size: 2, max_length: 32, eval_before: false}}
"""


def _manifest(stages: str) -> str:
    return '{"stages": ' + stages + "}"


# name -> (files to write, align arguments, text expected in the output); every case exits 2
CONSOLE: dict[str, tuple[dict[str, str | bytes], list[str], str]] = {
    # YAML the reader refuses as it starts (outside the parser's own errors)
    "recipe-nul-byte": ({"r.yaml": RECIPE + "x: a\0b\n"}, ["validate", "r.yaml"],
                        "r.yaml line 10: character 0x0000 is a control character"),
    "override-control-char": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "name=a\x01"],
                              "character 0x0001 is a control character"),
    # numbers past what a float or a 64-bit integer holds
    "int-too-large-for-float": ({"r.yaml": RECIPE}, ["validate", "r.yaml", f"stages.sft.learning_rate={BIG}"],
                                "stages.sft.learning_rate: must be a finite number, got an integer of 401 digits"),
    "int-past-64-bits": ({"r.yaml": RECIPE}, ["validate", "r.yaml", f"stages.sft.max_length={BIG}"],
                         "stages.sft.max_length: an integer of 401 digits is larger than any count"),
    "batch-size-past-64-bits": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "stages.sft.batch_size=" + "9" * 20],
                                "stages.sft.batch_size: 99999999999999999999 is larger than any count"),
    "int-too-many-digits-to-read": ({"r.yaml": RECIPE + "seed: 1" + "0" * 5000 + "\n"}, ["validate", "r.yaml"],
                                    "r.yaml: a number too long to read"),
    "margin-too-large-for-float": ({"p.jsonl": json.dumps(GOOD)[:-1] + f', "margin": {BIG}}}\n'},
                                   ["data", "check", "p.jsonl"], "p.jsonl line 1, field 'margin': expected a number"),
    # a list with one bad item: reported once, by its key; no half-built list reaches later checks
    "list-item-wrong-type": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "model.lora.target_modules=[1]"],
                             "model.lora.target_modules[0]: expected str, got int 1"),
    "gate-item-wrong-type": ({"r.yaml": _stage("    gate: [5]\n")}, ["validate", "r.yaml"],
                             "r.yaml: 1 problem in the recipe"),
    # a user hook that cannot be called as function(model, tok, ctx): found before any stage trains
    "user-hook-signature": ({"r.yaml": RECIPE + "evals:\n  - {hook: 'hk:two'}\n",
                             "hk.py": "def two(model, tok):\n    return {}\n"}, ["validate", "r.yaml"],
                            "hook hk:two takes (model, tok); a hook is called as function(model, tok, ctx)"),
    # empty paths: the current folder to pathlib
    "empty-data-path": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "data.sft.train="],
                        "data.sft.train: an empty path, which would mean the current folder"),
    "empty-output-dir": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--dry-run", "output_dir="],
                         "output_dir: an empty path"),
    "empty-cli-path": ({}, ["data", "check", ""], "FILE is empty"),
    # what validation can see before a run loads it
    "model-folder-missing": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "model.name=./nope"],
                             "model.name: './nope' is not a model folder (no config.json) nor a .gguf file"),
    "model-gguf-missing": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "model.name=./m.gguf"],
                           "model.name: model file './m.gguf' does not exist"),
    "accelerate-config-missing": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "launch.accelerate_config=nope.yaml"],
                                  "launch.accelerate_config: accelerate config 'nope.yaml' is not a file"),
    "target-modules-bad-regex": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "model.lora.target_modules=q_("],
                                 "model.lora.target_modules: 'q_(' is neither 'all-linear' nor a regular expression"),
    # names longer than a file system takes
    "stage-name-too-long": ({"r.yaml": _stage("  - {name: " + "s" * 150 + ", kind: sft}\n")}, ["validate", "r.yaml"],
                            "is 150 characters; at most 100"),
    "output-dir-name-too-long": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--dry-run", "output_dir=" + "o" * 300],
                                 "output_dir: 'ooo"),
    "data-file-name-too-long": ({}, ["data", "check", "x" * 300 + ".jsonl"], "file name too long"),
    # text that is no Unicode, and CSV files that would lose a value
    "lone-surrogate": ({"p.jsonl": '{"prompt": "hi \\ud800", "chosen": "a", "rejected": "b"}\n'},
                       ["data", "check", "p.jsonl"], "p.jsonl line 1, field 'prompt': a lone surrogate escape"),
    "csv-column-named-twice": ({"p.csv": "prompt,prompt,chosen,rejected\na,b,c,d\n"}, ["data", "check", "p.csv"],
                               "p.csv line 1: the header names column 'prompt' twice"),
    "csv-value-without-column": ({"p.csv": "prompt,,chosen,rejected\na,x,c,d\n"}, ["data", "check", "p.csv"],
                                 "p.csv line 2: a value in a column the header does not name"),
    # a data file with no records is no data
    "json-empty-list": ({"p.json": "[]"}, ["data", "check", "p.json"], "p.json: no records"),
    "csv-header-only": ({"p.csv": "prompt,chosen,rejected\n"}, ["data", "check", "p.csv"], "p.csv: no records"),
    # align runs: a root that is not there, manifests whose fields have other types
    "runs-root-missing": ({}, ["runs", "nope"], "nope does not exist"),
    "runs-root-is-a-file": ({}, ["runs", "chat.jsonl"], "chat.jsonl is not a folder"),
    # the launcher's own inputs
    "num-processes-zero": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--num-processes", "0"],
                           "--num-processes 0: must be >= 1"),
    "from-and-only": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--from", "sft", "--only", "sft"], "not allowed with"),
    "accelerate-config-a-list": ({"r.yaml": RECIPE, "a.yaml": "- 1\n"}, ["run", "r.yaml", "--accelerate-config",
                                                                        "a.yaml"], "expected a mapping of accelerate"),
    "accelerate-config-not-utf8": ({"r.yaml": RECIPE, "a.yaml": b"\xff\xfe\x00"},
                                   ["run", "r.yaml", "--accelerate-config", "a.yaml"], "cannot read it (not UTF-8"),
    "accelerate-config-python-tag": ({"r.yaml": RECIPE, "a.yaml": "x: !!python/object/apply:os.system [true]\n"},
                                     ["run", "r.yaml", "--accelerate-config", "a.yaml"], "YAML syntax error"),
    # overrides through something that is no mapping
    "override-through-a-string": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "tracking.backend.x=1"],
                                  "tracking is str 'none', not a mapping"),
    # output_dir at a folder align did not make: the recipe's own folder, a home
    "output-dir-is-the-recipe-folder": ({"r.yaml": RECIPE + "output_dir: .\n"}, ["run", "r.yaml"],
                                        "is a folder align did not make (no manifest.json)"),
    "output-dir-is-home": ({"r.yaml": RECIPE + "output_dir: ~/\n", "home/report.md": "mine"}, ["run", "r.yaml"],
                           "home is a folder align did not make"),
    # a data file saved as UTF-16 (Windows' "Unicode"): named once, before any line is read
    "data-file-utf16": ({"p.jsonl": (json.dumps(GOOD) + "\n").encode("utf-16")}, ["data", "check", "p.jsonl"],
                        "p.jsonl: UTF-16 text"),
    # align eval's data file, checked before the model loads
    "eval-data-missing": ({}, ["eval", "base", "--hook", "perplexity", "--data", "missing.jsonl"],
                          "--data missing.jsonl: no such file"),
}


@pytest.mark.parametrize("name", CONSOLE)
def test_bad_input_exits_2_and_writes_nothing(name, tmp_path):
    files, args, expected = CONSOLE[name]
    (tmp_path / "home").mkdir()
    write_jsonl(tmp_path / "chat.jsonl", [chat("hi", "hello")])
    write_jsonl(tmp_path / "pairs.jsonl", [GOOD])
    for rel, content in files.items():
        (tmp_path / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(tmp_path)
    text = refused(*args, cwd=tmp_path, expected=expected)
    assert "object at 0x" not in text  # no placeholder of a refused value in a second message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("status", ["null", "[1]", '{"a": 1}'])
def test_runs_lists_a_manifest_with_fields_of_other_types_as_unreadable(tmp_path, status):
    (tmp_path / "home").mkdir()
    (tmp_path / "rs" / "x").mkdir(parents=True)
    (tmp_path / "rs" / "x" / "manifest.json").write_text(_manifest('{"sft": {"status": ' + status + "}}"))
    out = align_cli("runs", "rs", cwd=tmp_path)
    assert out.returncode == 0 and "unreadable: manifest.json is not a manifest align wrote" in out.stdout, out.stderr


# ---- on a finished run: tampered folders, outputs that would overwrite, the run's own entries -------------

@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of the shared tiny run (sft -> rm -> dpo) beside a folder that must stay as it is."""
    shutil.copytree(tiny_run, tmp_path / "run", symlinks=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("a file beside the run folder")
    (tmp_path / "victim" / "mine.svg").write_text("<svg/>")
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "what is two plus two"}])
    write_jsonl(tmp_path / "text.jsonl", [{"text": "the cat sat on the mat"}])
    (tmp_path / "hook.py").write_text("def broken(model, tok, ctx):\n    raise ValueError('my bug')\n\n"
                                      "def words(model, tok, ctx):\n    return {'quality': 'high'}\n\n"
                                      "def nan(model, tok, ctx):\n    return {'score': float('nan')}\n\n"
                                      "def two(model, tok):\n    return {}\n")
    return tmp_path / "run"


def _replace(path: Path, content: str | bytes | None) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _link_out(run: Path, name: str, target: Path) -> None:
    _replace(run / name, None)
    os.symlink(target, run / name)


GEN = ["generate", "run/sft", "--prompts", "prompts.jsonl", "--out", "answers.jsonl"]
EVAL = ["eval", "run/sft", "--hook", "perplexity", "--data", "text.jsonl"]
# name -> (how the run folder is tampered, align arguments, text expected in the output); every case exits 2
ON_A_RUN = {
    "report-md-links-out": (lambda r: _link_out(r, "report.md", r.parent / "victim" / "keep.txt"), ["report", "run"],
                            "run/report.md is a link to"),
    "report-plots-link-out": (lambda r: _link_out(r, "report_plots", r.parent / "victim"), ["report", "run"],
                              "outside the run folder; align writes there"),
    "metrics-json-a-list": (lambda r: _replace(r / "sft" / "metrics.json", "[1, 2]"), ["report", "run"],
                            "sft/metrics.json: not the record align writes (the top level: expected dict, got list)"),
    "evals-json-rows-a-number": (lambda r: _replace(r / "evals.json", '{"rows": 5}'), ["report", "run"],
                                 "evals.json: not the record align writes (rows: expected a list, got int)"),
    "model-json-a-list": (lambda r: _replace(r / "sft" / "model.json", "[1]"), GEN,
                          "run/sft is not a finished stage artifact (no readable config.yaml, artifact.json and "
                          "model.json of the shape align writes: model.json)"),
    "config-yaml-without-model": (lambda r: _replace(r / "sft" / "config.yaml", "stage: {}\n"), GEN,
                                  "of the shape align writes: config.yaml"),
    "adapter-weights-truncated": (lambda r: _replace(r / "sft" / "adapter" / "adapter_model.safetensors",
                                                     b"\x08\0\0\0\0\0\0\0{}"), GEN, "cannot load the adapter of"),
    "adapter-folder-missing": (lambda r: _replace(r / "sft" / "adapter", None), GEN, "cannot load the adapter of"),
    "tokenizer-json-damaged": (lambda r: _replace(r / "sft" / "tokenizer" / "tokenizer.json", "{"), GEN,
                               "cannot load the tokenizer of"),
    "generate-out-is-a-folder": (None, GEN[:-1] + ["victim"], "--out victim: is a folder"),
    "generate-out-is-an-artifact-record": (None, GEN[:-1] + ["run/sft/artifact.json"],
                                           "is inside the stage artifact"),
    "generate-out-is-the-manifest": (None, GEN[:-1] + ["run/manifest.json"], "is the run folder's own manifest.json"),
    "generate-out-unwritable": (None, GEN[:-1] + ["/proc/answers.jsonl"], "cannot write in /proc"),
    "generate-temperature-inf": (None, GEN + ["--temperature", "inf"], "--temperature inf: must be a finite number"),
    "generate-prompt-longer-than-the-model": (
        lambda r: write_jsonl(r.parent / "prompts.jsonl", [{"prompt": "the cat sat " * 300}]), GEN,
        "prompts.jsonl: 1 prompt longer than the model reads"),
    "eval-json-is-the-data": (None, EVAL + ["--json", "text.jsonl"], "--json text.jsonl is the --data file itself"),
    "eval-json-is-the-report": (None, EVAL + ["--json", "run/report.md"], "is the run folder's own report.md"),
    "eval-against-missing": (None, ["eval", "run/dpo", "--hook", "win_rate", "--data", "prompts.jsonl", "--judge",
                                    "run/rm", "--against", "nope"], "nope: not a finished stage artifact"),
    "eval-judge-a-policy": (None, ["eval", "run/dpo", "--hook", "win_rate", "--data", "prompts.jsonl", "--judge",
                                   "run/sft"], "--judge run/sft: a causal lm artifact; the judge is a reward model"),
    "eval-user-hook-raises": (None, ["eval", "run/sft", "--hook", "hook:broken"],
                              "hook hook:broken raised ValueError: my bug"),
    "eval-user-hook-returns-text": (None, ["eval", "run/sft", "--hook", "hook:words"],
                                    "hook hook:words returned 'quality': 'high'"),
    "eval-user-hook-returns-nan": (None, ["eval", "run/sft", "--hook", "hook:nan"],
                                   "hook hook:nan returned 'score': nan; a hook returns a dict of metric name "
                                   "(a string) -> a finite number"),
    "eval-user-hook-takes-two-arguments": (None, ["eval", "run/sft", "--hook", "hook:two"],
                                           "hook hook:two takes (model, tok); a hook is called as "
                                           "function(model, tok, ctx)"),
    "export-out-inside-an-artifact": (None, ["export", "run/sft", "--out", "run/sft/adapter/x"],
                                      "is inside the stage artifact"),
    "export-out-name-too-long": (None, ["export", "run/sft", "--out", "e" * 300], "file name too long"),
}


@pytest.mark.parametrize("name", ON_A_RUN)
def test_bad_input_on_a_finished_run_exits_2_and_changes_nothing(name, run):
    tamper, args, expected = ON_A_RUN[name]
    if tamper:
        tamper(run)
    before = snapshot(run.parent)
    refused(*args, cwd=run.parent, expected=expected, timeout=300)
    assert snapshot(run.parent) == before


def test_chat_refuses_a_line_that_is_not_utf8_and_goes_on(run):
    import subprocess

    script = shutil.which("align") or str(Path(os.sys.executable).parent / "align")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(run.parent / "home")}
    out = subprocess.run([script, "chat", "run/sft", "--max-new-tokens", "2"], cwd=run.parent, env=env,
                         input=b"hi \xff\nhello\n", capture_output=True, timeout=300)
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2 and "that line is not UTF-8 text" in err and "Traceback" not in err, err[-3000:]
    assert out.stdout.decode(errors="replace").count("assistant>") == 1  # the next line was answered


# ---- align run: a run folder that is not align's, values the schema allows but the machine cannot ---------

@pytest.mark.parametrize("setting, expected", [
    ("model.lora.r=100000000000000", "stage sft: out of memory"),
    ("model.lora.target_modules=q_proj", "'q_proj', a regular expression, matches the whole name of no module"),
])
def test_a_run_that_cannot_train_exits_2_naming_the_setting(tmp_path, tiny_model_dir, setting, expected):
    (tmp_path / "home").mkdir()
    write_jsonl(tmp_path / "chat.jsonl", [chat("what is two plus two", "four is the answer")] * 4)
    (tmp_path / "r.yaml").write_text(TINY_RECIPE.format(model=tiny_model_dir, out="run"))
    refused("run", "r.yaml", setting, cwd=tmp_path, expected=expected, timeout=300)
    assert not (tmp_path / "run" / "sft").exists()


def test_a_run_folder_whose_manifest_was_deleted_is_still_a_run_folder(run):
    """Only finished stage folders left: align's own, so a rerun may use the folder (and reuses nothing else)."""
    for name in [p.name for p in run.iterdir() if not (p / "artifact.json").is_file()]:
        _replace(run / name, None)
    recipe = run.parent / "r.yaml"
    recipe.write_text(TINY_RECIPE.format(model="smollm2-135m-instruct", out="run"))
    write_jsonl(run.parent / "chat.jsonl", [chat("hi", "hello")])
    out = align_cli("run", "r.yaml", "--dry-run", cwd=run.parent)
    assert out.returncode == 0 and "sft:" in out.stdout, out.stderr


@pytest.mark.parametrize("record", ["{", '{"status": "training"}', None])
def test_a_stage_folder_with_a_damaged_record_is_not_trained_over(run, tiny_model_dir, record):
    """align moves a stage folder into place only after its artifact.json: one without a finished record was
    changed by hand, and its weights stay until --force asks for the stage again."""
    _replace(run / "sft" / "artifact.json", record)
    recipe = run.parent / "r.yaml"
    recipe.write_text(TINY_RECIPE.format(model=tiny_model_dir, out="run"))
    write_jsonl(run.parent / "chat.jsonl", [chat("what is two plus two", "four is the answer")] * 4)
    before = snapshot(run.parent)
    out = align_cli("run", "r.yaml", cwd=run.parent, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text, text[-3000:]
    assert "run/sft/artifact.json" in text and "--force sft" in text, text[-3000:]
    assert snapshot(run.parent) == before
    forced = align_cli("run", "r.yaml", "--force", "sft", cwd=run.parent, timeout=300)
    assert forced.returncode == 0, (forced.stdout + forced.stderr)[-3000:]
    assert json.loads((run / "sft" / "artifact.json").read_text())["status"] == "finished"
