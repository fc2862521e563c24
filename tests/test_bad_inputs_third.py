"""A third catalogue of bad inputs (the classes a third probe found), each through the real `align` console script:
exit 2 (or 0 for input that must be accepted), a message naming the file, line, key or flag and the fix, no
traceback, and nothing written or deleted outside the run folder (nor, for a refused request, inside it)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import chat, write_jsonl
from tests.test_bad_inputs import RECIPE, align_cli, refused
from tests.test_run_folder_safety import snapshot

STAGE = "  - {name: sft, kind: sft, max_steps: 1, batch_size: 2, max_length: 32, eval_before: false, save_steps: 0}\n"


def tiny(model: Path, stages: str = STAGE, tracking: str = "none") -> str:
    """A recipe on the tiny model whose stages train in seconds, its run folder `run`."""
    return (f"name: t\nmodel: {{name: {model}, lora: {{r: 4, alpha: 8}}}}\n"
            "data: {sft: {train: chat.jsonl}, rankings: {train: pairs.jsonl}}\n"
            f"tracking: {tracking}\noutput_dir: run\nstages:\n{stages}")


def _two(a: str, b: str) -> str:
    stages = f"stages:\n  - {{name: {a}, kind: sft}}\n  - {{name: {b}, kind: sft, init: {a}}}\n"
    return RECIPE.split("stages:")[0] + stages


W = "tracking: {backend: wandb, project: p}"
# name -> (files to write, align arguments, extra environment, text expected in the output); every case exits 2
CONSOLE: dict[str, tuple[dict[str, str], list[str], dict[str, str], str]] = {
    # a key YAML reads as no text (null, a boolean, a number) is named with its line, not 'top level, None'
    "yaml-null-key": ({"r.yaml": RECIPE + "null: x\n"}, ["validate", "r.yaml"], {},
                      "r.yaml line 10: the key 'null' is read by YAML as null (nothing), not as a name"),
    "yaml-on-key-in-stage": ({"r.yaml": RECIPE + "    on: 1\n"}, ["validate", "r.yaml"], {},
                             "r.yaml line 10: the key 'on' is read by YAML as a boolean"),
    "stage-name-a-number-has-its-line": ({"r.yaml": RECIPE.replace("  - name: sft\n", "  - name: 1\n")},
                                         ["validate", "r.yaml"], {}, "line 8, stages[0].name: expected str, got int"),
    # a value no dict key can be (a list) is an unknown kind, not an internal error
    "stage-kind-a-list": ({"r.yaml": RECIPE.replace("kind: sft", "kind: [sft]")}, ["validate", "r.yaml"], {},
                          "stages.sft.kind: unknown stage kind '['sft']'"),
    # override paths that name no key
    "override-leading-dot": ({"r.yaml": RECIPE}, ["validate", "r.yaml", ".name=x"], {},
                             "override '.name=x': an empty key in the path '.name'"),
    "override-double-dot": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "model..name=x"], {},
                            "override 'model..name=x': an empty key"),
    "override-index-of-5000-digits": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "stages." + "9" * 5000 + ".seed=1"],
                                      {}, "no stage named '9999"),
    "override-index-superscript": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "stages.\u00b2.seed=1"], {},
                                   "no stage named '\u00b2'"),
    # --from / --only / --force: an exact stage name, an empty one (an unset shell variable) included
    "from-empty": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--dry-run", "--from", ""], {},
                   "--from '': no such stage; stages: sft"),
    "force-other-case": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--dry-run", "--force", "SFT"], {},
                         "did you mean sft?"),
    # names that are one folder, or none, on the file systems a run folder is copied to
    "stage-names-differ-only-in-case": ({"r.yaml": _two("sft", "SFT")}, ["validate", "r.yaml"], {},
                                        "two stages are named 'SFT' and 'sft', one folder where case is not told"),
    "stage-named-like-a-device": ({"r.yaml": _two("sft", "CON")}, ["validate", "r.yaml"], {},
                                  "stage name 'CON' names no folder on Windows"),
    "recipe-name-trailing-dot": ({"r.yaml": RECIPE.replace("name: t\n", "name: run.\n")}, ["validate", "r.yaml"], {},
                                 "recipe name 'run.' names no folder on Windows"),
    # tracking settings W&B refuses only when the first stage starts
    "wandb-project-slash": ({"r.yaml": RECIPE.replace("tracking: none", W.replace(" p}", " a/b}"))},
                            ["validate", "r.yaml"], {}, "tracking.project: 'a/b' is not a W&B project name"),
    "wandb-tag-too-long": ({"r.yaml": RECIPE.replace("tracking: none", W.replace("}", ", tags: [" + "t" * 65 + "]}"))},
                           ["validate", "r.yaml"], {}, "tracking.tags: 'tttt"),
    "wandb-mode-unknown": ({"r.yaml": RECIPE.replace("tracking: none", W)}, ["run", "r.yaml", "--dry-run"],
                           {"WANDB_MODE": "bogus"}, "WANDB_MODE=bogus is not one of online, offline"),
    # the cache folder, checked before every command that loads a model, also when ALIGN_CACHE is unset
    "cache-under-a-file-home": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--dry-run"],
                                {"ALIGN_CACHE": "", "HOME": "chat.jsonl"}, "(ALIGN_CACHE is not set): cannot write"),
    "cache-a-file-generate": ({}, ["generate", "base", "--model", "x", "--prompts", "chat.jsonl", "--out", "o.jsonl"],
                              {"ALIGN_CACHE": "chat.jsonl"}, "ALIGN_CACHE=chat.jsonl is not a folder"),
    "cache-a-file-chat": ({}, ["chat", "base", "--model", "x"], {"ALIGN_CACHE": "chat.jsonl"},
                          "ALIGN_CACHE=chat.jsonl is not a folder"),
    "cache-a-file-export": ({}, ["export", "nope", "--out", "exp"], {"ALIGN_CACHE": "chat.jsonl"},
                            "ALIGN_CACHE=chat.jsonl is not a folder"),
    # command-line numbers, checked against the ranges of the recipe keys they mirror
    "generate-seed-negative": ({}, ["generate", "base", "--model", "x", "--prompts", "chat.jsonl", "--out", "o.jsonl",
                                    "--seed", "-1"], {}, "--seed -1: must be in [0, 4294967295]"),
    "chat-seed-past-64-bits": ({}, ["chat", "base", "--model", "x", "--seed", "9" * 25], {},
                               "--seed 9999999999999999999999999: larger than any count"),
    "num-processes-past-64-bits": ({"r.yaml": RECIPE}, ["run", "r.yaml", "--num-processes", "9" * 22], {},
                                   "--num-processes 9999999999999999999999: larger than any count"),
    "eval-max-new-tokens-past-64-bits": ({}, ["eval", "base", "--hook", "kl", "--max-new-tokens", "9" * 20], {},
                                         "--max-new-tokens 99999999999999999999: larger than any count"),
    # files a command writes through a temporary file renamed over them: never a pipe or device, nor a folder
    "generate-out-trailing-slash": ({}, ["generate", "base", "--model", "x", "--prompts", "chat.jsonl", "--out",
                                         "newdir/"], {}, "--out newdir/: is a folder"),
    "generate-out-a-fifo": ({}, ["generate", "base", "--model", "x", "--prompts", "chat.jsonl", "--out", "fifo"], {},
                            "--out fifo: is not a regular file (a pipe, socket or device)"),
    "eval-json-a-fifo": ({}, ["eval", "base", "--hook", "kl", "--json", "fifo"], {},
                         "--json fifo: is not a regular file"),
}


@pytest.mark.parametrize("name", CONSOLE)
def test_bad_input_exits_2_and_writes_nothing(name, tmp_path):
    files, args, env, expected = CONSOLE[name]
    (tmp_path / "home").mkdir()
    write_jsonl(tmp_path / "chat.jsonl", [chat("hi", "hello")])
    os.mkfifo(tmp_path / "fifo")
    for rel, content in files.items():
        (tmp_path / rel).write_text(content)
    before = snapshot(tmp_path)
    refused(*args, cwd=tmp_path, expected=expected,
            env={k: str(tmp_path / v) if k == "HOME" else v for k, v in env.items()})
    assert snapshot(tmp_path) == before


def test_generate_out_a_device_is_refused_not_replaced(tmp_path):
    """Written as root, `--out /dev/null` would be replaced by a regular file: a device is refused before work."""
    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs root")
    (tmp_path / "home").mkdir()
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    out = align_cli("generate", "base", "--model", "x", "--prompts", "p.jsonl", "--out", "null", cwd=tmp_path)
    assert out.returncode == 2 and "--out null: is not a regular file" in out.stderr, out.stderr
    assert stat.S_ISCHR((tmp_path / "null").lstat().st_mode)


# ---- on a finished run: align's own entries of the wrong kind, links among a stage's work folders ----------

@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of the shared tiny run (sft -> rm -> dpo) with its recipe, a cache of its own (in the snapshot)."""
    shutil.copytree(tiny_run, tmp_path / "run", symlinks=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "cache").mkdir()
    recipe = (tmp_path / "run" / "recipe.yaml").read_text()
    (tmp_path / "r.yaml").write_text(recipe.replace(f"output_dir: {tiny_run}", "output_dir: run"))
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "what is two plus two"}])
    return tmp_path / "run"


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _link_out(path: Path) -> None:
    (path.parent.parent / "victim").mkdir()
    (path.parent.parent / "victim" / "keep.txt").write_text("mine")
    os.symlink(path.parent.parent / "victim", path)


