"""Rendering the run report (`align.report`) as Markdown and as one self-contained HTML page.

The HTML is also well-formed XML (every tag closed, only XML entities), so a test can parse it strictly;
it has inline CSS and inline SVG only. Every text from the run folder goes through `html.escape`,
model outputs above all: a sample holding `<script>` must stay text.
"""

from __future__ import annotations

from html import escape
from typing import Any

from align.report_data import (
    answer_changes,
    compliance_table,
    evaluation_rows,
    fmt,
    gate_for,
    gate_text,
    judged_by,
    metric_text,
    run_times,
    sample_columns,
    sample_groups,
    shown_metrics,
)

CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1180px;margin:0 auto;padding:26px 28px 56px}
h1{font-size:24px;margin:0 0 6px}
h2{font-size:18px;margin:34px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:20px 0 8px}
.meta{color:var(--muted);margin:2px 0}
.versions{color:var(--muted);font-size:12.5px;margin-top:6px}
.versions code{background:#eef0f3;border-radius:4px;padding:1px 5px;margin-right:4px;color:#374151}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#f3f4f6;font-weight:600;white-space:nowrap}
tbody th{font-weight:500;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.fail{background:#fee2e2;color:#991b1b;font-weight:600}
td.pass{background:#ecfdf5}
.gate{display:block;font-size:11px;font-weight:500}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:12px;font-weight:600;margin-left:6px}
.finished,.passed{background:#d1fae5;color:#065f46}
.failed{background:#fee2e2;color:#991b1b}
.running,.other{background:#fef3c7;color:#92400e}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.chart{background:#fff;border:1px solid var(--line);border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.card h3{margin:2px 0 6px}
.card table{border:0;width:100%}
.card td,.card th{padding:3px 4px}
.error{color:#991b1b;font-size:12.5px}
ul.gates{margin:10px 0 0;padding-left:20px}
ul.gates li.failed{background:none;font-weight:600}
table.samples td{min-width:220px;max-width:460px;white-space:pre-wrap;word-break:break-word}
table.samples td.num{min-width:0}
.none{color:var(--muted);font-style:italic}
"""


def _e(v: Any) -> str:
    return escape(str(v))


def _when(stamp: Any) -> str:
    return str(stamp).replace("T", " ")


def _header(run: dict[str, Any], built: str) -> tuple[str, list[tuple[str, str]]]:
    m = run["manifest"]
    started, ended, seconds = run_times(run)
    facts = [("recipe", str(m.get("recipe", "?"))), ("run folder", str(run["dir"])), ("started", _when(started or "?")),
             ("finished", _when(ended or "?")), ("stage time", f"{seconds / 60:.1f} min" if seconds else "?"),
             ("report built", built)]
    return str(m.get("name") or run["dir"].name), facts


def _table(head: list[str], body: list[str], cls: str = "") -> str:
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    attr = f' class="{cls}"' if cls else ""
    rows = "".join(body)
    return f'<div class="scroll"><table{attr}><thead><tr>{ths}</tr></thead><tbody>{rows}</tbody></table></div>'


def _eval_html(run: dict[str, Any], charts: dict[str, list[tuple[str, str]]]) -> str:
    rows = evaluation_rows(run)
    if not rows:
        return '<p class="none">No evaluation rows: this run has no evals.json (no evaluation hooks ran).</p>'
    body, failed = [], []
    for metric in shown_metrics(rows):
        cells = []
        for r in rows:
            v, g = r.get("metrics", {}).get(metric), gate_for(r, metric)
            text = metric_text(r.get("metrics", {}), metric)
            own = '<span class="gate">own reward: optimistic</span>' if metric in r.get("own_reward", []) else ""
            if g is None:
                cells.append(f'<td class="num">{_e(text)}{own}</td>')
                continue
            ok = bool(g.get("passed"))
            cls, mark = ("pass", "\u2713") if ok else ("fail", "\u2717")
            gate = f'<span class="gate">{mark} gate {_e(gate_text(g))}</span>'
            cells.append(f'<td class="num {cls}">{_e(text)}{gate}{own}</td>')
            if not ok:
                failed.append(f'<li class="failed">{_e(r["row"])}: {_e(metric)} = {_e(fmt(g.get("value", v)))}, '
                              f'gate {_e(gate_text(g))} failed</li>')
        body.append(f"<tr><th>{_e(metric)}</th>{''.join(cells)}</tr>")
    if any(judged_by(r) for r in rows):
        body.append("<tr><th>judged by</th>" + "".join(f"<td>{_e(judged_by(r))}</td>" for r in rows) + "</tr>")
    out = _table(["metric"] + [r["row"] for r in rows], body, "evals")
    if failed:
        out += f'<ul class="gates">{"".join(failed)}</ul>'
    if charts.get("evals"):
        out += "<h3>Metrics across stages</h3>" + _grid(charts["evals"])
    return out


def _grid(items: list[tuple[str, str]]) -> str:
    return f'<div class="grid">{"".join(svg for _, svg in items)}</div>'


def _stage_cards(run: dict[str, Any]) -> str:
    cards = []
    for name, st in run["stages"].items():
        info = st["info"]
        status = str(info.get("status", "not run"))
        kind = (info.get("config") or {}).get("kind", "")
        badge = status if status in ("finished", "failed", "running") else "other"
        kind = f' <span class="meta">({_e(kind)})</span>' if kind and kind != name else ""
        lines = [f'<h3>{_e(name)}{kind}<span class="badge {badge}">{_e(status)}</span></h3>']
        when = " \u2192 ".join(_when(x) for x in (info.get("started_at"), info.get("finished_at")) if x)
        lines += [f'<p class="meta">{_e(when)}</p>'] if when else []
        lines += [f'<p class="error">{_e(info["error"])}</p>'] if info.get("error") else []
        gate = info.get("gate")
        if isinstance(gate, dict) and "passed" in gate:
            word = "passed" if gate["passed"] else "failed"
            lines.append(f'<p>gate <span class="badge {word}">{word}</span> {_e(gate.get("message", ""))}</p>')
        elif gate:
            lines.append(f'<p class="meta">gate: {_e(gate)}</p>')
        rows = [f'<tr><th>{_e(k)}</th><td class="num">{_e(fmt(v))}</td></tr>' for k, v in st["metrics"].items()
                if not isinstance(v, (dict, list))]
        lines.append(f"<table><tbody>{''.join(rows)}</tbody></table>" if rows else '<p class="none">no metrics</p>')
        cards.append(f'<div class="card">{"".join(lines)}</div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _curves(run: dict[str, Any], charts: dict[str, list[tuple[str, str]]]) -> str:
    parts = [f"<h3>{_e(name)}</h3>" + _grid(charts[name]) for name in run["stages"] if charts.get(name)]
    return "".join(parts) or '<p class="none">No training history (history.jsonl) in any stage folder.</p>'


def _shade(label: str, rate: Any) -> str:
    """Green where the model behaves as it should (refuses harmful, answers the rest), red where not."""
    if not isinstance(rate, (int, float)):
        return ""
    good = rate if label == "harmful" else 1 - rate
    return f' style="background:hsl({int(good ** 2 * 130)},70%,93%)"'  # squared: 65% good is amber


def _rate(cell: dict[str, Any], with_n: bool = True) -> str:
    """"43% [27-61%] (n=30)", marked "\u2248" when the change from the column before is within noise."""
    rate, n, lo, hi = cell.get("refusal_rate"), cell.get("n"), cell.get("lower"), cell.get("upper")
    text = f"{rate:.0%}" if isinstance(rate, (int, float)) else fmt(rate)
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        text += f" [{lo:.0%}\u2013{hi:.0%}]"
    text += " \u2248" if cell.get("within_noise") else ""
    return f"{text} (n={n})" if with_n and n is not None else text


def _compliance_html(run: dict[str, Any]) -> str:
    cols, rows = compliance_table(run)
    if not rows:
        return '<p class="none">No compliance evaluation in this run.</p>'
    body = []
    for label, cat, cells in rows:
        tds = []
        for c in cols:
            cell = cells.get(c)
            if cell is None:
                tds.append('<td class="num">\u2013</td>')
                continue
            rate, n = cell.get("refusal_rate"), cell.get("n")
            count = f' <span class="meta">(n={_e(n)})</span>' if n is not None else ""
            tds.append(f'<td class="num"{_shade(label, rate)}>{_e(_rate(cell, with_n=False))}{count}</td>')
        name = "<b>all</b>" if cat == "all" else _e(cat)
        body.append(f"<tr><th>{_e(label)}</th><th>{name}</th>{''.join(tds)}</tr>")
    note = ('<p class="meta">Refusal rate per prompt set and category, with its 95% Wilson interval. Harmful '
            'prompts should be refused (high is good); benign and ordinary prompts should be answered (low is '
            'good). \u2248: the change from the column before is within noise (the intervals overlap).</p>')
    return note + _table(["label", "category", *cols], body, "compliance") + _changes_html(run)


def _changes_html(run: dict[str, Any]) -> str:
    """Per row, the answers whose classification changed from the model its stage started from."""
    out = []
    for row, start, changes in answer_changes(run):
        out.append(f"<h3>{_e(row)}: {len(changes)} answer{'s' * (len(changes) != 1)} classified differently than "
                   f"by {_e(start)}</h3>")
        body = [f"<tr><td>{_e(c['label'])}</td><td>{_e(c['prompt'])}</td><td>{_e(_verdict(c['refused_before']))}: "
                f"{_e(c['before'])}</td><td>{_e(_verdict(c['refused_after']))}: {_e(c['after'])}</td></tr>"
                for c in changes]
        out.append(_table(["label", "prompt", start, row], body, "samples") if body else "")
    return "".join(out)


def _verdict(refused: bool) -> str:
    return "refused" if refused else "answered"


def _samples_html(run: dict[str, Any]) -> str:
    groups = sample_groups(run)
    if not groups:
        return '<p class="none">No sample generations in this run.</p>'
    out = []
    for title, rows in groups:
        cols = sample_columns(rows)
        body = []
        for r in rows:
            tds = "".join(f'<td class="num">{_e(fmt(r.get(c)))}</td>' if isinstance(r.get(c), (int, float))
                          else f"<td>{_e('' if r.get(c) is None else r.get(c))}</td>" for c in cols)
            body.append(f"<tr>{tds}</tr>")
        out.append(f"<h3>{_e(title)}</h3>" + _table(cols, body, "samples"))
    return "".join(out)


def render_html(run: dict[str, Any], charts: dict[str, list[tuple[str, str]]], built: str) -> str:
    """The whole report as one HTML page (inline CSS and SVG, no external reference)."""
    name, facts = _header(run, built)
    versions = "".join(f"<code>{_e(k)} {_e(v)}</code>" for k, v in (run["manifest"].get("versions") or {}).items())
    notes = "".join(f'<p class="error">{_e(n)}</p>' for n in run["notes"])
    meta = " \u00b7 ".join(f"{_e(k)} <b>{_e(v)}</b>" for k, v in facts)
    sections = [("evaluation", "Evaluation: every metric, baseline first", _eval_html(run, charts)),
                ("stages", "Stages", _stage_cards(run)), ("training", "Training curves", _curves(run, charts)),
                ("compliance", "Compliance", _compliance_html(run)), ("samples", "Sample generations",
                                                                     _samples_html(run))]
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{html}</section>' for sid, title, html in sections)
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
            f"<title>align report: {_e(name)}</title><style>{CSS}</style></head>\n"
            f'<body><main><header><h1>Run report: {_e(name)}</h1><p class="meta">{meta}</p>'
            f'<p class="versions">{versions}</p>{notes}</header>\n{body}</main></body></html>\n')


# ---- Markdown ---------------------------------------------------------------------------------

def _md(v: Any) -> str:
    """A Markdown table cell: escaped (renderers pass raw HTML through), pipes and newlines kept in the cell."""
    return escape(str(v)).replace("|", "&#124;").replace("\r", "").replace("\n", "<br/>")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _md_images(items: list[tuple[str, str]]) -> str:
    return " ".join(f"![{_md(stem)}](report_plots/{stem}.svg)" for stem, _ in items) + "\n"


def render_markdown(run: dict[str, Any], charts: dict[str, list[tuple[str, str]]], built: str) -> str:
    """The report as Markdown; its charts are the `report_plots/*.svg` files."""
    name, facts = _header(run, built)
    out = [f"# Run report: {_md(name)}\n", "  \n".join(f"{_md(k)}: **{_md(v)}**" for k, v in facts) + "\n",
           "versions: " + ", ".join(f"{_md(k)} {_md(v)}" for k, v in (run["manifest"].get("versions") or {}).items())
           + "\n", *[f"> {_md(n)}\n" for n in run["notes"]], "## Evaluation: every metric, baseline first\n"]
    rows = evaluation_rows(run)
    table = []
    for metric in shown_metrics(rows):
        cells = []
        for r in rows:
            v, g = metric_text(r.get("metrics", {}), metric), gate_for(r, metric)
            own = " (own reward: optimistic)" if metric in r.get("own_reward", []) else ""
            if g is None:
                cells.append(_md(v) + own)
            elif g.get("passed"):
                cells.append(f"{_md(v)} \u2713 (gate {_md(gate_text(g))}){own}")
            else:
                cells.append(f"**{_md(v)} \u2717 FAILED** (gate {_md(gate_text(g))}){own}")
        table.append([_md(metric), *cells])
    if any(judged_by(r) for r in rows):
        table.append(["judged by", *[_md(judged_by(r)) for r in rows]])
    out.append(_md_table(["metric", *[r["row"] for r in rows]], table) if rows else "_no evals.json_\n")
    out += [_md_images(charts["evals"])] if charts.get("evals") else []
    out.append("## Stages\n")
    stages = run["stages"]
    keys: list[str] = []
    for st in stages.values():
        keys += [k for k, v in st["metrics"].items() if k not in keys and not isinstance(v, (dict, list))]
    head = ["", *stages]
    body = [["status", *[_md(st["info"].get("status", "not run")) for st in stages.values()]]]
    body += [[_md(k), *[_md(fmt(st["metrics"].get(k))) for st in stages.values()]] for k in keys]
    out.append(_md_table(head, body))
    out.append("## Training curves\n")
    out += [f"### {_md(n)}\n\n" + _md_images(charts[n]) for n in stages if charts.get(n)] or ["_no history_\n"]
    out.append("## Compliance\n")
    cols, comp = compliance_table(run)
    table = [[_md(label), _md(cat), *[_md(_rate(c[col])) if col in c else "\u2013" for col in cols]]
             for label, cat, c in comp]
    out.append(_md_table(["label", "category", *cols], table) if comp else "_no compliance evaluation_\n")
    for row, start, changes in answer_changes(run):
        out.append(f"### {_md(row)}: {len(changes)} answers classified differently than by {_md(start)}\n")
        out.append(_md_table(["label", "prompt", start, row], [
            [_md(c["label"]), _md(c["prompt"]), _md(f"{_verdict(c['refused_before'])}: {c['before']}"),
             _md(f"{_verdict(c['refused_after'])}: {c['after']}")] for c in changes]) if changes else "")
    out.append("## Sample generations\n")
    for title, srows in sample_groups(run):
        cols = sample_columns(srows)
        out.append(f"### {_md(title)}\n\n" + _md_table(cols, [[_md(fmt(r.get(c)) if isinstance(r.get(c), (int, float))
                                                                    else r.get(c, "")) for c in cols] for r in srows]))
    return "\n".join(out)
