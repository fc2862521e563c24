"""Property-based tests of bad input (issue 23): recipes and data files generated from the schema, with
values at and past every boundary, through the same code as `align validate` / `align data check` (many
cases in-process) and the real console script (fewer: each start costs ~0.5-3 s).

Properties: align accepts the input or refuses it with an AlignError (exit 2), never another exception
or a traceback; an accepted recipe holds only in-range values and folder-safe names; a refused value is
named by its dotted key path; `align data check` accounts for every line; nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import typing
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from align import schema
from align.errors import AlignError
from align.rankings import scan_file
from align.recipe import load_recipe, parse_part
from align.validator import out_of_range
from tests.test_bad_inputs import GOOD, align_cli

KINDS = ["pretrain", "sft", "rm", "dpo", "ppo", "rloo", "grpo"]
BASE = {
    "name": "p", "model": {"name": "smollm2-135m-instruct"}, "tracking": "none", "evals": [{"hook": "kl"}],
    "data": {"sft": {"train": "chat.jsonl"}, "rankings": {"train": "pairs.jsonl"},
             "prompts": {"train": "prompts.jsonl"}, "text": {"train": "text.jsonl"}},
    "stages": [{"name": k, "kind": k} for k in KINDS],
}
# where each config class sits in BASE (a stage class: the stages of kinds that have the field)
PLACES = {"Recipe": [()], "ModelSpec": [("model",)], "LoraSpec": [("model", "lora")], "DataSpec": [("data", "sft")],
          "GenerationSpec": [("stages", "ppo", "generation"), ("evals", 0, "generation")],
          "MixSpec": [("stages", "sft", "mix")], "EvalSpec": [("evals", 0)], "LaunchSpec": [("launch",)],
          "TrackingSpec": [("tracking",)]}


def _numeric_fields() -> list[tuple[tuple, str, type, tuple | None]]:
    """(place, field, int or float, range) for every numeric field of every config class."""
    out = []
    for cls in [c for c in vars(schema).values() if dataclasses.is_dataclass(c)]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = next((t for t in (int, float) if hints[f.name] is t or t in typing.get_args(hints[f.name])), None)
            if tp is None:
                continue
            if issubclass(cls, schema.StageBase):
                places = [("stages", k) for k, c in schema.STAGE_KINDS.items() if issubclass(c, cls)]
            else:
                places = PLACES.get(cls.__name__, [])
            out += [(place, f.name, tp, f.metadata.get("range")) for place in places]
    return out


NUMERIC = _numeric_fields()


def _edges(rng: tuple | None) -> list:
    """Values at and just past the range's ends, and the non-finite ones."""
    values: list = [0, -1, 1, 0.5, float("nan"), float("inf"), float("-inf"), 10 ** 30]
    if rng:
        _, lo, hi, _, _ = rng
        for end in (lo, hi):
            if math.isfinite(end):
                values += [end, end - 1, end + 1, end - 1e-9, end + 1e-9]
    return values


SECTIONS = [("model",), ("data",), ("model", "lora"), ("data", "sft"), ("tracking",), ("launch",), ("evals",),
            ("stages",), ("stages", "ppo", "generation"), ("stages", "sft", "mix"), ("stages", "rm", "data")]
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=8), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
names = st.one_of(st.sampled_from(["", ".", "..", "../victim", "a/b", "evals", "manifest.json", ".lock", "base",
                                   "start", "wandb", "-x", "ok_name-2", "x" * 300]), st.text(max_size=12))
# the fields that name something else: what a win rate is against and who judges it, an rm stage's part
REFS = {("evals", 0, "hook"): st.sampled_from(["kl", "win_rate", "llm_judge", "samples", "perplexty"]),
        ("evals", 0, "against"): st.sampled_from(["base", "start", "sft", "rm", "nope", "", "../x"]),
        ("evals", 0, "judge"): st.sampled_from(["rm", "sft", "nope", "some/judge", "./missing.gguf", "~/nope", ""]),
        ("stages", "rm", "part"): st.sampled_from(["1/2", "2/2", " 1 / 3 ", "0/2", "3/2", "1/0", "a/b", "1", ""])}


@st.composite
def mutations(draw) -> list[tuple[tuple, typing.Any]]:
    """1-3 changes to BASE: (key path, new value)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        place, key, tp, rng = draw(st.sampled_from(NUMERIC))
        value = draw(st.one_of(st.sampled_from(_edges(rng)), st.floats(allow_nan=True), st.integers(), junk))
        out.append(((*place, key), value))
    if draw(st.booleans()):
        out.append((("stages", draw(st.sampled_from(KINDS)), "name"), draw(names)))
    for path in draw(st.lists(st.sampled_from(list(REFS)), max_size=2, unique=True)):
        out.append((path, draw(st.one_of(REFS[path], junk))))
    if draw(st.integers(0, 3)) == 0:  # a whole section replaced by something of another shape
        out.append((draw(st.sampled_from(SECTIONS)), draw(junk)))
    if draw(st.integers(0, 4)) == 0:
        out.append((("name",), draw(names)))
    return out


def _set(raw: dict, path: tuple, value) -> None:
    node = raw
    for part in path[:-1]:
        if isinstance(node, list):
            node = node[part] if isinstance(part, int) else next(s for s in node if s.get("kind") == part)
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
    if isinstance(node, dict):
        node[path[-1]] = value


def _dotted(path: tuple, raw: dict) -> str:
    """The key path errors name: stages by their (current) name."""
    parts, node = [], raw
    for part in path:
        if isinstance(node, list):
            i = part if isinstance(part, int) else next(i for i, s in enumerate(node) if s.get("kind") == part)
            node, name = node[i], node[i].get("name")
            parts[-1] += f".{name}" if isinstance(name, str) and name and not isinstance(part, int) else f"[{i}]"
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _write_folder(folder: Path) -> None:
    (folder / "chat.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "yo"}]}) + "\n")
    (folder / "pairs.jsonl").write_text(json.dumps(GOOD) + "\n")
    (folder / "prompts.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    (folder / "text.jsonl").write_text(json.dumps({"text": "some text"}) + "\n")


def _recipe(folder: Path, changes: list) -> tuple[Path, dict]:
    raw = json.loads(json.dumps(BASE).replace('"chat.jsonl"', json.dumps(str(folder / "chat.jsonl"))))
    for section in raw["data"].values():  # absolute: the in-process tests run in the repository's folder
        section["train"] = str(folder / section["train"])
    raw["stages"][1]["mix"] = {"data": str(folder / "chat.jsonl")}
    for path, value in changes:
        _set(raw, path, value)
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, raw


def _invalid(value, tp: type, rng: tuple | None) -> bool:
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string: align reads it as the number
        try:
            value = float(value)
        except ValueError:
            return True
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and isinstance(value, float)):
        return value is not None  # a wrong type (None: unset, valid for optional fields only; not judged)
    return (rng is not None and out_of_range(value, rng) is not None) or not math.isfinite(value)


def check_recipe(folder: Path, changes: list) -> None:
    path, raw = _recipe(folder, changes)
    try:
        recipe = load_recipe(path)
    except AlignError as e:
        text = str(e)
        for key_path, value in changes:
            field = next(((tp, rng) for place, k, tp, rng in NUMERIC if (*place, k) == key_path), None)
            replaced = any(p != key_path and p == key_path[:len(p)] for p, _ in changes)  # its section is junk
            if field and _invalid(value, *field) and sum(p == key_path for p, _ in changes) == 1 and not replaced:
                assert f"{_dotted(key_path, raw)}:" in text, (key_path, value, text)
        return
    for stage in recipe.stages:  # accepted: everything in range, names folder-safe
        assert schema.STAGE_NAME.fullmatch(stage.name) and stage.name not in schema.RESERVED_NAMES
        for f in dataclasses.fields(stage):
            value, rng = getattr(stage, f.name), f.metadata.get("range")
            if rng and isinstance(value, (int, float)):
                assert out_of_range(value, rng) is None, (stage.name, f.name, value)
    assert schema.RECIPE_NAME.fullmatch(recipe.name)
    stages, rms = {s.name for s in recipe.stages}, {s.name for s in recipe.stages if s.kind == "rm"}
    for s in recipe.stages:
        assert s.kind != "rm" or s.part is None or parse_part(s.part)
    for e in recipe.evals:  # accepted references point at something that exists
        assert e.against in {"base", "start"} | stages and (e.hook != "llm_judge" or e.judge)
        assert e.judge is None or e.hook == "llm_judge" or e.judge in rms


# no example database: a test run writes nothing into the checkout; derandomized: CI sees the same examples
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(max_examples=300, **SETTINGS)
@given(mutations())
@example([(("stages", "sft", "name"), "..")])  # always: a traversal name must never be accepted
@example([(("stages", "rm", "name"), "../victim"), (("name",), "../../x")])
def test_generated_recipes_are_accepted_in_range_or_refused_by_key(changes):
    with tempfile.TemporaryDirectory() as tmp:
        _write_folder(Path(tmp))
        check_recipe(Path(tmp), changes)


@settings(max_examples=20, **SETTINGS)
@given(mutations())
def test_generated_recipes_through_the_console_script(changes):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "home").mkdir()
        _write_folder(folder)
        _recipe(folder, changes)
        before = sorted(folder.rglob("*"))
        out = align_cli("validate", "r.yaml", cwd=folder)
        assert out.returncode in (0, 2) and "Traceback" not in out.stderr, out.stderr
        assert sorted(folder.rglob("*")) == before


# ---- data files ------------------------------------------------------------------------------------

_NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0", "-1", "0.5", '"x"', "null", "true"])
_TEXTS = st.sampled_from(["hello there", "go away", "", " ", "same"])


@st.composite
def data_lines(draw) -> bytes:
    """A JSONL rankings file: good records, records at the edges (margins, scores, equal responses, prompts
    ending with the assistant), duplicate keys, deep nesting, broken JSON and bytes that are not UTF-8."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 7))
        if kind == 0:
            line = json.dumps(GOOD)
        elif kind == 1:
            line = (f'{{"prompt": "hi", "chosen": {json.dumps(draw(_TEXTS))}, "rejected": {json.dumps(draw(_TEXTS))},'
                    f' "margin": {draw(_NUMBERS)}}}')
        elif kind == 2:
            line = (f'{{"prompt": "p", "responses": ["a", {json.dumps(draw(_TEXTS))}], "ranking": [0, 1], '
                    f'"scores": [{draw(_NUMBERS)}, 1]}}')
        elif kind == 3:
            line = '{"prompt": "a", "prompt": "b", "chosen": "c", "rejected": "d"}'
        elif kind == 4:
            depth = draw(st.sampled_from([10, 5000, 200000]))
            line = '{"prompt": ' + "[" * depth + "]" * depth + "}"
        elif kind == 5:
            line = json.dumps({"prompt": [{"role": "user", "content": "q"}, {"role": draw(st.sampled_from(
                ["assistant", "user"])), "content": "a"}], "chosen": "b", "rejected": "c"})
        elif kind == 6:
            lines.append(draw(st.binary(max_size=20)).replace(b"\n", b""))
            continue
        else:
            line = draw(st.text(max_size=20)).replace("\n", "").replace("\r", "")
        lines.append(line.encode("utf-8", "surrogatepass"))
    return b"\n".join(lines) + b"\n"


def _counted_lines(raw: bytes) -> int:
    n = 0
    for line in raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"):
        try:
            n += bool(line.decode("utf-8").strip())
        except UnicodeDecodeError:
            n += 1
    return n


@settings(max_examples=300, **SETTINGS)
@given(data_lines())
def test_generated_data_every_line_is_good_or_reported(raw):
    check_data(raw)


def check_data(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_bytes(raw)
        good, bad = scan_file(path)
        lines = _counted_lines(raw)
        binary = not good and len(bad) == 1 and ("not a data file" in bad[0] or "Parquet" in bad[0]
                                                       or "UTF-16 text" in bad[0])
        assert len(good) + len(bad) == (lines or 1) or binary, (raw[:200], bad)  # binary: one message per file
        for r in good:
            assert r.margin is None or math.isfinite(r.margin)
            assert all(math.isfinite(s) for s in r.scores or [])
            assert len({x.strip() for x in r.responses}) == len(r.responses)
            assert r.prompt[-1]["role"] != "assistant"


@settings(max_examples=15, **SETTINGS)
@given(data_lines())
def test_generated_data_through_the_console_script(raw):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "home").mkdir()
        (folder / "d.jsonl").write_bytes(raw)
        out = align_cli("data", "check", "d.jsonl", cwd=folder)
        assert out.returncode in (0, 2) and "Traceback" not in out.stderr, out.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["d.jsonl", "home"]
