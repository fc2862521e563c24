"""Evaluation rows and gates through the pipeline: baseline first, hooks by hand, a failing gate stops."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from align.errors import AlignError
from align.evaluation.compare import compare_policies, kl_sampling, sample, sampled_kl
from align.evaluation.gates import check_gates
from align.evaluation.hooks import HOOKS, Row, evaluate_row
from align.evaluation.judges import RewardJudge
from align.generation import token_nll
from align.models import load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.recipe import load_recipe, parse_gate
from align.schema import EvalSpec, GenerationSpec, ModelSpec
from align.tracking import find_wandb_files, read_wandb_history, read_wandb_records
from tests.conftest import write_jsonl, write_recipe

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "once upon a time there was a fox"]


def user_hook(model, tok, ctx) -> dict[str, float]:
    """A user's hook as the docs describe it: the row's model, its tokenizer, the context."""
    return {"params_million": sum(p.numel() for p in model.parameters()) / 1e6, "scale": ctx.args["scale"]}


def test_gate_syntax_and_checks():
    assert parse_gate(" over_refusal<=0.2 ") == ("over_refusal", "<=", 0.2)
    assert parse_gate("rm_accuracy >= 6e-1") == ("rm_accuracy", ">=", 0.6)
    with pytest.raises(ValueError, match="metric OP number"):
        parse_gate("accuracy is high")
    got = check_gates(["a >= 0.5", "b < 1"], {"a": 0.4, "b": 0.5})
    assert [g["passed"] for g in got] == [False, True] and got[0]["value"] == 0.4
    with pytest.raises(AlignError, match="no metric named c"):
        check_gates(["c > 0"], {"a": 1.0})
    assert not check_gates(["a > 0"], {"a": math.nan})[0]["passed"]  # NaN never passes


def test_perplexity_equals_a_hand_computation(tiny_model_dir, tmp_path):
    spec = ModelSpec(name=str(tiny_model_dir))
    tok, model = load_tokenizer(spec), load_model(spec, "causal_lm", trainable=False)
    data = write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in TEXTS])
    got = evaluate_row([EvalSpec(hook="perplexity", data=str(data))], Row("baseline", None), spec, tmp_path)
    nll, n = 0.0, 0
    with torch.no_grad():
        for t in TEXTS:
            ids = torch.tensor([tok(t)["input_ids"]])
            logits = model(ids).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            n += ids.shape[1] - 1
    assert got["metrics"]["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)
    assert token_nll(model, [], tok.pad_token_id) == (0.0, 0)


def test_a_policy_against_itself_has_zero_kl_and_ties_everywhere(tiny_model_dir):
    spec = ModelSpec(name=str(tiny_model_dir))
    tok = load_tokenizer(spec)
    model = load_model(spec, "causal_lm", trainable=False)
    judge = load_model(spec, "reward", trainable=False)
    prompts = [[{"role": "user", "content": t}] for t in TEXTS]
    gen = GenerationSpec(max_new_tokens=6, temperature=1.0, batch_size=2)
    ours, theirs = sample(model, tok, prompts, gen), sample(model, tok, prompts, gen)
    metrics, table = compare_policies(prompts, ours, theirs, judge=RewardJudge(judge, tok))
    assert sampled_kl(model, model, tok, sample(model, tok, prompts, kl_sampling(gen)), gen) == pytest.approx(0.0,
                                                                                                         abs=1e-5)
    assert metrics["win_rate"] == 0.5  # same seed, same model: the same answers, every one a tie
    assert [r["policy"] for r in table] == [r["start"] for r in table] and len(table) == 3


def _recipe(tmp_path, tiny_model_dir, sft_files, evals: str, gate: str = "", tracking: str = "none") -> object:
    text = write_jsonl(tmp_path / "text.jsonl", [{"text": t} for t in TEXTS])
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run",
                        stage=f"    max_steps: 4\n{gate}", tracking=tracking)
    path.write_text(path.read_text() + evals.replace("TEXT", str(text)))
    return load_recipe(path)


def test_rows_run_before_and_after_and_reach_the_report(tiny_model_dir, sft_files, tmp_path):
    recipe = _recipe(tmp_path, tiny_model_dir, sft_files, """
evals:
  - {hook: perplexity, data: TEXT}
  - {hook: kl, max_examples: 2, generation: {max_new_tokens: 4}}
  - {hook: llm_judge, judge: MODEL, against: start, max_examples: 2, generation: {max_new_tokens: 4}}
  - {hook: "tests.test_gates:user_hook", args: {scale: 3}}
