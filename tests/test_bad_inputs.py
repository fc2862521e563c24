"""The catalogue of bad inputs: each one is a clear error (file, line or key; what is wrong; the fix),
exit code 2 without a traceback, and every earlier artifact left as it was."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from align.cli import main
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from tests.conftest import chat, write_jsonl, write_recipe

SECOND = ("    max_steps: 1\n"
          "  - name: sft2\n    kind: sft\n    init: sft\n    max_steps: 1\n    data: {{train: {data}}}\n")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A run folder whose first stage (sft) has finished; each case copies it."""
    root = tmp_path_factory.mktemp("finished")
    train = write_jsonl(root / "train.jsonl", [chat("what is two plus two", "four is the answer")] * 8)
    recipe = write_recipe(root / "r.yaml", tiny_model_dir, train, None, root / "run", stage="    max_steps: 1\n")
    run_pipeline(load_recipe(recipe))
    return root


class Case:
    def __init__(self, tmp: Path, finished: Path, model: Path):
        self.tmp, self.model = tmp, model
        shutil.copytree(finished, tmp, dirs_exist_ok=True)
        self.train = tmp / "train.jsonl"
        self.second = write_jsonl(tmp / "second.jsonl", [chat("how do I bake bread", "mix flour and water")] * 4)
        self.extra: list[str] = []

    def recipe(self, stage: str | None = None, model: Path | str | None = None, *overrides: str) -> Path:
        stage = SECOND.format(data=self.second) if stage is None else stage
        self.extra += overrides
        return write_recipe(self.tmp / "r.yaml", model or self.model, self.train, None, self.tmp / "run", stage=stage)

    def data(self, text: str | bytes) -> Path:  # bad data for the second stage
        (self.second.write_bytes if isinstance(text, bytes) else self.second.write_text)(text)
        return self.recipe()


def _good_then(line: str) -> str:
    return json.dumps(chat("hi", "hello")) + "\n" + line + "\n"


