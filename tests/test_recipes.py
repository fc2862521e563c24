"""Every shipped recipe validates (offline: hub dataset ids are not fetched) and starts with its comment block.

The CPU recipes also run end to end on the embedded SmolLM2 in the slow tests (`python -m pytest -m slow
tests/test_recipes.py`; minutes each).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from align.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "accelerate" not in p.relative_to(ROOT).parts)
_FILES = {".csv", ".jsonl", ".json"}
CPU_RECIPES = ["quickstart.yaml", "quickstart-ppo.yaml", "safety/compliance.yaml", "continued-pretraining.yaml"]


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT / "recipes"))


def test_there_are_recipes():
    assert {_id(p) for p in RECIPES} >= {"quickstart.yaml", "safety/compliance.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=_id)
def test_recipe_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # data paths in recipes are relative to the repository root
    recipe = load_recipe(path.relative_to(ROOT))
    assert recipe.stages, f"{_id(path)} has no stages"


@pytest.mark.parametrize("path", RECIPES, ids=_id)
def test_recipe_begins_with_what_and_how(path):
    """The comment block: what the recipe does, the command to run it, the command to override one knob."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    rel = str(path.relative_to(ROOT))
    assert len(header) >= 3, f"{rel}: no comment block at the top"
    assert f"align run {rel}" in text, f"{rel}: the header does not say how to run it"
    assert re.search(rf"align run {re.escape(rel)} [\w.\[\]-]+=\S+", text), \
        f"{rel}: the header does not show how to override one knob (KEY=VALUE)"


def test_override_in_each_header_is_valid(monkeypatch):
    """The override each header shows is accepted by the recipe (a renamed key would make it stale)."""
    monkeypatch.chdir(ROOT)
    for path in RECIPES:
        rel = str(path.relative_to(ROOT))
        for m in re.finditer(rf"align run {re.escape(rel)} ((?:[\w.\[\]-]+=\S+ ?)+)", path.read_text()):
            # a value naming a file of your own (evals.0.data=my_prompts.csv) is an example, not a shipped file
            overrides = [o for o in m.group(1).split() if Path(o.partition("=")[2]).suffix not in _FILES]
            load_recipe(rel, overrides)


# ---- the CPU recipes, end to end on the real model (slow) ------------------------------------------

def _run(recipe: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "align", "run", f"recipes/{recipe}", f"output_dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})


@pytest.mark.slow
@pytest.mark.parametrize("recipe", CPU_RECIPES)
def test_cpu_recipe_runs_end_to_end(recipe, tmp_path):
    done = _run(recipe, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = load_recipe(ROOT / "recipes" / recipe)
    for stage in loaded.stages:
        info = json.loads((tmp_path / stage.name / "artifact.json").read_text())
        assert info["status"] == "finished"
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()
    if loaded.evals:
        rows = {r["row"]: r for r in json.loads((tmp_path / "evals.json").read_text())["rows"]}
        assert "baseline" in rows and all(s.name in rows for s in loaded.stages)
        assert all(g["passed"] for r in rows.values() for g in r["gates"])
