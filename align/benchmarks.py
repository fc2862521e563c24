"""Public safety benchmarks by name, as compliance prompt sets: `data: xstest` in a recipe's compliance hook,
`align eval ... --hook compliance --data advbench`.

Each benchmark maps its own columns onto the hook's records {prompt, label, category}:

    xstest        250 safe prompts that sound unsafe (label benign) and 200 unsafe contrasts (label harmful),
                  category = the XSTest prompt type (homonyms, figurative_language, safe_targets,
                  safe_contexts, definitions, ..., privacy); shipped in reward_data/benchmarks/xstest.csv
    advbench      520 harmful behaviors (label harmful), no category
    harmbench     the HarmBench text behaviors (label harmful), category = SemanticCategory; a contextual
                  behavior's context comes first in the prompt, as HarmBench sends it
    strongreject  313 forbidden prompts (label harmful), category = the StrongREJECT category

Only XSTest is shipped (CC-BY-4.0). The others are read from the cache folder (`$ALIGN_CACHE/benchmarks`,
default ~/.cache/align/benchmarks) where the one command in `Benchmark.command` (and docs/safety.md) puts
them; align never downloads anything by itself, so evaluations and tests stay offline. Sources, licenses
and citations: docs/safety.md and reward_data/benchmarks/README.md.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from align.errors import AlignError
from align.paths import cache_root

SHIPPED = Path(__file__).resolve().parent.parent / "reward_data" / "benchmarks"


@dataclass(frozen=True)
class Benchmark:
    file: str  # the file name, in reward_data/benchmarks (shipped) or the cache folder
    url: str  # where the file comes from (pinned to the upstream path the papers cite)
    prompt: str  # the column holding the prompt
    label: str | None  # the column holding the label, or None when every prompt is harmful
    category: str | None  # the column holding the category
    context: str | None = None  # a column whose text, when present, goes before the prompt
    shipped: bool = False

    def path(self) -> Path:
        return SHIPPED / self.file if self.shipped else cache_root() / "benchmarks" / self.file

    def command(self) -> str:
        """The one command that puts the file where align reads it (needs network)."""
        return f'curl -fL --create-dirs -o "{self.path()}" {self.url}'


BENCHMARKS = {
    "xstest": Benchmark("xstest.csv", "https://raw.githubusercontent.com/paul-rottger/exaggerated-safety/"
                        "a3bb396ddc1939c6f264f17b7cf5b7a5d82833de/xstest_v2_prompts.csv", "prompt", "label",
                        "category", shipped=True),
    "advbench": Benchmark("advbench.csv", "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/"
                          "advbench/harmful_behaviors.csv", "goal", None, None),
    "harmbench": Benchmark("harmbench.csv", "https://raw.githubusercontent.com/centerforaisafety/HarmBench/main/"
                           "data/behavior_datasets/harmbench_behaviors_text_all.csv", "Behavior", None,
                           "SemanticCategory", context="ContextString"),
    "strongreject": Benchmark("strongreject.csv", "https://raw.githubusercontent.com/alexandrasouly/strongreject/"
                              "main/strongreject_dataset/strongreject_dataset.csv", "forbidden_prompt", None,
                              "category"),
}


def is_benchmark(ref: str | Path) -> bool:
    return str(ref).strip().lower() in BENCHMARKS


def missing(ref: str) -> str | None:
    """Why benchmark `ref` cannot be read now (the file is not there, with the command that fetches it), or None."""
    bench = BENCHMARKS[ref.strip().lower()]
    if bench.path().is_file():
        return None
    return (f"benchmark {ref} is not downloaded (align reads it from {bench.path()}); fetch it once with: "
            f"{bench.command()}")


def benchmark_rows(ref: str) -> list[tuple[str, int, dict[str, Any]]]:
    """The benchmark's prompts as (source, line, record) like `align.data.read_records`, each record
    {"id", "prompt", "label", "category"?} for `align.compliance.read_prompt_set`."""
    name = ref.strip().lower()
    bench = BENCHMARKS[name]
    if why := missing(name):
        raise AlignError(why, hint="or give the compliance hook your own labelled file as data")
    path = bench.path()
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AlignError(f"{path}: cannot read benchmark {name} ({e})", hint=f"fetch it again: {bench.command()}") \
            from None
    columns = [c for c in (bench.prompt, bench.label, bench.category, bench.context) if c]
    if not rows or any(c not in rows[0] for c in columns):
        raise AlignError(f"{path}: not the {name} file (expected columns {', '.join(columns)}, found "
                         f"{', '.join(rows[0]) if rows else 'no rows'})", hint=f"fetch it again: {bench.command()}")
    out = []
    for i, row in enumerate(rows, start=2):
        prompt = (row[bench.prompt] or "").strip()
        if bench.context and (row.get(bench.context) or "").strip():
            prompt = f"{row[bench.context].strip()}\n\n---\n\n{prompt}"
        rec = {"id": f"{name}-{i - 1}", "prompt": prompt, "label": row[bench.label] if bench.label else "harmful"}
        if bench.category and (row.get(bench.category) or "").strip():
            rec["category"] = row[bench.category].strip()
        out.append((str(path), i, rec))
    return out
