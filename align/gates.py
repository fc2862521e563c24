"""Evaluation between stages: the run's table of rows (baseline, then each stage) and the gates.

During `align run`, `RunEvaluations` measures the base model before the first stage and every stage's
artifact after it with the recipe's `evals:` hooks (`align.hooks`), caches each row under
`evals/<row>.json` (keyed by what the row depends on, so a reused stage is not re-measured), writes
`evals.json` for the report, and checks each stage's `gate:` conditions on the stage's metrics and
its row's hook metrics. A failed gate keeps the artifact, marks it (`gate.json`, manifest status
`failed_gate`) and stops the pipeline with the metric, its value and the bound.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from align.errors import AlignError
from align.hooks import Row, evaluate_row
from align.models import artifact_head
from align.recipe import parse_gate
from align.runs import content_hash, write_json
from align.schema import EvalSpec, ModelSpec, Recipe, StageBase

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt, "==": operator.eq, "!=": operator.ne}


def check_gates(gates: Sequence[str], metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Each gate with its metric's value and whether it passed; a metric nobody measured is an error."""
    out = []
    for text in gates:
        name, op, bound = parse_gate(text)
        if name not in metrics:
            known = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))
            raise AlignError(f"gate '{text}': no metric named {name}", hint=f"measured metrics: {known}")
        value = float(metrics[name])
        out.append({"gate": text, "metric": name, "op": op, "bound": bound, "value": value,
                    "passed": not math.isnan(value) and _OPS[op](value, bound)})
    return out


# ---- the evaluation table of a run ----------------------------------------------------------------

def evaluate_cached(evals: Sequence[EvalSpec], row: Row, model_spec: ModelSpec, run_dir: Path, key: str,
                    judge: Path | None, defaults: dict[str, str | None], cache: str | None = None) -> dict[str, Any]:
    """`evaluate_row`, reusing `evals/<cache or row>.json` when it was computed with the same key (the row's
    model fingerprint, the hooks and the judge): a rerun that reuses a stage does not re-measure it."""
    path = run_dir / "evals" / f"{cache or row.name}.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    except (OSError, ValueError):
        pass
    result = evaluate_row(evals, row, model_spec, run_dir, judge, defaults) | {"key": key}
    path.parent.mkdir(exist_ok=True)
    write_json(path, result)
    if result.get("compliance"):  # every answer of the compliance hook, one JSON line each, for a reviewer
        from align.compliance import write_answers

        write_answers(path.with_name(f"{cache or row.name}.compliance.jsonl"), result["compliance"]["responses"])
    return result


