"""Reading YAML safely: `yaml.safe_load` semantics, minus what it silently accepts.

A key given twice is an error (safe_load keeps the last), so is a key YAML reads as no text (`null:`, `on:`
and `yes:` are a null and booleans, `1:` a number: no key align knows), aliases may not expand past `MAX_YAML_NODES`
nodes (ten lines of aliases of aliases expand to billions: walking them took 3 GB and 45 s), and nesting
deeper than Python's stack is an error rather than a RecursionError. `line_map` gives the line of every
dotted key path for error messages.
"""

from __future__ import annotations

from typing import Any

import yaml

from align.errors import AlignError

_TEXT, _MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"
_KINDS = {"null": "null (nothing)", "bool": "a boolean", "int": "a number", "float": "a number", "timestamp": "a date"}
MAX_YAML_NODES = 100_000  # after alias expansion: a real recipe has hundreds of nodes, a bomb billions


def load_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """`yaml.safe_load` that refuses what it would silently accept: a key given twice (safe_load keeps the
    last), aliases expanding past MAX_YAML_NODES nodes (a few lines can expand to billions) or to themselves,
    and nesting deeper than Python's stack. Returns the data and the node tree (for line numbers)."""
    try:  # the loader itself refuses control characters (NUL, escape codes) as it is made
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise AlignError(f"{source} line {line}: character {e.character:#06x} is a control character, which "
                         "YAML does not allow", hint="remove it (a binary file, or text pasted with it?)") from None
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_nodes(root, source)
        return (loader.construct_document(root) if root is not None else None), root
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise AlignError(f"{source}{where}: YAML syntax error: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise AlignError(f"{source}: YAML nested too deeply to read") from None
    except ValueError as e:  # an integer of more digits than Python converts (4300)
        raise AlignError(f"{source}: a number too long to read ({str(e).split(';')[0]})",
                         hint="write a number of a sensible size") from None
    finally:
        loader.dispose()


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Duplicate keys (with both lines), and the node count after alias expansion, each node counted once
    per place it appears (memoized per node, so a bomb is measured without being expanded)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            if sizes[id(node)] < 0:
                raise AlignError(f"{source} line {node.start_mark.line + 1}: an alias refers to a node that "
                                 "contains it (a recursive alias)")
            return sizes[id(node)]
        sizes[id(node)] = -1
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag not in (_TEXT, _MERGE):  # `null:`, `on:`, `1:`
                    kind = k.tag.rpartition(":")[2]
                    raise AlignError(f"{source} line {k.start_mark.line + 1}: the key '{k.value}' is read by YAML "
                                     f"as {_KINDS.get(kind, kind)}, not as a name",
                                     hint=f"quote it ('{k.value}': ...) if it is meant as a name")
                if isinstance(k, yaml.ScalarNode) and k.tag == _TEXT:
                    if k.value in seen:
                        raise AlignError(f"{source} line {k.start_mark.line + 1}: duplicate key '{k.value}' "
                                         f"(first at line {seen[k.value]}); YAML would silently keep the last",
                                         hint="remove one of them")
                    seen[k.value] = k.start_mark.line + 1
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v) for v in node.value)
        if total > MAX_YAML_NODES:
            raise AlignError(f"{source} line {node.start_mark.line + 1}: the YAML expands to more than "
                             f"{MAX_YAML_NODES} nodes (aliases repeating aliases)",
                             hint="write the repeated settings out, or use fewer levels of aliases")
        sizes[id(node)] = total
        return total

    size(root)


def line_map(node: yaml.Node | None, path: str = "", out: dict | None = None, seen: set | None = None) \
        -> dict[str, int]:
    """Dotted key path -> 1-based line, from the composed YAML node tree (safe_load drops positions). An
    aliased node is walked once, at its first path: later paths through the alias fall back to the line of
    the alias's parent key."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:
        return out
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = f"{path}.{k.value}" if path else str(k.value)
            out[sub] = k.start_mark.line + 1
            line_map(v, sub, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            pairs = v.value if isinstance(v, yaml.MappingNode) else []
            # named as `validator.item_key` names it: by a non-empty text name (`name: 1` is a number)
            name = next((c for k, c in pairs if k.value == "name" and isinstance(c, yaml.ScalarNode)
                         and c.tag == _TEXT and c.value), None)
            sub = f"{path}.{name.value}" if name else f"{path}[{i}]"
            out[sub] = v.start_mark.line + 1
            line_map(v, sub, out, seen)
    return out


