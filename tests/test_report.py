"""The run report: built from a run folder alone, every row present, values shown, texts escaped, and it
renders in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from align.cli import main
from align.errors import AlignError
from align.report import summary_rows, write_report

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert('pwned')</script> & <b>bold</b>"


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_run(root: Path, evals: bool = True) -> Path:
    """A run folder as a pipeline leaves it: sft -> rm -> dpo, histories, samples, and evals.json."""
    run = root / "run"
    stages = {
        "sft": ({"eval_loss_before": 3.43, "eval_loss_after": 2.91, "train_loss": 3.1, "stage_seconds": 156.0},
                [{"step": s, "train/loss": 3.5 - 0.05 * s, "train/grad_norm": 2.0 / (1 + s), "train/epoch": s / 10,
                  **({"eval/loss": 3.4 - 0.04 * s} if s % 5 == 0 else {})} for s in range(1, 21)]),
        "rm": ({"pairwise_accuracy_after": 0.7125, "ece_after": 0.073, "stage_seconds": 100.8},
               [{"step": s, "train/loss": 0.7 - 0.01 * s, "train/accuracy": 0.5 + 0.02 * s} for s in range(1, 11)]),
        "dpo": ({"win_rate": 0.625, "kl": 1.84, "reward": 0.31, "reward_start": -0.12, "stage_seconds": 240.5},
                [{"step": s, "train/loss": 0.69 - 0.02 * s, "train/rewards/margins": 0.05 * s,
                  "train/rewards/chosen": 0.02 * s, "kl": 0.1 * s} for s in range(1, 16)]),
    }
    manifest = {"name": "quickstart", "recipe": "recipes/quickstart.yaml", "updated_at": "2025-01-02T10:09:00",
                "versions": {"align": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}, "stages": {}}
    for i, (name, (metrics, history)) in enumerate(stages.items()):
        (run / name).mkdir(parents=True)
        (run / name / "metrics.json").write_text(json.dumps(metrics))
        _jsonl(run / name / "history.jsonl", history)
        manifest["stages"][name] = {"status": "finished", "metrics": metrics, "config": {"kind": name},
                                    "started_at": f"2025-01-02T10:0{i * 3}:00",
                                    "finished_at": f"2025-01-02T10:0{i * 3 + 2}:00"}
    _jsonl(run / "dpo" / "samples.jsonl", [
        {"prompt": "How do I bake bread?", "start": "mix flour", "policy": "Mix flour, water, yeast.",
         "reward_start": -0.5, "reward_policy": 0.75},
        {"prompt": EVIL, "start": "I can't help with that.", "policy": EVIL, "reward_start": 0.1, "reward_policy": -1}])
    (run / "manifest.json").write_text(json.dumps(manifest))
    if evals:
        (run / "evals.json").write_text(json.dumps(_evals()))
    return run


def _evals() -> dict:
    def comp(harm: float, over: float) -> dict:
        return {"overall": {"refusal_rate": harm, "over_refusal": over, "n_harmful": 113, "n_benign": 123},
                "categories": [{"category": "cyber", "label": "harmful", "n": 12, "refusal_rate": harm},
                               {"category": "cyber", "label": "benign", "n": 12, "refusal_rate": over}]}

    rows = [{"row": "dpo", "metrics": {"rm_accuracy": 0.71, "perplexity": 9.5, "refusal_rate": 0.93,
                                       "over_refusal": 0.35, "win_rate": 0.625},
             "gates": [{"metric": "over_refusal", "op": "<=", "bound": 0.2, "value": 0.35, "passed": False},
                       {"metric": "win_rate", "op": ">=", "bound": 0.5, "value": 0.625, "passed": True}],
             "judges": {"win_rate": "rm stage rm"}, "own_reward": ["win_rate"]},
            {"row": "baseline", "metrics": {"rm_accuracy": 0.5, "perplexity": 8.25, "refusal_rate": 0.12,
                                            "over_refusal": 0.02}, "gates": []},
            {"row": "sft", "metrics": {"rm_accuracy": 0.52, "perplexity": 8.75, "refusal_rate": 0.81,
                                       "over_refusal": 0.11}, "gates": []}]
    compliance = {"baseline": comp(0.12, 0.02), "sft": comp(0.81, 0.11), "dpo": comp(0.93, 0.35)}
    return {"rows": rows, "compliance": compliance,
            "samples": {"dpo": [{"prompt": "Tell me a story", "start": "once", "policy": "Once upon a time"}]}}


@pytest.fixture
def report(tmp_path) -> tuple[Path, str, str]:
    md, html = write_report(make_run(tmp_path))
    return md.parent, md.read_text(), html.read_text()


def _xml(html: str) -> ET.Element:
    return ET.fromstring(html.split("\n", 1)[1])  # past the doctype: the page is well-formed XML too


def test_every_row_and_value(report):
    run, md, html = report
    root = _xml(html)
    table = root.find(".//section[@id='evaluation']//table")
    head = [th.text for th in table.find("thead").iter("th")]
    assert head == ["metric", "baseline", "sft", "dpo"]  # baseline first, then stages in order
    body = {tr.find("th").text: [("".join(td.itertext())) for td in tr.findall("td")] for tr in table.find("tbody")}
    assert body["perplexity"] == ["8.25", "8.75", "9.5"] and body["win_rate"][:2] == ["\u2013", "\u2013"]
    assert body["over_refusal"][2].startswith("0.35") and "\u2717" in body["over_refusal"][2]
    fail = [td for td in table.iter("td") if "fail" in td.get("class", "")]
    assert len(fail) == 1 and "over_refusal = 0.35, gate \u2264 0.2 failed" in html
    for text in ("0.7125", "3.43", "2.91", "240.5", "recipes/quickstart.yaml", "transformers 5.24.0"):
        assert text in html and text in md
    assert [h.text for h in root.findall(".//div[@class='card']/h3")] == ["sft", "rm", "dpo"]  # stage cards
    assert "| metric | baseline | sft | dpo |" in md and "**0.35 \u2717 FAILED** (gate \u2264 0.2)" in md


def test_plots_inline_and_as_files(report):
    run, md, html = report
    root = _xml(html)
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    titles = {s.find("{http://www.w3.org/2000/svg}title").text for s in svgs}
    assert {"sft: loss", "sft: grad_norm", "rm: loss", "rm: accuracy", "dpo: loss", "dpo: reward", "dpo: kl"} <= titles
    assert {"rm_accuracy", "perplexity", "over_refusal", "win_rate"} <= titles
    assert not any("epoch" in t for t in titles)  # bookkeeping series are not plotted
    assert all(s.find(".//{http://www.w3.org/2000/svg}polyline") is not None or s.find(
        ".//{http://www.w3.org/2000/svg}circle") is not None for s in svgs)  # a line, or a dot (win_rate: one row)
    assert (run / "report_plots" / "dpo-kl.svg").is_file() and "](report_plots/dpo-kl.svg)" in md
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_compliance_and_samples(report):
    _, md, html = report
    root = _xml(html)
    comp = root.find(".//section[@id='compliance']//table")
    assert [th.text for th in comp.find("thead").iter("th")] == ["label", "category", "baseline", "sft", "dpo"]
    cells = ["".join(td.itertext()) for td in comp.iter("td")]
    assert "93% (n=113)" in cells and "35% (n=12)" in cells
    samples = root.find(".//section[@id='samples']")
    assert [h.text for h in samples.iter("h3")] == ["evaluation: dpo", "stage dpo"]
    assert "Mix flour, water, yeast." in html and "Once upon a time" in html and "| 0.75 |" in md


def test_model_text_is_escaped(report):
    _, md, html = report
    root = _xml(html)
    assert root.find(".//script") is None and root.find(".//td/b") is None
    assert EVIL in "".join(root.find(".//section[@id='samples']").itertext())
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_summary_rows_for_the_tracker(tmp_path):
    rows = summary_rows(make_run(tmp_path))
    assert [r["row"] for r in rows] == ["baseline", "sft", "dpo"] and len({tuple(r) for r in rows}) == 1
    assert rows[0]["win_rate"] is None and rows[2]["failed_gates"] == "over_refusal <= 0.2"
    assert rows[2]["judged_by"] == "win_rate: rm stage rm (judged by its own reward (optimistic))"
    assert rows[0]["judged_by"] == ""


def test_every_judged_number_names_its_judge_and_own_reward_is_marked(report):
    _, md, html = report
    body = {tr.find("th").text: ["".join(td.itertext()) for td in tr.findall("td")]
            for tr in _xml(html).find(".//section[@id='evaluation']//table").find("tbody")}
    assert body["judged by"] == ["", "", "win_rate: rm stage rm (judged by its own reward (optimistic))"]
    assert "own reward: optimistic" in body["win_rate"][2] and "own reward" not in body["perplexity"][2]
    assert "| judged by |  |  | win_rate: rm stage rm (judged by its own reward (optimistic)) |" in md
    assert "| win_rate | \u2013 | \u2013 | 0.625 \u2713 (gate \u2265 0.5) (own reward: optimistic) |" in md


def test_without_evals_and_with_a_broken_history_line(tmp_path):
    run = make_run(tmp_path, evals=False)
    with (run / "sft" / "history.jsonl").open("a") as f:
        f.write('{"step": 21, "train/lo')  # a run killed mid-write
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["dpo"] |= {"status": "failed", "error": "gate over_refusal <= 0.2 failed (0.35)"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    md, html = write_report(run)
    text = html.read_text()
    assert "No evaluation rows" in text and "1 unreadable line skipped" in text
    assert "gate over_refusal &lt;= 0.2 failed (0.35)" in text and 'class="badge failed"' in text
    _xml(text)


def test_missing_or_empty_run_folder(tmp_path):
    with pytest.raises(AlignError, match="no such run folder"):
        write_report(tmp_path / "nope")
    with pytest.raises(AlignError, match="no manifest.json"):
        write_report(tmp_path)
    (tmp_path / "manifest.json").write_text('{"stages": {}}')
    with pytest.raises(AlignError, match="no stages recorded"):
        write_report(tmp_path)


def test_cli_report(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out and (run / "report.md").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


# ---- a real browser -----------------------------------------------------------------------------

def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def _png(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (filtered) scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IHDR":
            width, height = struct.unpack(">II", data[pos + 8:pos + 16])
        elif kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium; .ci/run "
                                                   "installs it)")
def test_report_renders_in_chromium(tmp_path):
    md, html = write_report(make_run(tmp_path))
    url = html.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Run report: quickstart" in dom.stdout and dom.stdout.count("<svg") >= 10
    assert "&lt;script&gt;alert" in dom.stdout and "<script>alert" not in dom.stdout
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", url)
    assert shot.is_file(), result.stderr[-2000:]
    width, height, raw = _png(shot)
    assert (width, height) == (1280, 2000)
    # a uniform page filters to (almost) all zero bytes; text, tables and charts do not
    assert (len(raw) - raw.count(0)) / len(raw) > 0.005  # measured: 0.0003 for an empty page, 0.024 here