def write_evals(run_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """`evals.json`, the table the report reads: rows in order (baseline first), compliance, samples."""
    out = {"rows": [{"row": r["row"], "metrics": r["metrics"], "gates": r.get("gates", [])} for r in rows],
           "compliance": {r["row"]: r["compliance"] for r in rows if r.get("compliance")},
           "samples": {r["row"]: r["samples"] for r in rows if r.get("samples")}}
    path = run_dir / "evals.json"
    write_json(path, out)
    return path


class RunEvaluations:
    """The evaluation rows of one pipeline run, in recipe order, baseline first."""

    def __init__(self, recipe: Recipe, run_dir: Path):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.defaults = _default_data(recipe)
        self._measured: dict[str, tuple[Row, str]] = {}  # row name -> (its model, its fingerprint)

    def baseline(self) -> None:
        if self.recipe.evals:
            self._add(Row("baseline", None), content_hash([dataclasses.asdict(self.recipe.model), "base"]))

    def after(self, stage: StageBase, fingerprint: str, metrics: dict[str, Any]) -> None:
        """Measure the stage's artifact, then check its gates (an AlignError stops the pipeline)."""
        row: dict[str, Any] = {"row": stage.name, "metrics": {}}
        if self.recipe.evals:
            art = self.run_dir / stage.name
            start = self.run_dir / stage.init if stage.init != "base" else None
            row = self._add(Row(stage.name, art, artifact_head(art), start, stage.init), fingerprint)
            if stage.kind == "rm":
                self._judge_earlier_rows()
        elif stage.gate:
            self.rows.append(row)
        if not stage.gate:
            return
        results = check_gates(stage.gate, {**metrics, **row["metrics"]})
        row["gates"] = results
        failed = [g for g in results if not g["passed"]]
        (self.run_dir / stage.name / "gate.json").write_text(json.dumps(
            {"passed": not failed, "gates": results}, indent=2))
        if failed:
            self.write()
            lines = [f"{g['metric']} = {g['value']:.4g}, bound {g['op']} {g['bound']:g}" for g in failed]
            raise GateFailed(f"stage {stage.name} failed its gate: " + "; ".join(lines), failed,
                             hint=f"the artifact is kept in {self.run_dir / stage.name} (marked in gate.json); "
                                  "later stages did not run. Change the recipe and rerun: finished stages "
                                  "are reused")

    def _judge_earlier_rows(self) -> None:
        """Win rates of the rows measured before any reward model existed (e.g. SFT before the RM), judged
        now by the new one, so every policy row gets its number."""
        hooks = [e for e in self.recipe.evals if e.hook == "win_rate"]
        judge = self._judge()
        for result in self.rows:
            row, fingerprint = self._measured.get(result["row"], (None, ""))
            if not hooks or row is None or row.head != "causal_lm" or "win_rate" in result["metrics"]:
                continue
            late = evaluate_cached(hooks, row, self.recipe.model, self.run_dir, _row_key(hooks, fingerprint, judge),
                                   judge, self.defaults, cache=f"{row.name}.judged")
            result["metrics"] |= late["metrics"]

    def _add(self, row: Row, fingerprint: str) -> dict[str, Any]:
        self._measured[row.name] = (row, fingerprint)
        judge = self._judge()
        key = _row_key(self.recipe.evals, fingerprint, judge)
        result = evaluate_cached(self.recipe.evals, row, self.recipe.model, self.run_dir, key, judge, self.defaults)
        base = self.rows[0]["metrics"] if self.rows and self.rows[0]["row"] == "baseline" else {}
        ppl = [k for k in result["metrics"] if k.split("_")[0] == "perplexity" and not k.endswith("_increase")]
        for key in ppl if row.name != "baseline" else []:  # perplexity, and perplexity_<name> of a named hook
            if base.get(key):
                result["metrics"][f"{key}_increase"] = result["metrics"][key] / base[key] - 1
        self.rows.append(result)
        return result

    def _judge(self) -> Path | None:
        """The latest finished rm stage: it judges win rates from then on."""
        for stage in reversed(self.recipe.stages):
            path = self.run_dir / stage.name
            if stage.kind == "rm" and (path / "artifact.json").is_file():
                return path
        return None

    def write(self) -> Path | None:
        return write_evals(self.run_dir, self.rows) if self.rows else None


class GateFailed(AlignError):
    def __init__(self, message: str, failed: list[dict[str, Any]], hint: str):
        super().__init__(message, hint=hint)
        self.failed = failed


def _row_key(hooks: Sequence[EvalSpec], fingerprint: str, judge: Path | None) -> str:
    """What a row's measurements depend on: the hooks, the row's model and the judge (its finished record)."""
    return content_hash([[dataclasses.asdict(e) for e in hooks], fingerprint, str(judge),
                         judge and (judge / "artifact.json").read_text()])


def _default_data(recipe: Recipe) -> dict[str, str | None]:
    """Each kind of hook data defaults to the recipe's held-out set of that kind."""
    d = recipe.data
    held = {k: getattr(getattr(d, k), "eval", None) if getattr(d, k) else None
            for k in ("sft", "rankings", "prompts", "text")}
    return {"rankings": held["rankings"], "prompts": held["prompts"] or held["rankings"] or held["sft"],
            "text": held["text"], "compliance": None}