def _no_template(c: Case) -> Path:
    folder = c.tmp / "base-model"
    shutil.copytree(c.model, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return c.recipe(model=folder)


def _no_weights(c: Case) -> Path:
    (c.tmp / "empty-model").mkdir()
    (c.tmp / "empty-model" / "config.json").write_text("{}")
    return c.recipe(model=c.tmp / "empty-model")


def _fail_write(c: Case, monkeypatch, code: int) -> Path:
    import align.models

    def full_disk(*args, **kwargs):
        raise OSError(code, "simulated", str(c.tmp / "run" / ".sft2.partial" / "adapter"))

    monkeypatch.setattr(align.models, "save_model", full_disk)
    monkeypatch.setattr("align.stages.sft.save_model", full_disk)
    return c.recipe()


def _bad_rankings(c: Case) -> Path:
    good = {"prompt": "hi", "responses": ["hello there", "go away"], "ranking": [0, 1]}
    bad = {"prompt": "hey", "responses": ["hello", "no"], "ranking": [0, 5]}
    data = write_jsonl(c.tmp / "rankings.jsonl", [good, bad])
    return c.recipe(SECOND.format(data=data).replace("kind: sft\n    init", "kind: rm\n    init"))


def _locked(c: Case, monkeypatch) -> Path:
    from align.runs import RunLock

    lock = RunLock(c.tmp / "run").__enter__()
    c.extra.append(lock)
    return c.recipe()


CATALOGUE = {
    # recipe
    "yaml-syntax": (lambda c, m: _write(c, "name: x\nstages: [\n"), "line 3, column 1: YAML syntax error"),
    "not-a-mapping": (lambda c, m: _write(c, "- just\n- a list\n"), "a recipe is a mapping"),
    "unknown-key": (lambda c, m: c.recipe(SECOND.format(data=c.second) + "    betta: 1\n"),
                    "stages.sft2.betta: unknown key"),
    "wrong-type": (lambda c, m: c.recipe(SECOND.format(data=c.second) + "    batch_size: many\n"),
                   "stages.sft2.batch_size: expected int, got str 'many'"),
    "negative-learning-rate": (lambda c, m: c.recipe(SECOND.format(data=c.second) + "    learning_rate: -0.1\n"),
                               "stages.sft2.learning_rate: must be > 0, got -0.1"),
    "unknown-stage-kind": (lambda c, m: c.recipe(SECOND.format(data=c.second).replace("kind: sft\n    init",
                                                                                          "kind: kto\n    init")),
                           "unknown stage kind 'kto'"),
    "init-later-stage": (lambda c, m: c.recipe("    init: sft2\n" + SECOND.format(data=c.second)),
                         "stages.sft.init: 'sft2' is a later stage"),
    "init-missing-stage": (lambda c, m: c.recipe(SECOND.format(data=c.second).replace("init: sft", "init: rm")),
                           "stages.sft2.init: 'rm' is not a stage"),
    "init-cycle-itself": (lambda c, m: c.recipe(SECOND.format(data=c.second).replace("init: sft", "init: sft2")),
                          "stages.sft2.init: a stage cannot start from itself"),
    "duplicate-stage-name": (lambda c, m: c.recipe(SECOND.format(data=c.second).replace("name: sft2", "name: sft")),
                             "two stages are named 'sft'"),
    "bad-override": (lambda c, m: c.recipe(None, None, "stages.sft2.learning_rate"),
                     "is not of the form key.path=value"),
    # data
    "missing-data-file": (lambda c, m: c.recipe(SECOND.format(data=c.tmp / "nope.jsonl")),
                          "stages.sft2.data.train: data file"),
    "empty-data-file": (lambda c, m: c.data("\n\n"), "second.jsonl: the file is empty"),
    "bad-json-line": (lambda c, m: c.data(_good_then('{"messages": [')), "second.jsonl line 2: invalid JSON"),
    "wrong-field-type": (lambda c, m: c.data(_good_then('{"messages": [{"role": "user", "content": 7}]}')),
                         "second.jsonl line 2, field 'messages'[0]: expected"),
    "empty-string": (lambda c, m: c.data(_good_then('{"prompt": "hi", "completion": ""}')),
                     "second.jsonl line 2, field 'completion': empty text"),
    "no-assistant-turn": (lambda c, m: c.data(_good_then('{"messages": [{"role": "user", "content": "hi"}]}')),
                          "second.jsonl line 2: no assistant message"),
    "non-utf8": (lambda c, m: c.data(b'{"prompt": "hi", "completion": "ok"}\n{"prompt": "caf\xe9"}\n'),
                 "second.jsonl line 2: not UTF-8"),
    "longer-than-max-length": (lambda c, m: c.data(json.dumps(chat("two plus two " * 200, "four")) + "\n"),
                               "second.jsonl: every example's assistant reply starts after max_length=512 tokens"),
    "ranking-index-out-of-range": (lambda c, m: _bad_rankings(c), "rankings.jsonl line 2"),
    # model
    "unknown-model-name": (lambda c, m: m.setenv("HF_HUB_OFFLINE", "1") or c.recipe(model="no-such-org/no-model"),
                           "cannot load the tokenizer of 'no-such-org/no-model'"),
    "model-folder-without-weights": (lambda c, m: _no_weights(c), "empty-model has no weights"),
    "no-chat-template": (lambda c, m: _no_template(c), "has no chat template"),
    "qlora-without-cuda": (lambda c, m: m.setattr("torch.cuda.is_available", lambda: False) or
                           c.recipe(None, None, "model.adapter=qlora"), "adapter: qlora needs a CUDA GPU"),
    "target-modules-unknown": (lambda c, m: c.recipe(None, None, "model.lora.target_modules=[nope]"),
                               "model.lora.target_modules: no module named nope"),
    # environment
    "no-disk-space": (lambda c, m: _fail_write(c, m, errno.ENOSPC), "no space left on the device"),
    "unwritable-run-folder": (lambda c, m: _fail_write(c, m, errno.EACCES), "permission denied"),
    "run-folder-is-a-file": (lambda c, m: c.recipe(None, None, f"output_dir={c.train}/run"), "is not a folder"),
    "run-folder-locked": (_locked, "is in use by another align run"),
    # training
    "nan-loss": (lambda c, m: c.recipe(None, None, "stages.sft2.learning_rate=1e30", "stages.sft2.logging_steps=1",
                                       "stages.sft2.max_steps=3"), "stage sft2: training grad_norm became nan at step"),
}


def _write(c: Case, text: str) -> Path:
    (c.tmp / "r.yaml").write_text(text)
    return c.tmp / "r.yaml"


@pytest.mark.parametrize("name", CATALOGUE)
def test_bad_input(name, tmp_path, finished_run, tiny_model_dir, monkeypatch, capsys):
    make, expected = CATALOGUE[name]
    case = Case(tmp_path, finished_run, tiny_model_dir)
    recipe = make(case, monkeypatch)
    before = (tmp_path / "run" / "sft" / "artifact.json").read_text()
    overrides = [x for x in case.extra if isinstance(x, str)]
    code = main(["run", str(recipe), *overrides])
    err = capsys.readouterr().err
    for lock in (x for x in case.extra if not isinstance(x, str)):
        lock.__exit__()
    assert code == 2, err
    assert expected in err and "Traceback" not in err
    assert "hint:" in err or "did you mean" in err or "line" in err  # says how to fix or exactly where
    assert (tmp_path / "run" / "sft" / "artifact.json").read_text() == before  # earlier artifact intact
    assert not (tmp_path / "run" / "sft2" / "artifact.json").exists()


def test_catalogue_is_complete():
    assert len(CATALOGUE) >= 25


# ---- through the real `align` console script (issue 23: sys.path, exit codes and output as users get them) ----

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"prompt": "hi", "chosen": "hello there", "rejected": "go away"}
RECIPE = """name: t
model: {name: smollm2-135m-instruct}
data:
  sft: {train: chat.jsonl}
  rankings: {train: pairs.jsonl}
tracking: none
stages:
  - name: sft
    kind: sft
"""


