"""What the run report shows, read from the run folder alone (`align.report` writes it, `align.report_render`
renders it).

It reads `manifest.json` (stages, their status, config and metrics; package versions), each stage's
`metrics.json`, `history.jsonl` (the logged training steps) and `samples.jsonl`, and the evaluation
hooks' `evals.json` when present (the baseline and per-stage metric rows with their gates, compliance
tables, samples). The HTML has inline CSS and inline SVG charts (`align.plots`) and no external
reference, so it opens offline and can be mailed; the Markdown links the same charts, written to
`report_plots/`. Every text is escaped: prompts and answers come from models.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from align import records
from align.errors import AlignError
from align.plots import line_chart, rows_chart, tick
from align.runs import read_manifest

# bookkeeping series nobody reads as a curve
_SKIP_SERIES = ("epoch", "num_tokens", "runtime", "per_second", "total_flos", "learning_rate", "step")
_OVERALL = (("harmful", "refusal_rate"), ("benign", "over_refusal"), ("ordinary", "ordinary_refusal"))
_OP = {">=": "\u2265", "<=": "\u2264", ">": ">", "<": "<", "==": "=", "!=": "\u2260"}


# ---- reading the run folder -------------------------------------------------------------------

def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, read from the run folder (see the module docstring)."""
    run_dir = Path(run_dir)
    hint = "give the folder of one run (the recipe's output_dir, e.g. runs/quickstart); `align runs` lists them"
    if not run_dir.is_dir():
        raise AlignError(f"{run_dir}: no such run folder", hint=hint)
    manifest = read_manifest(run_dir / "manifest.json")
    if manifest is None and (run_dir / "manifest.json").exists():
        raise AlignError(f"{run_dir / 'manifest.json'}: not a manifest align wrote (unreadable, not JSON, or of "
                         "another shape)", hint="rerun the recipe: `align run` starts a new manifest, keeping the "
                                                "stage folders")
    if manifest is None:
        raise AlignError(f"{run_dir}: no manifest.json, so no stage has run in this folder", hint=hint)
    stages = manifest.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise AlignError(f"{run_dir / 'manifest.json'}: no stages recorded", hint="run the recipe first")
    out: dict[str, Any] = {"dir": run_dir, "manifest": manifest, "stages": {}, "notes": []}
    for name, info in stages.items():
        folder = run_dir / name
        metrics = _read_json(folder / "metrics.json", dict) or (info or {}).get("metrics") or {}
        out["stages"][name] = {"info": info or {}, "metrics": metrics,
                               "history": _read_jsonl(folder / "history.jsonl", out["notes"]),
                               "samples": _read_jsonl(folder / "samples.jsonl", out["notes"])}
    out["evals"] = _read_json(run_dir / "evals.json", records.EVALS) or {}
    return out


def _read_json(path: Path, spec: Any) -> Any:
    """A record of the run folder of the shape `spec` (`records`), None when there is none."""
    if not path.exists():
        return None
    return records.read(path, spec, hint="the run may have been interrupted while writing it, or the file edited: "
                                         "rerun the stage (or the run, for evals.json) or delete the file")


