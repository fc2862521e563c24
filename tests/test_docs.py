"""The generated recipe reference: docs/reference.md must match align/schema.py (regenerate when this fails)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from align import schema
from align.docs import render_reference

ROOT = Path(__file__).resolve().parents[1]


def test_reference_is_up_to_date():
    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(), (
        "docs/reference.md is stale: regenerate it with `python -m align.docs > docs/reference.md`")


def test_reference_lists_every_key_of_every_config_class():
    text = render_reference()
    classes = [c for c in vars(schema).values()  # every config class the schema defines
               if dataclasses.is_dataclass(c) and c.__module__ == schema.__name__]
    for cls in classes:
        for f in dataclasses.fields(cls):
            if not f.metadata.get("internal"):
                assert f"| `{f.name}` |" in text, f"{cls.__name__}.{f.name} missing from the reference"
                assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    for kind, cls in schema.STAGE_KINDS.items():
        if cls is not None:
            assert f"## Stage kind: {kind}" in text


def test_guides_link_to_files_that_exist():
    import re

    for guide in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", guide.read_text(encoding="utf-8")):
            if target.startswith("http") or target.endswith("scaling.md"):
                continue  # scaling.md is written separately
            assert (guide.parent / target).exists(), f"{guide.name} links to missing {target}"


def test_user_hook_example_in_concepts_runs(tiny_model_dir):
    """The example hook in docs/concepts.md, called as align calls a user hook: (model, tok, ctx) -> dict."""
    import re
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = (ROOT / "docs" / "concepts.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n# myhooks.py\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ctx = SimpleNamespace(row=SimpleNamespace(head="causal_lm", name="sft"), args={"prompts": ["hi", "bake bread"]})
    out = namespace["mean_answer_length"](model, tok, ctx)
    assert set(out) == {"answer_tokens"} and 0 < out["answer_tokens"] <= 64
    assert namespace["mean_answer_length"](model, tok, SimpleNamespace(row=SimpleNamespace(head="reward"))) == {}
