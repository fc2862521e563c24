"""Property-based tests that RUN generated recipes (issue 23, "how to make it stay fixed"): recipes and chat data
files generated from the schema with values at and past every boundary, run by the real `align` console script
on a tiny model, against a run folder that one good run has already filled.

Properties: exit 0 or 2, never a traceback; nothing outside the run folder is written or deleted (a sandbox
around it: a sibling run folder, the recipe's own folder with its data, a decoy file); every artifact finished
before is byte-identical afterwards unless the run retrained it from changed inputs, and then it is finished;
a recipe that validates (with good data) runs to the end, every stage finished, or is refused for what only
the tokenized data shows, naming the data file: what validation lets through, the run does (a name that
slipped past validation fails here, though the run folder's own guard refuses it).
Examples are few (each is a process start, and a valid one trains) and derandomized, so CI sees the same cases
every time; fixed examples cover the traversal names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from align.errors import AlignError
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.runs import finished
from tests.conftest import chat
from tests.test_bad_inputs import align_cli
from tests.test_properties import NUMERIC, SETTINGS, _edges, _invalid, _set, junk, names
from tests.test_run_folder_safety import snapshot

STAGE = {"kind": "sft", "max_steps": 1, "batch_size": 2, "max_length": 32, "logging_steps": 1, "eval_before": False}
GOOD_CHAT = [chat("what is two plus two", "four is the answer"), chat("how do I bake bread", "mix flour and water")]
# the numeric fields of the sections this recipe has (not `launch`: a valid num_processes starts torchrun)
FIELDS = [(place, key, tp, rng) for place, key, tp, rng in NUMERIC
          if place in {(), ("model", "lora"), ("data", "sft"), ("stages", "sft")}]


def base(folder: Path, model: Path) -> dict:
    """sft, then sft2 from it: one step each, the data in the recipe's folder, the run folder beside a sibling."""
    return {"name": "p", "model": {"name": str(model), "lora": {"r": 4, "alpha": 8}},
            "data": {"sft": {"train": str(folder / "recipe" / "chat.jsonl")}}, "tracking": "none",
            "output_dir": str(folder / "runs" / "run"),
            "stages": [{"name": "sft", **STAGE}, {"name": "sft2", "init": "sft", **STAGE}]}


def _values(tp: type, rng: tuple | None, valid: bool):
    """At and past the field's boundaries (3 times in 4), else small numbers or junk; `valid`: only the edges the
    schema accepts, for a run that trains. No large valid value (a LoRA rank or a step count of 10**30 is valid,
    and would only test the machine's memory and patience)."""
    edges = [v for v in _edges(rng) if v != 10 ** 30]
    if valid:
        return st.sampled_from([v for v in edges if not _invalid(v, tp, rng)])
    return st.integers(0, 3).flatmap(lambda k: st.sampled_from(edges) if k else st.one_of(
        st.integers(-3, 3), st.floats(-2, 2), junk))


@st.composite
def run_mutations(draw) -> list[tuple[tuple, object]]:
    """1-2 changes of numbers to the base recipe (key path, value), in either stage; half the time only valid
    values (the run trains), else also: a stage renamed (the first: and sft2's init with it), an init, a
    section replaced by junk, the recipe renamed."""
    out, valid = [], draw(st.booleans())
    for _ in range(draw(st.integers(1, 2))):
        place, key, tp, rng = draw(st.sampled_from(FIELDS))
        if place == ("stages", "sft"):
            place = ("stages", draw(st.sampled_from([0, 1])))
        out.append(((*place, key), draw(_values(tp, rng, valid))))
    if valid:
        return out
    if draw(st.integers(0, 3)) == 0:
        stage, name = draw(st.sampled_from([0, 1])), draw(names)
        out += [(("stages", stage, "name"), name)] + ([(("stages", 1, "init"), name)] if stage == 0 else [])
    if draw(st.integers(0, 4)) == 0:
        out.append((("stages", 1, "init"), draw(st.sampled_from(["base", "sft", "sft2", "..", "nope", ""]))))
    if draw(st.integers(0, 5)) == 0:
        out.append((draw(st.sampled_from([("model", "lora"), ("data", "sft"), ("data",), ("tracking",)])), draw(junk)))
    if draw(st.integers(0, 5)) == 0:
        out.append((("name",), draw(names)))
    return out