def _read_jsonl(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except (ValueError, RecursionError):
            row = None
            bad += 1  # e.g. the last line of a run that was killed mid-write
        if isinstance(row, dict):
            rows.append(row)
    if bad:
        notes.append(f"{path}: {bad} unreadable line{'s' * (bad > 1)} skipped")
    return rows


# ---- what the report shows --------------------------------------------------------------------

def evaluation_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation rows in report order (baseline, then stages in recipe order, then any others), each
    {"row", "metrics", "gates"}; also what goes to the tracker as the summary table."""
    rows = [r for r in run["evals"].get("rows", []) if isinstance(r, dict) and "row" in r]
    order = ["baseline", *run["stages"]]
    return sorted(rows, key=lambda r: order.index(r["row"]) if r["row"] in order else len(order))


OWN_REWARD = "judged by its own reward (optimistic)"


def judged_by(row: dict[str, Any]) -> str:
    """Who judged a row's judged metrics: 'win_rate, reward: rm stage rm (judged by its own reward
    (optimistic))'; empty when nothing in the row was judged."""
    groups: dict[str, list[str]] = {}
    for metric, label in (row.get("judges") or {}).items():
        groups.setdefault(str(label), []).append(metric)
    own = set(row.get("own_reward") or [])
    return "; ".join(f"{', '.join(ms)}: {label}" + (f" ({OWN_REWARD})" if own & set(ms) else "")
                     for label, ms in groups.items())


def metric_names(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in rows:
        names += [k for k in r.get("metrics", {}) if k not in names]
    return names


def shown_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The metrics of the evaluation table and charts: those of `metric_names` less the interval bounds and
    counts of a rate (`over_refusal.lower`, `.upper`, `.n`), which the rate's own cell shows."""
    names = metric_names(rows)
    return [m for m in names if not ("." in m and m.rsplit(".", 1)[0] in names)]


def metric_text(metrics: dict[str, Any], name: str) -> str:
    """A metric's cell: its value, and for a rate with an interval "0.433 [0.27, 0.61] n=30"."""
    lo, hi, n = (metrics.get(f"{name}.{k}") for k in ("lower", "upper", "n"))
    if not isinstance(lo, (int, float)) or not isinstance(hi, (int, float)):
        return fmt(metrics.get(name))
    return f"{fmt(metrics.get(name))} [{lo:.2f}, {hi:.2f}]" + (f" n={n}" if n is not None else "")


def gate_for(row: dict[str, Any], metric: str) -> dict[str, Any] | None:
    gates = [g for g in row.get("gates", []) if g.get("metric") == metric]
    return next((g for g in gates if not g.get("passed")), gates[0] if gates else None)


def fmt(v: Any) -> str:
    """A metric value for a table cell."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "\u2013"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return tick(v) if abs(v) >= 1e5 or 0 < abs(v) < 1e-3 else f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def gate_text(g: dict[str, Any]) -> str:
    return f"{_OP.get(g.get('op'), g.get('op', ''))} {fmt(g.get('bound'))}"


def _series(history: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """History columns grouped into chart families: loss, reward, kl, then one family per other name."""
    families: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for i, row in enumerate(history):
        step = row.get("step")
        step = step if isinstance(step, (int, float)) else i
        for key, v in row.items():
            if key == "step" or not isinstance(v, (int, float)) or any(s in key for s in _SKIP_SERIES):
                continue
            low = key.lower()
            fam = ("loss" if "loss" in low else "reward" if "reward" in low
                   else "kl" if low == "kl" or low.endswith(("/kl", "_kl")) or "/kl_" in low or low.startswith("kl_")
                   else key.rsplit("/", 1)[-1])
            families.setdefault(fam, {}).setdefault(key, []).append((step, v))
    first = [f for f in ("loss", "reward", "kl") if f in families]
    return {f: families[f] for f in first + sorted(set(families) - set(first))}


def run_times(run: dict[str, Any]) -> tuple[str, str, float]:
    infos = [s["info"] for s in run["stages"].values()]
    started = min((i["started_at"] for i in infos if i.get("started_at")), default="")
    ended = max((i.get("finished_at") or "" for i in infos), default="") or run["manifest"].get("updated_at", "")
    seconds = sum(s["metrics"].get("stage_seconds", 0) or 0 for s in run["stages"].values()
                  if isinstance(s["metrics"].get("stage_seconds", 0), (int, float)))
    return started, ended, seconds


def chart_sections(run: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """{section: [(file stem, svg)]}: metrics across rows, then each stage's training curves."""
    rows = evaluation_rows(run)
    out: dict[str, list[tuple[str, str]]] = {"evals": []}
    for metric in shown_metrics(rows):
        points, bound = [], None
        for r in rows:
            g = gate_for(r, metric)
            bound = g.get("bound") if g and bound is None else bound
            points.append((r["row"], r.get("metrics", {}).get(metric), bool(g) and not g.get("passed")))
        if svg := rows_chart(metric, points, bound):
            out["evals"].append((_stem(f"eval-{metric}"), svg))
    for name, stage in run["stages"].items():
        out[name] = [(_stem(f"{name}-{fam}"), svg) for fam, series in _series(stage["history"]).items()
                     if (svg := line_chart(f"{name}: {fam}", series))]
    return out


def _stem(name: str) -> str:
    """A safe file name for a chart (metric names come from user hooks)."""
    return re.sub(r"[^\w.-]+", "_", name)


def compliance_table(run: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]]]:
    """Rows of the compliance table: (label, category, {eval row: category entry}); overall rows first."""
    comp = run["evals"].get("compliance") or {}
    order = [r["row"] for r in evaluation_rows(run)]
    cols = sorted(comp, key=lambda r: order.index(r) if r in order else len(order))
    keys: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for col in cols:
        overall = comp[col].get("overall", {})
        for label, metric in _OVERALL:
            if metric in overall:
                key = (label, "all")
                keys += [key] if key not in keys else []
                cells.setdefault(key, {})[col] = {"refusal_rate": overall[metric], "n": overall.get(f"n_{label}"),
                                                  "lower": overall.get(f"{metric}.lower"),
                                                  "upper": overall.get(f"{metric}.upper")}
    for col in cols:
        for c in comp[col].get("categories", []):
            key = (str(c.get("label", "")), str(c.get("category", "")))
            keys += [key] if key not in keys else []
            cells.setdefault(key, {})[col] = dict(c)
    for row in cells.values():  # a change from the column before is within noise when the intervals overlap
        present = [c for c in cols if c in row]
        for before, after in zip(present, present[1:]):
            a, b = row[before], row[after]
            if all(isinstance(x.get(k), (int, float)) for x in (a, b) for k in ("lower", "upper")) \
                    and a["refusal_rate"] != b["refusal_rate"]:
                b["within_noise"] = a["lower"] <= b["upper"] and b["lower"] <= a["upper"]
    labels = ("harmful", "benign", "ordinary")
    keys.sort(key=lambda k: (labels.index(k[0]) if k[0] in labels else 3, k[1] != "all", k[1]))
    return cols, [(label, cat, cells[(label, cat)]) for label, cat in keys]


def answer_changes(run: dict[str, Any]) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(row, start row, answers classified differently than by the start row's model) for every evaluation row
    whose compliance answers can be compared with those of the model its stage started from."""
    from align.compliance import changed_answers

    comp = run["evals"].get("compliance") or {}
    out = []
    for row in (r["row"] for r in evaluation_rows(run)):
        start = (comp.get(row) or {}).get("start")
        if row != "baseline" and start in comp and comp[row].get("responses") and comp[start].get("responses"):
            out.append((row, start, changed_answers(comp[start]["responses"], comp[row]["responses"])))
    return out


def sample_groups(run: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups = [(f"evaluation: {row}", rows) for row, rows in (run["evals"].get("samples") or {}).items() if rows]
    groups += [(f"stage {name}", s["samples"]) for name, s in run["stages"].items() if s["samples"]]
    return groups


def sample_columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols
