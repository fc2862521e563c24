"""The run report: `report.md` and a self-contained `report.html`, built from the run folder alone.

    align report runs/quickstart        # rebuild both at any time

`align.report_data` reads the run folder (manifest, stage metrics and histories, `evals.json` with each
row's metrics, gates and judges); `align.report_render` renders it as Markdown and as HTML with inline
CSS and SVG, no external reference, so it opens offline and can be mailed; the Markdown links the same
charts, written to `report_plots/`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from align.report_data import chart_sections, evaluation_rows, judged_by, load_run, metric_names
from align.report_render import render_html, render_markdown
from align.runs import own_entries, write_error


def summary_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The evaluation table as rows with the same keys ({"row", every metric, "failed_gates", "judged_by"}),
    e.g. for `Tracker.table("evaluation", ...)`; a metric a row did not measure is None. `judged_by` names
    the judge of each judged metric and marks a policy judged by the reward model it optimized."""
    rows = evaluation_rows(load_run(run_dir))
    names = metric_names(rows)
    return [{"row": r["row"], **{m: r.get("metrics", {}).get(m) for m in names},
             "failed_gates": "; ".join(f"{g.get('metric')} {g.get('op')} {g.get('bound')}"
                                       for g in r.get("gates", []) if not g.get("passed")),
             "judged_by": judged_by(r)} for r in rows]


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write `report.md` (with charts in `report_plots/`) and `report.html` into the run folder."""
    run = load_run(run_dir)
    own_entries(run["dir"])  # report.md, report_plots/ ...: no link may lead the writes out of the run folder
    charts = chart_sections(run)
    plots = run["dir"] / "report_plots"
    md, html = run["dir"] / "report.md", run["dir"] / "report.html"
    built = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        plots.mkdir(exist_ok=True)
        for old in plots.glob("*.svg"):  # a chart of a stage or metric that is gone must not linger
            old.unlink()
        for items in charts.values():
            for stem, svg in items:
                (plots / f"{stem}.svg").write_text(svg)
        md.write_text(render_markdown(run, charts, built))
        html.write_text(render_html(run, charts, built))
    except OSError as e:  # a read-only or full folder: say so, not a traceback
        if mapped := write_error(e, run["dir"]):
            raise mapped from e
        raise
    return md, html