@st.composite
def chat_files(draw) -> bytes | None:
    """None (the good data), or a chat JSONL file with records at the edges: no messages, no assistant turn,
    unknown roles, content that is no string, duplicate keys, deep nesting, broken JSON, bytes not UTF-8."""
    if draw(st.integers(0, 2)):  # 2 in 3: the good data
        return None
    bad = ['{"messages": []}', json.dumps({"messages": [{"role": "user", "content": "q"}]}),
           json.dumps({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}),
           json.dumps({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": None}]}),
           '{"messages": 1, "messages": []}', '{"messages": ' + "[" * 100000 + "]" * 100000 + "}", '{"messa',
           json.dumps({"text": "no messages"}), "[]", ""]
    lines = [json.dumps(r) for r in GOOD_CHAT] * draw(st.integers(0, 2))
    lines += draw(st.lists(st.sampled_from(bad), min_size=1, max_size=3))
    raw = "\n".join(lines).encode() + b"\n"
    return raw + draw(st.sampled_from([b"", b"\xff\xfe\n", b"\xef\xbb\xbf"]))


def fill(root: Path, model: Path) -> Path:
    """The run folder of one good run of the base recipe under `root` (copied into each example's sandbox)."""
    (root / "recipe").mkdir()
    (root / "recipe" / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD_CHAT * 4))
    (root / "recipe" / "r.yaml").write_text(yaml.safe_dump(base(root, model), sort_keys=False))
    run_pipeline(load_recipe(root / "recipe" / "r.yaml"))
    return root / "runs" / "run"


@pytest.fixture(scope="module")
def filled(tmp_path_factory, tiny_model_dir) -> tuple[Path, Path]:
    return fill(tmp_path_factory.mktemp("filled"), tiny_model_dir), tiny_model_dir


def _sandbox(folder: Path, run: Path, model: Path, changes: list, data: bytes | None) -> Path:
    shutil.copytree(run, folder / "runs" / "run")
    (folder / "runs" / "sibling").mkdir()
    (folder / "runs" / "sibling" / "keep.txt").write_text("another run folder")
    (folder / "decoy.txt").write_text("a file beside the run folders")
    (folder / "recipe").mkdir()
    chat_file = folder / "recipe" / "chat.jsonl"
    chat_file.write_bytes(data if data is not None else b"".join(json.dumps(r).encode() + b"\n" for r in GOOD_CHAT * 4))
    raw = base(folder, model)
    for path, value in changes:
        _set(raw, path, value)
    (folder / "recipe" / "r.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "recipe" / "r.yaml"


def _validates(recipe: Path) -> bool:
    try:
        load_recipe(recipe)
    except AlignError:
        return False
    return True


def check_run(folder: Path, run: Path, model: Path, changes: list, data: bytes | None) -> int:
    """The properties for one generated recipe and data file; returns `align run`'s exit code."""
    recipe = _sandbox(folder / "sandbox", run, model, changes, data)
    sandbox, run_dir = folder / "sandbox", folder / "sandbox" / "runs" / "run"
    outside = {k: v for k, v in snapshot(sandbox).items() if not (k + "/").startswith("runs/run/")}
    artifacts = {p.name: (snapshot(p), finished(p)) for p in run_dir.iterdir() if finished(p)}
    accepted = _validates(recipe)
    (folder / "home").mkdir()
    out = align_cli("run", recipe.name, cwd=recipe.parent, env={"HOME": str(folder / "home")}, timeout=300)
    assert out.returncode in (0, 2) and "Traceback" not in out.stderr, (changes, out.stderr[-3000:])
    after = {k: v for k, v in snapshot(sandbox).items() if not (k + "/").startswith("runs/run/")}
    assert after == outside, (changes, sorted(set(after) ^ set(outside)))
    for name, (files, record) in artifacts.items():
        now = finished(run_dir / name)
        retrained = out.returncode == 0 and now and now.get("artifact_id") != record.get("artifact_id")
        assert retrained or snapshot(run_dir / name) == files, (changes, name)
        assert not retrained or now["fingerprint"] != record["fingerprint"] or \
            now["made_from"] != record["made_from"], (changes, name)  # retrained only for a reason
    if accepted and data is None:  # validation said yes, and the data is good: the run does it, or refuses
        # only what depends on the data as tokenized (say max_length: 1), naming the data file
        assert out.returncode == 0 or f"error: {recipe.parent / 'chat.jsonl'}" in out.stderr, \
            (changes, out.stderr[-3000:])
    if out.returncode == 0:  # accepted: every stage of the recipe finished
        stages = yaml.safe_load(recipe.read_text())["stages"]
        assert all(finished(run_dir / s["name"]) for s in stages), (changes, out.stderr[-2000:])
    return out.returncode


@settings(max_examples=6, **SETTINGS)
@given(run_mutations(), chat_files())
@example([(("stages", 1, "name"), "..")], None)
@example([(("stages", 0, "name"), "../sibling"), (("stages", 1, "init"), "../sibling")], None)
@example([(("stages", 0, "learning_rate"), 1e-3)], None)  # valid: sft and sft2 retrain, nothing else moves
def test_generated_recipes_run_without_touching_anything_else(filled, changes, data):
    run, model = filled
    with tempfile.TemporaryDirectory() as tmp:
        check_run(Path(tmp), run, model, changes, data)
