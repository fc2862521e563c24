"""W&B, read back from the offline run files of a finished sft -> rm -> dpo run: each stage's artifact and its
parent's (the lineage base -> sft -> rm / dpo), summaries with final metrics and gate results, and one report run
with the evaluation table and the report as a single HTML panel."""

from __future__ import annotations

import json
import time

import pytest

from align.tracking import (
    artifact_name,
    find_wandb_files,
    read_wandb_artifacts,
    read_wandb_history,
    read_wandb_records,
    read_wandb_summary,
)


@pytest.fixture(scope="module")
def runs(tiny_run) -> dict[str, dict]:
    """Every W&B run of the pipeline by job type: its artifacts, summary and history."""
    out = {}
    for path in find_wandb_files(tiny_run):
        deadline = time.monotonic() + 60  # wandb's writer process may still be flushing right after finish()
        while not any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(path)):
            assert time.monotonic() < deadline, f"the W&B run file {path} was never completed"
            time.sleep(0.5)
        job = next(r.run.job_type for r in read_wandb_records(path) if r.WhichOneof("record_type") == "run")
        out[job] = {"artifacts": [a for a in read_wandb_artifacts(path) if a["type"] != "run_table"],
                    "summary": read_wandb_summary(path), "history": read_wandb_history(path)}
    return out


def test_every_stage_logs_its_artifact_and_uses_its_parents(runs, tiny_run, tiny_model_dir):
    assert set(runs) == {"sft", "rm", "dpo", "report"}
    used = {job: [(a["name"], a["type"]) for a in r["artifacts"] if a["used"]] for job, r in runs.items()}
    made = {job: [(a["name"], a["type"]) for a in r["artifacts"] if not a["used"]] for job, r in runs.items()}
    base = artifact_name(tiny_model_dir.name)
    assert used == {"sft": [(base, "model")], "rm": [("run-sft", "model")], "dpo": [("run-sft", "model")],
                    "report": []}
    assert made == {"sft": [("run-sft", "model")], "rm": [("run-rm", "reward-model")], "dpo": [("run-dpo", "model")],
                    "report": []}
    # the sft artifact the rm and dpo runs declare as input is the very version the sft run logged
    digest = {job: {a["name"]: a["digest"] for a in r["artifacts"]} for job, r in runs.items()}
    assert digest["sft"]["run-sft"] == digest["rm"]["run-sft"] == digest["dpo"]["run-sft"]
    sft = next(a for a in runs["sft"]["artifacts"] if a["name"] == "run-sft")
    assert "adapter/adapter_model.safetensors" in sft["files"] and "model.json" in sft["files"]
    assert "train.log" not in sft["files"] and "history.jsonl" not in sft["files"]
    fingerprint = json.loads((tiny_run / "sft" / "artifact.json").read_text())["fingerprint"]
    assert sft["metadata"] | {"fingerprint": fingerprint} == sft["metadata"] and sft["metadata"]["kind"] == "sft"
    base_art = next(a for a in runs["sft"]["artifacts"] if a["used"])
    assert base_art["metadata"]["base"] == str(tiny_model_dir)  # a reference only: nothing uploaded


def test_stage_summaries_hold_final_metrics_evaluation_and_gates(runs, tiny_run):
    rm = runs["rm"]["summary"]
    metrics = json.loads((tiny_run / "rm" / "metrics.json").read_text())
    assert rm["pairwise_accuracy_after"] == metrics["pairwise_accuracy_after"]
    assert "eval/rm_accuracy" in rm and rm["gate/rm_accuracy >= 0"] == "passed"
    assert "eval/perplexity" in runs["dpo"]["summary"]
    for job, run in runs.items():  # constants are summaries, not one-point charts
        assert not any(k.startswith("final/") for row in run["history"] for k in row), job


def test_report_run_has_the_table_and_one_html_panel(runs, tiny_run):
    report = runs["report"]
    media = {k.split(".")[0]: v for row in report["history"] for k, v in row.items() if k.endswith("._type")}
    assert media == {"evaluation": "table-file", "report": "html-file"}
    for job in ("sft", "rm", "dpo"):
        assert not any(v == "html-file" for row in runs[job]["history"] for k, v in row.items() if k.endswith("_type"))
    evals = {r["row"]: r["metrics"] for r in json.loads((tiny_run / "evals.json").read_text())["rows"]}
    assert report["summary"]["dpo/perplexity"] == evals["dpo"]["perplexity"]
    assert report["summary"]["rm/rm_accuracy"] == evals["rm"]["rm_accuracy"]