ON_A_RUN = {
    # a FIFO in place of one of the run folder's records blocked every reader of it forever
    "evals-json-a-fifo": (lambda r: _fifo(r / "evals.json"), ["report", "run"],
                          "evals.json: cannot read it (not a regular file (a pipe, socket or device))"),
    "metrics-json-a-fifo": (lambda r: _fifo(r / "sft" / "metrics.json"), ["report", "run"],
                            "metrics.json: cannot read it (not a regular file"),
    "lock-a-fifo": (lambda r: _fifo(r / ".lock"), ["run", "r.yaml"], "run/.lock is not a regular file"),
    "artifact-json-a-fifo": (lambda r: _fifo(r / "sft" / "artifact.json"),
                             ["generate", "run/sft", "--prompts", "p.jsonl", "--out", "o.jsonl"],
                             "run/sft is not a finished stage artifact"),
    # a stage's .old work folder linking out is refused before the stage trains, not after
    "old-folder-links-out": (lambda r: _link_out(r / ".dpo.old"), ["run", "r.yaml", "--force", "dpo"],
                             "refusing to write"),
    # a rename's destination that is a folder is named, not the temporary file renamed
    "manifest-a-folder": (lambda r: ((r / "manifest.json").unlink(), (r / "manifest.json").mkdir()),
                          ["run", "r.yaml", "--only", "sft"], "run/manifest.json: a folder is in the way"),
    # an artifact of the wrong kind for its role, an export the run could later replace or the Hub refuse
    "eval-against-a-reward-model": (None, ["eval", "run/dpo", "--hook", "win_rate", "--data", "p.jsonl", "--judge",
                                           "run/rm", "--against", "run/rm"],
                                    "run/rm: a reward artifact; the answers compared come from a policy"),
    "export-into-the-run-folder": (None, ["export", "run/sft", "--out", "run/exported"], "where stage artifacts go"),
    "export-to-a-bad-repo-id": (None, ["export", "run/sft", "--out", "exp", "--push-to-hub", "not a repo!!"],
                                "--push-to-hub not a repo!!: not a Hub repository id"),
}


