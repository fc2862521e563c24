"""The catalogue of bad inputs: each one is a clear error (file, line or key; what is wrong; the fix),
exit code 2 without a traceback, and every earlier artifact left as it was."""

from __future__ import annotations

import errno
import json
import shutil
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