def align_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The installed `align` script (not `python -m align`: its sys.path differs), running this checkout."""
    script = shutil.which("align") or str(Path(sys.executable).parent / "align")
    full = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(cwd / "home"), **(env or {})}
    return subprocess.run([script, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def refused(*args: str, cwd: Path, expected: str, env: dict | None = None, timeout: float = 60) -> str:
    """Run the `align` script and assert that it refused the request as a user should see it: exit 2, `expected`
    in its output, no traceback, no internal error. Returns the output."""
    out = align_cli(*args, cwd=cwd, env=env, timeout=timeout)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert expected in text and "Traceback" not in text and "internal error" not in text, text[-3000:]
    return text


def _stage(extra: str) -> str:
    return RECIPE + extra


def _dpo(extra: str) -> str:
    return RECIPE + "  - name: dpo\n    kind: dpo\n    init: sft\n" + extra


def _evals(hook: str, stage: str = "") -> str:
    return RECIPE + stage + f"evals:\n  - {hook}\n"


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return RECIPE + "\n".join(lines) + "\n"


def _lines(*records: str) -> str:
    return "\n".join([json.dumps(GOOD), *records]) + "\n"


# name -> (files to write, align arguments, expected exit code, text expected in the output)
CONSOLE: dict[str, tuple[dict[str, str | bytes], list[str], int, str]] = {
    # names become folders: nothing outside the run folder may be named
    "stage-named-dot": ({"r.yaml": _stage("  - {name: '.', kind: sft}\n")}, ["run", "r.yaml"], 2,
                        "stage name '.' may hold only"),
    "stage-name-traversal": ({"r.yaml": _stage("  - {name: ../victim, kind: sft}\n")}, ["run", "r.yaml"], 2,
                             "stage name '../victim'"),
    "stage-name-slash": ({"r.yaml": _stage("  - {name: a/b, kind: sft}\n")}, ["validate", "r.yaml"], 2, "'a/b'"),
    "stage-name-empty": ({"r.yaml": _stage("  - {name: '', kind: sft}\n")}, ["validate", "r.yaml"], 2,
                         "stages[1].name: stage name ''"),
    "stage-name-reserved": ({"r.yaml": _stage("  - {name: evals, kind: sft}\n")}, ["validate", "r.yaml"], 2,
                            "'evals' is reserved"),
    "stage-name-manifest": ({"r.yaml": _stage("  - {name: manifest.json, kind: sft}\n")}, ["validate", "r.yaml"], 2,
                            "'manifest.json' may hold only"),
    "stage-name-lock": ({"r.yaml": _stage("  - {name: .lock, kind: sft}\n")}, ["validate", "r.yaml"], 2,
                        "'.lock' may hold only"),
    "recipe-name-traversal": ({"r.yaml": RECIPE.replace("name: t\n", "name: ../../../x\n")}, ["run", "r.yaml"], 2,
                              "recipe name '../../../x'"),
    # YAML
    "alias-bomb": ({"r.yaml": _bomb()}, ["validate", "r.yaml"], 2, "expands to more than 100000 nodes"),
    "recursive-alias": ({"r.yaml": RECIPE + "loop: &l [*l]\n"}, ["validate", "r.yaml"], 2, "recursive alias"),
    "duplicate-yaml-key": ({"r.yaml": _stage("    learning_rate: 1.0e-4\n    learning_rate: 2.0e-4\n")},
                           ["validate", "r.yaml"], 2, "line 11: duplicate key 'learning_rate' (first at line 10)"),
    "recipe-too-large": ({"r.yaml": RECIPE + "#" * (1 << 20) + "\n"}, ["validate", "r.yaml"], 2, "a recipe is at most"),
    "yaml-nested-too-deep": ({"r.yaml": "name: t\nx: " + "[" * 50000 + "\n"}, ["validate", "r.yaml"], 2,
                             "nested too deeply"),
    "override-not-yaml": ({"r.yaml": RECIPE}, ["validate", "r.yaml", "stages.sft.learning_rate=[1"], 2,
                          "override 'stages.sft.learning_rate=[1'"),
    # numbers in range, enumerations, files that must exist
    "warmup-ratio-negative": ({"r.yaml": _stage("    warmup_ratio: -0.5\n")}, ["validate", "r.yaml"], 2,
                              "stages.sft.warmup_ratio: must be in [0, 1), got -0.5"),
    "learning-rate-nan": ({"r.yaml": _stage("    learning_rate: .nan\n")}, ["validate", "r.yaml"], 2,
                          "stages.sft.learning_rate: must be a finite number"),
    "learning-rate-inf": ({"r.yaml": _stage("    learning_rate: .inf\n")}, ["validate", "r.yaml"], 2,
                          "stages.sft.learning_rate: must be a finite number"),
    "lora-r-zero": ({"r.yaml": RECIPE.replace("{name: smollm2-135m-instruct}", "{lora: {r: 0}}")},
                    ["validate", "r.yaml"], 2, "model.lora.r: must be >= 1, got 0"),
    "lora-dropout-above-1": ({"r.yaml": RECIPE.replace("{name: smollm2-135m-instruct}", "{lora: {dropout: 1.5}}")},
                             ["validate", "r.yaml"], 2, "model.lora.dropout: must be in [0, 1)"),
    "target-modules-empty": ({"r.yaml": RECIPE.replace("{name: smollm2-135m-instruct}",
                                                       "{lora: {target_modules: []}}")},
                             ["validate", "r.yaml"], 2, "model.lora.target_modules"),
    "seed-negative": ({"r.yaml": _stage("    seed: -1\n")}, ["validate", "r.yaml"], 2, "stages.sft.seed: must be in"),
    "lr-scheduler-unknown": ({"r.yaml": _stage("    lr_scheduler: bogus\n")}, ["validate", "r.yaml"], 2,
                             "'bogus' is not one of linear, cosine"),
    "attn-implementation-unknown": ({"r.yaml": RECIPE.replace("{name: smollm2-135m-instruct}",
                                                              "{attn_implementation: bogus}")},
                                    ["validate", "r.yaml"], 2, "model.attn_implementation: 'bogus'"),
    "chat-template-missing": ({"r.yaml": RECIPE.replace("{name: smollm2-135m-instruct}",
                                                        "{chat_template: nope.jinja}")},
                              ["validate", "r.yaml"], 2, "'nope.jinja' is neither 'chatml' nor an existing"),
    "epochs-negative": ({"r.yaml": _stage("    epochs: -1\n")}, ["validate", "r.yaml"], 2,
                        "stages.sft.epochs: must be > 0"),
    "max-steps-zero": ({"r.yaml": _stage("    max_steps: 0\n")}, ["validate", "r.yaml"], 2, "0 steps would train"),
    "max-examples-zero": ({"r.yaml": RECIPE.replace("{train: chat.jsonl}", "{train: chat.jsonl, max_examples: 0}")},
                          ["validate", "r.yaml"], 2, "data.sft.max_examples: must be >= 1, got 0"),
    "max-examples-negative": ({"r.yaml": RECIPE.replace("{train: chat.jsonl}",
                                                        "{train: chat.jsonl, max_examples: -1}")},
                              ["validate", "r.yaml"], 2, "data.sft.max_examples: must be >= 1, got -1"),
    "label-smoothing-half": ({"r.yaml": _dpo("    label_smoothing: 0.5\n")}, ["validate", "r.yaml"], 2,
                             "stages.dpo.label_smoothing: must be in [0, 0.5)"),
    "eval-prompts-negative": ({"r.yaml": _dpo("    eval_prompts: -1\n")}, ["validate", "r.yaml"], 2,
                              "stages.dpo.eval_prompts: must be >= 0"),
    "temperature-negative": ({"r.yaml": _evals("{hook: kl, generation: {temperature: -1}}")}, ["validate", "r.yaml"],
                             2, "evals[0].generation.temperature: must be >= 0"),
    "top-p-above-1": ({"r.yaml": _evals("{hook: kl, generation: {top_p: 5}}")}, ["validate", "r.yaml"], 2,
                      "evals[0].generation.top_p: must be in (0, 1]"),
    "max-new-tokens-zero": ({"r.yaml": _evals("{hook: samples, generation: {max_new_tokens: 0}}")},
                            ["validate", "r.yaml"], 2, "evals[0].generation.max_new_tokens: must be >= 1"),
    # what evaluation hooks and rm parts name
    "eval-against-unknown": ({"r.yaml": _evals("{hook: win_rate, against: nope}")}, ["validate", "r.yaml"], 2,
                             "evals[0].against: 'nope' is not a stage; use 'base', 'start' or one of: sft"),
    "eval-judge-not-an-rm-stage": ({"r.yaml": _evals("{hook: win_rate, judge: sft}")}, ["validate", "r.yaml"], 2,
                                   "evals[0].judge: 'sft' is not an rm stage; rm stages: none"),
    "llm-judge-without-judge": ({"r.yaml": _evals("{hook: llm_judge}")}, ["validate", "r.yaml"], 2,
                                "evals[0].judge: llm_judge needs the judging model"),
    "llm-judge-missing-file": ({"r.yaml": _evals("{hook: llm_judge, judge: ./judge.gguf}")}, ["validate", "r.yaml"],
                               2, "evals[0].judge: judging model './judge.gguf' does not exist"),
    "rm-part-3-of-2": ({"r.yaml": _stage("  - {name: rm, kind: rm, part: 3/2}\n")}, ["validate", "r.yaml"], 2,
                       "stages.rm.part: '3/2' is not a part; write 'i/n'"),
    "stage-named-start": ({"r.yaml": _stage("  - {name: start, kind: sft}\n")}, ["validate", "r.yaml"], 2,
                          "'start' is reserved"),
    "gate-on-a-policy-row-rm-metric": ({"r.yaml": _evals("{hook: rm_accuracy}", "    gate: ['rm_accuracy > 0.5']\n")},
                                       ["validate", "r.yaml"], 2, "stages.sft.gate[0]: no metric 'rm_accuracy'"),
    "rollout-batch-size-zero": ({"r.yaml": RECIPE.replace("  rankings:", "  prompts: {train: chat.jsonl}\n"
                                                                         "  rankings:") +
                                 "  - {name: rm, kind: rm}\n  - {name: ppo, kind: ppo, rollout_batch_size: 0}\n"},
                                ["validate", "r.yaml"], 2, "stages.ppo.rollout_batch_size: must be >= 1"),
    "gate-unknown-metric": ({"r.yaml": _stage("    gate: ['rm_acuracy >= 0.5']\n")}, ["validate", "r.yaml"], 2,
                            "no metric 'rm_acuracy'"),
    "data-is-a-fifo": ({"r.yaml": RECIPE.replace("chat.jsonl}", "fifo.jsonl}")}, ["validate", "r.yaml"], 2,
                       "'fifo.jsonl' is not a regular file"),
    # the environment, checked before any work
    "align-cache-is-a-file": ({"r.yaml": RECIPE, "cachefile": "x"}, ["run", "r.yaml"], 2,
                              "ALIGN_CACHE=cachefile is not a folder"),
    # align eval arguments
    "eval-unknown-hook": ({}, ["eval", "base", "--hook", "bogus"], 2, "--hook bogus: not a built-in hook"),
    "eval-max-examples-zero": ({}, ["eval", "base", "--hook", "kl", "--max-examples", "0"], 2,
                               "--max-examples 0: must be >= 1"),
    "eval-json-missing-folder": ({}, ["eval", "base", "--hook", "kl", "--json", "nope/out.json"], 2,
                                 "the folder nope does not exist"),
    "eval-user-hook-missing": ({}, ["eval", "base", "--hook", "nomodule:fn"], 2, "cannot load hook nomodule:fn"),
    # data checks
    "margin-nan": ({"p.jsonl": _lines('{"prompt": "a", "chosen": "b", "rejected": "c", "margin": NaN}')},
                   ["data", "check", "p.jsonl"], 2, "p.jsonl line 2: NaN is not a JSON number"),
    "margin-infinity": ({"p.jsonl": _lines('{"prompt": "a", "chosen": "b", "rejected": "c", "margin": Infinity}')},
                        ["data", "check", "p.jsonl"], 2, "p.jsonl line 2: Infinity is not a JSON number"),
    "scores-nan": ({"p.jsonl": _lines('{"prompt": "a", "responses": ["b", "c"], "ranking": [0, 1], '
                                      '"scores": [NaN, 1]}')}, ["data", "check", "p.jsonl"], 2, "line 2: NaN"),
    "chosen-equals-rejected": ({"p.jsonl": _lines('{"prompt": "a", "chosen": "same", "rejected": "same"}')},
                               ["data", "check", "p.jsonl"], 2, "line 2: 'chosen' and 'rejected' are the same text"),
    "identical-responses": ({"p.jsonl": _lines('{"prompt": "a", "responses": ["x", "y", "x"], "ranking": [0, 1, 2]}')},
                            ["data", "check", "p.jsonl"], 2, "line 2: responses 0 and 2 are the same text"),
    "prompt-ends-with-assistant": ({"p.jsonl": _lines(json.dumps({"prompt": [{"role": "user", "content": "q"}, {
        "role": "assistant", "content": "a"}], "chosen": "b", "rejected": "c"}))},
                                   ["data", "check", "p.jsonl"], 2, "line 2, field 'prompt': ends with an assistant"),
    "duplicate-json-key": ({"p.jsonl": _lines('{"prompt": "a", "prompt": "b", "chosen": "c", "rejected": "d"}')},
                           ["data", "check", "p.jsonl"], 2, "line 2: field 'prompt' appears twice"),
    "json-nested-200000": ({"p.jsonl": _lines("[" * 200000 + "]" * 200000)}, ["data", "check", "p.jsonl"], 2,
                           "line 2: JSON nested too deeply"),
    "invalid-byte-keeps-counting": ({"p.jsonl": _lines('{"prompt": "caf\udce9"}').encode("utf-8", "surrogateescape")
                                     + (json.dumps(GOOD) + "\n").encode()},
                                    ["data", "check", "p.jsonl"], 2, "1 bad record (2 good)"),
    "fifo": ({}, ["data", "check", "fifo.jsonl"], 2, "fifo.jsonl is not a regular file"),
    "device": ({}, ["data", "check", "/dev/zero"], 2, "/dev/zero is not a regular file"),
    "gzip-data": ({"p.jsonl": b"\x1f\x8b\x08\x00junk"}, ["data", "check", "p.jsonl"], 2,
                  "gzip-compressed, not a data file align reads"),
    "fake-parquet": ({"p.parquet": b"PAR1 not really"}, ["data", "check", "p.parquet"], 2, "cannot read as Parquet"),
    # valid input, written as users write it: accepted
    "bom-csv-accepted": ({"p.csv": "\ufeffprompt,chosen,rejected\nhi,hello there,go away\n"},
                         ["data", "check", "p.csv"], 0, "ok. 1 records"),
    "tilde-paths-accepted": ({"r.yaml": RECIPE.replace("chat.jsonl}", "~/chat.jsonl}") + "output_dir: ~/run\n"},
                             ["validate", "r.yaml"], 0, "home/run"),
    "llm-judge-gate-accepted": ({"r.yaml": _evals("{hook: llm_judge, judge: some/judge, against: start}",
                                                  "    gate: ['llm_win_rate >= 0.5']\n")},
                                ["validate", "r.yaml"], 0, "ok"),
    "user-hook-in-current-folder": ({"r.yaml": RECIPE + "evals:\n  - {hook: 'myhooks:score'}\n",
                                     "myhooks.py": "def score(model, tok, ctx):\n    return {'x': 1.0}\n"},
                                    ["validate", "r.yaml"], 0, "ok"),
}


@pytest.mark.parametrize("name", CONSOLE)
def test_bad_input_through_the_console_script(name, tmp_path):
    files, args, code, expected = CONSOLE[name]
    (tmp_path / "home").mkdir()
    write_jsonl(tmp_path / "chat.jsonl", [chat("hi", "hello")])
    write_jsonl(tmp_path / "home" / "chat.jsonl", [chat("hi", "hello")])
    write_jsonl(tmp_path / "pairs.jsonl", [GOOD])
    os.mkfifo(tmp_path / "fifo.jsonl")
    for rel, content in files.items():
        (tmp_path / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    outside = sorted(p.name for p in tmp_path.parent.iterdir())
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "__pycache__" not in p.parts)
    out = align_cli(*args, cwd=tmp_path, env={"ALIGN_CACHE": "cachefile"} if "cachefile" in files else None)
    text = out.stdout + out.stderr
    assert out.returncode == code, text
    assert expected in text and "Traceback" not in text, text
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "__pycache__" not in p.parts)
    assert after == before and sorted(p.name for p in tmp_path.parent.iterdir()) == outside  # nothing written