@pytest.mark.parametrize("name", ON_A_RUN)
def test_bad_entry_in_a_run_folder_exits_2_and_changes_nothing(name, run):
    tamper, args, expected = ON_A_RUN[name]
    if tamper:
        tamper(run)
    before = snapshot(run.parent)
    refused(*args, cwd=run.parent, expected=expected, timeout=120,
            env={"ALIGN_CACHE": str(run.parent / "cache"), "WANDB_MODE": "offline"})
    after = snapshot(run.parent)
    if name == "manifest-a-folder":  # the stage was reused and the run went on to its first record: that is all
        after = {k: v for k, v in after.items() if not k.startswith("run/")}
        before = {k: v for k, v in before.items() if not k.startswith("run/")}
    assert after == before


def test_runs_lists_a_manifest_that_is_a_fifo_as_unreadable(run):
    _fifo(run / "manifest.json")
    out = align_cli("runs", ".", cwd=run.parent, timeout=60)
    assert out.returncode == 0 and "unreadable" in out.stdout, out.stdout + out.stderr


def test_chat_with_standard_input_closed_exits_2(run):
    script = shutil.which("align") or str(Path(sys.executable).parent / "align")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(run.parent / "home")}
    out = subprocess.run([script, "chat", "run/sft"], cwd=run.parent, env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=120, preexec_fn=lambda: os.close(0))
    assert out.returncode == 2 and "standard input is closed" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr


def test_chat_refuses_a_line_without_end_before_it_fills_the_memory(run):
    """`align chat < /dev/zero`: input() read one endless line until the machine ran out of memory."""
    script = shutil.which("align") or str(Path(sys.executable).parent / "align")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(run.parent / "home")}
    with open("/dev/zero", "rb") as zeros:
        out = subprocess.run([script, "chat", "run/sft"], cwd=run.parent, env=env, stdin=zeros, capture_output=True,
                             text=True, timeout=120)
    assert out.returncode == 2 and "a line of standard input is longer than" in out.stderr, out.stderr[-3000:]


def test_generate_at_a_temperature_near_0_samples_greedily(run):
    """logits / 1e-45 overflowed to inf and the softmax to NaN: torch refused to sample (an internal error)."""
    args = ["run/sft", "--prompts", "p.jsonl", "--max-new-tokens", "4"]
    cold = align_cli("generate", *args, "--out", "cold.jsonl", "--temperature", "1e-45", cwd=run.parent, timeout=120)
    greedy = align_cli("generate", *args, "--out", "greedy.jsonl", "--temperature", "0", cwd=run.parent, timeout=120)
    assert cold.returncode == 0 and greedy.returncode == 0, cold.stderr[-3000:]
    answer = [json.loads(line)["response"] for line in (run.parent / "cold.jsonl").read_text().splitlines()]
    assert answer == [json.loads(line)["response"] for line in (run.parent / "greedy.jsonl").read_text().splitlines()]


# ---- align run on the tiny model: data and model files read when the stage starts ---------------------------

def _run_tiny(tmp_path: Path, model: Path | str, stages: str = STAGE, env: dict | None = None, *extra: str):
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "r.yaml").write_text(tiny(model, stages))
    return align_cli("run", "r.yaml", *extra, cwd=tmp_path, env=env, timeout=300)


def test_jsonl_text_with_a_unicode_line_separator_is_one_record(tmp_path, tiny_model_dir):
    """JSONL lines end at \\n only: U+2028 and \\x85 are characters a JSON string may hold (str.splitlines split
    the record in two, and the file was refused as invalid JSON)."""
    text = json.dumps(chat("a\u2028b", "c\x85d"), ensure_ascii=False)
    (tmp_path / "chat.jsonl").write_text((text + "\n") * 4)
    write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b"}])
    out = _run_tiny(tmp_path, tiny_model_dir)
    assert out.returncode == 0, out.stderr[-3000:]


def test_align_cache_with_a_tilde_is_the_home_folder(tmp_path, tiny_model_dir):
    """The check made ~/c in the home folder while the stages wrote a folder named '~' in the current one."""
    write_jsonl(tmp_path / "chat.jsonl", [chat("what is two plus two", "four")] * 4)
    pair = {"prompt": "what is two plus two", "chosen": "four", "rejected": "five"}
    write_jsonl(tmp_path / "pairs.jsonl", [pair] * 4)
    rm = STAGE.replace("name: sft, kind: sft", "name: rm, kind: rm, init: sft")
    out = _run_tiny(tmp_path, tiny_model_dir, STAGE + rm, {"ALIGN_CACHE": "~/c"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "home" / "c" / "tokenized").is_dir() and not (tmp_path / "~").exists()


@pytest.mark.parametrize("setting, content, expected", [
    ("model.name=./bad.gguf", "GGUF" + "\0" * 40, "cannot convert the GGUF file bad.gguf"),
    ("model.chat_template=t.jinja", "{% for %}", "the chat template of model.chat_template t.jinja is not a Jinja"),
])
def test_a_model_file_that_cannot_be_read_exits_2_and_leaves_no_cache_entry(tmp_path, tiny_model_dir, setting,
                                                                             content, expected):
    (tmp_path / setting.rpartition("=")[2]).write_text(content)
    write_jsonl(tmp_path / "chat.jsonl", [chat("hi", "hello")] * 4)
    write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b"}])
    out = _run_tiny(tmp_path, tiny_model_dir, STAGE, {"ALIGN_CACHE": str(tmp_path / "cache")}, setting)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and expected in text and "Traceback" not in text, text[-3000:]
    assert not list((tmp_path / "cache").glob("models/.*partial*"))
