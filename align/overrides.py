"""Command-line overrides of a recipe: `stages.sft.learning_rate=1e-4`, applied to the recipe's plain data before
it is validated (`recipe.load_recipe`), each value read as YAML. Stages are addressed by name, list items also by
index (`evals.0.max_examples=30`); a path that cannot name a key is an error naming the override.
"""

from __future__ import annotations

from typing import Any

from align.errors import AlignError
from align.validator import describe
from align.yamlsafe import load_yaml


def apply_overrides(raw: dict, overrides: list[str]) -> set[str]:
    """Apply `a.b.c=value` overrides in place (value parsed as YAML); return the paths they set."""
    done = set()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AlignError(f"override '{item}' is not of the form key.path=value",
                             hint="e.g. stages.sft.learning_rate=1e-4 (stages are named by their name)")
        node: Any = raw
        parts = key.split(".")
        if not all(part.strip() for part in parts):  # '.name', 'a..b', 'a.': a key no recipe holds
            raise AlignError(f"override '{item}': an empty key in the path '{key}'",
                             hint="e.g. stages.sft.learning_rate=1e-4 (stages are named by their name)")
        for i, part in enumerate(parts[:-1]):
            nxt = _child(node, part)
            if nxt is None:
                if isinstance(node, list):
                    raise AlignError(f"override '{item}': no stage named '{part}' at {'.'.join(parts[:i + 1])}")
                if not isinstance(node, dict):
                    raise AlignError(f"override '{item}': {'.'.join(parts[:i])} is {describe(node)}, not a mapping "
                                     f"that could hold '{part}'")
                nxt = node[part] = {}
            node = nxt
        if not isinstance(node, dict):
            raise AlignError(f"override '{item}': {'.'.join(parts[:-1])} is not a mapping")
        node[parts[-1]] = load_yaml(value, f"override '{item}'")[0] if value else ""
        done.add(key)
    return done


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and str(item.get("name")) == part:
                return item
        if part.isascii() and part.isdigit() and len(part) < 19 and int(part) < len(node):  # not '²', nor 5000 digits
            return node[int(part)]
    return None