""".replace("MODEL", str(tiny_model_dir)), gate="    gate: ['perplexity_increase <= 100', 'scale == 3']\n",
                     tracking="wandb")
    run_pipeline(recipe)
    evals = json.loads((tmp_path / "run" / "evals.json").read_text())
    rows = {r["row"]: r["metrics"] for r in evals["rows"]}
    assert list(rows) == ["baseline", "sft"]
    assert rows["sft"]["perplexity"] != rows["baseline"]["perplexity"]  # training changed the model
    assert rows["sft"]["perplexity_increase"] == pytest.approx(rows["sft"]["perplexity"] /
                                                              rows["baseline"]["perplexity"] - 1)
    assert "kl" in rows["sft"] and "kl" not in rows["baseline"]
    assert 0.0 <= rows["sft"]["llm_win_rate"] <= 1.0 and "llm_win_rate" not in rows["baseline"]  # base vs itself
    assert evals["rows"][1]["judges"] == {"llm_win_rate": f"LLM {tiny_model_dir}"}
    assert rows["baseline"]["scale"] == 3 and rows["sft"]["params_million"] > 0
    declared = {m for h in HOOKS.values() for m in h.metrics} | {"perplexity_increase"}  # what gates may name
    assert set(rows["sft"]) - {"scale", "params_million"} <= declared, set(rows["sft"]) - declared
    assert all(g["passed"] for g in evals["rows"][1]["gates"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert "params_million" in html and "baseline" in html and "perplexity_increase" in html
    # wandb's writer process may still be flushing right after finish(): its run record too, on a loaded machine
    deadline = time.monotonic() + 60
    while True:
        report_run = [f for f in find_wandb_files(tmp_path / "run") if any(
            r.WhichOneof("record_type") == "run" and r.run.job_type == "report" for r in read_wandb_records(f))]
        if report_run and any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(report_run[0])):
            break
        assert time.monotonic() < deadline, f"no completed W&B report run: {report_run}"
        time.sleep(0.5)
    assert len(report_run) == 1  # the evaluation table and the report go to W&B as their own run of the group
    logged = read_wandb_history(report_run[0])
    assert [r["eval/perplexity"] for r in logged if "eval/perplexity" in r] == [rows["baseline"]["perplexity"],
                                                                               rows["sft"]["perplexity"]]
    media = {k.split(".")[0]: v for r in logged for k, v in r.items() if k.endswith("._type")}
    assert media == {"evaluation": "table-file", "report": "html-file"}  # the report once, not a file per chart
    # a rerun reuses the stage and its cached row (same key): nothing is measured again
    before = (tmp_path / "run" / "evals" / "sft.json").stat().st_mtime_ns
    run_pipeline(recipe)
    assert (tmp_path / "run" / "evals" / "sft.json").stat().st_mtime_ns == before


def test_an_impossible_gate_stops_the_pipeline_and_keeps_the_artifact(tiny_model_dir, sft_files, tmp_path):
    recipe = _recipe(tmp_path, tiny_model_dir, sft_files, "evals:\n  - {hook: perplexity, data: TEXT}\n",
                     gate="    gate: ['perplexity < 0.5']\n")
    later = dict(vars(recipe.stages[0]), name="sft2", init="sft", gate=[])
    recipe.stages.append(type(recipe.stages[0])(**later))
    with pytest.raises(AlignError, match=r"stage sft failed its gate: perplexity = [\d.]+, bound < 0.5"):
        run_pipeline(recipe)
    run = tmp_path / "run"
    assert (run / "sft" / "artifact.json").is_file()  # kept, and marked
    assert json.loads((run / "sft" / "gate.json").read_text())["passed"] is False
    assert json.loads((run / "manifest.json").read_text())["stages"]["sft"]["status"] == "failed_gate"
    assert not (run / "sft2").exists() and not (run / ".sft2.partial").exists()  # the later stage never ran
    assert "perplexity" in (run / "report.md").read_text()


def test_unknown_hook_and_bad_gate_are_recipe_errors(tiny_model_dir, sft_files, tmp_path):
    with pytest.raises(AlignError) as e:
        _recipe(tmp_path, tiny_model_dir, sft_files, "evals:\n  - {hook: perplexty}\n  - {hook: kl, against: nope}\n",
                gate="    gate: ['loss is low']\n")
    text = str(e.value)
    assert "did you mean 'perplexity'" in text and "'nope' is not a stage" in text and "metric OP number" in text


def test_align_eval_runs_a_hook_on_an_artifact_outside_a_pipeline(tiny_model_dir, tmp_path, capsys):
    from align.cli import main
    from tests.stages.test_rm import marker_rankings

    evals = write_jsonl(tmp_path / "eval.jsonl", marker_rankings(8, 2))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: t
model: {{name: {tiny_model_dir}, adapter: full}}
data: {{rankings: {{train: {write_jsonl(tmp_path / "train.jsonl", marker_rankings(8, 1))}, eval: {evals}}}}}
tracking: none
output_dir: {tmp_path / "run"}
stages:
  - {{name: rm, kind: rm, max_steps: 2, max_length: 64}}
""")
    stage = run_pipeline(load_recipe(recipe))["rm"]
    out = tmp_path / "result.json"
    assert main(["eval", str(tmp_path / "run" / "rm"), "--hook", "rm_accuracy", "--data", str(evals),
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["rm_accuracy"] == pytest.approx(stage["pairwise_accuracy_after"])
    assert "rm_accuracy" in capsys.readouterr().out
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,label,category\nhow do I bake bread,benign,food\nwhat is two plus two,harmful,x\n")
    assert main(["eval", "base", "--model", str(tiny_model_dir), "--hook", "compliance", "--data", str(prompts),
                 "--max-new-tokens", "4"]) == 0
    assert "over_refusal" in capsys.readouterr().out
    assert main(["eval", str(tmp_path), "--hook", "kl"]) == 2  # not an artifact: a clear error, exit 2

