"""The evaluation package: one hook table, the tempered KL, judges on fixtures with a known preferred answer,
`align eval` refusing what it cannot measure."""

from __future__ import annotations

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import align
from align.evaluation.compare import kl_sampling, sample, sampled_kl
from align.evaluation.hooks import HOOKS
from align.evaluation.judges import LLMJudge, RewardJudge, position_swapped
from align.generation import prompt_ids
from align.metrics import swapped_outcome, win_rate
from align.models import load_artifact, load_model, load_tokenizer
from align.pipeline import STAGES, run_pipeline
from align.recipe import load_recipe
from align.schema import STAGE_KINDS, GenerationSpec, ModelSpec
from align.stages.rm import prompt_part
from tests.conftest import write_jsonl
from tests.stages.test_rm import PHRASES, QUESTIONS, marker_rankings

ALIGN = Path(sys.executable).with_name("align")  # the console script users run


def test_the_hook_table_is_the_only_list_of_hooks():
    """No second table of hook names anywhere in the package (schema, recipe and hooks once had three)."""
    root = Path(align.__file__).parent
    for path in root.rglob("*.py"):
        if path == root / "evaluation" / "hooks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                names = {n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)}
                assert len(names & set(HOOKS)) < 3, f"{path}: a second list of hooks: {sorted(names & set(HOOKS))}"
    assert {h.head for h in HOOKS.values()} == {"reward", "causal_lm"}


def test_the_stage_table_runs_every_kind_the_schema_knows():
    assert STAGES.keys() == STAGE_KINDS.keys() and all(callable(m.run) for m in STAGES.values())


# ---- the KL at a sampling temperature (issue 17, item 3) --------------------------------------------------

def test_kl_at_temperature_is_the_closed_form_kl_of_the_tempered_distributions(tiny_model_dir):
    """One-token answers make the policy a categorical distribution over the vocabulary whose KL to the
    reference's is known in closed form; the sampled estimate must match KL(pi_T || ref_T). Scoring the
    tempered samples with untempered log-probs (the old definition) gives another number."""
    spec, t, n = ModelSpec(name=str(tiny_model_dir)), 0.5, 4000
    tok = load_tokenizer(spec)
    policy, reference = load_model(spec, "causal_lm", trainable=False), load_model(spec, "causal_lm", trainable=False)
    torch.manual_seed(0)
    with torch.no_grad():
        reference.lm_head.weight.add_(0.5 * torch.randn_like(reference.lm_head.weight))
    prompt = [[{"role": "user", "content": "the cat sat on the mat"}]]
    ids = torch.tensor(prompt_ids(tok, prompt))
    with torch.no_grad():
        p, q = policy(ids).logits[0, -1].double(), reference(ids).logits[0, -1].double()
    log_pt, log_qt = torch.log_softmax(p / t, -1), torch.log_softmax(q / t, -1)
    ratio = log_pt - log_qt
    exact = float((log_pt.exp() * ratio).sum())
    spread = math.sqrt(float((log_pt.exp() * (ratio - exact) ** 2).sum()) / n)
    gen = GenerationSpec(max_new_tokens=1, temperature=t, batch_size=1000, seed=0)
    got = sampled_kl(policy, reference, tok, sample(policy, tok, prompt * n, kl_sampling(gen)), gen)
    assert got == pytest.approx(exact, abs=4 * spread)
    old = float((log_pt.exp() * (torch.log_softmax(p, -1) - torch.log_softmax(q, -1))).sum())
    assert abs(old - exact) > 8 * spread  # the untempered score of the same samples is not this KL


def test_a_run_samples_each_model_s_answers_once_and_they_equal_a_fresh_generation(tiny_model_dir, monkeypatch):
    """The rows of a run share their answers (`Models.completions`): the base model's answers to the win-rate
    prompts serve every row, a policy's win-rate answers its KL when the settings agree. Since each prompt
    draws from its own seeded stream, a reused answer is the one a new generation would give."""
    import align.evaluation.compare as compare
    from align.evaluation.hooks import Models

    calls = []
    real = compare.generate
    monkeypatch.setattr(compare, "generate", lambda model, *a, **k: calls.append(1) or real(model, *a, **k))
    spec = ModelSpec(name=str(tiny_model_dir))
    prompts = [[{"role": "user", "content": t}] for t in ("the cat sat", "a dog ran far", "birds sing")]
    gen, shared = GenerationSpec(max_new_tokens=6, temperature=1.0, seed=3, batch_size=2), {}
    first = Models(spec, shared).completions(None, prompts, gen)  # the baseline row
    again = Models(spec, shared).completions(None, prompts, gen)  # a later row's rival: base
    kl = Models(spec, shared).completions(None, prompts, kl_sampling(gen))  # T = 1, top_p 1: the same settings
    assert again == first and kl == first and len(calls) == 1
    assert Models(spec, shared).completions(None, prompts[1:], gen) == first[1:] and len(calls) == 1  # samples
    other = Models(spec, shared).completions(None, prompts, GenerationSpec(max_new_tokens=6, temperature=1.0,
                                                                           seed=4, batch_size=2))
    assert len(calls) == 2 and [c.ids for c in other] != [c.ids for c in first]
    fresh = sample(load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec), prompts[::-1],
                   GenerationSpec(max_new_tokens=6, temperature=1.0, seed=3, batch_size=3))
    assert [c.ids for c in fresh[::-1]] == [c.ids for c in first]  # another order, another batch size


# ---- judges on fixtures with a known preferred answer ----------------------------------------------------

PROMPTS = [[{"role": "user", "content": q}] for q in ("name a colour", "say hello", "count to three")]


def _prefers(word: str):
    def verdicts(items):
        return ["A" if word in a and word not in b else "B" if word in b and word not in a else "tie"
                for _, a, b in items]
    return verdicts


def test_position_swapped_judging_known_preferences_and_position_bias():
    good, plain = ["red, a good colour", "hello, good day", "1 2 3, good"], ["blue", "hi", "one two"]
    outcomes, found, cols = position_swapped(PROMPTS, good, plain, _prefers("good"))
    assert win_rate(outcomes) == 1.0 and found["ties"] == 0.0 and found["first_position"] == 0.5
    assert cols[0] == {"verdict_policy_first": "A", "verdict_policy_second": "B"}
    assert win_rate(position_swapped(PROMPTS, plain, good, _prefers("good"))[0]) == 0.0
    always_first = position_swapped(PROMPTS, plain, good, lambda items: ["A"] * len(items))
    assert win_rate(always_first[0]) == 0.5 and always_first[1]["first_position"] == 1.0  # bias cancelled
    ties = position_swapped(PROMPTS, plain, good, lambda items: ["tie"] * len(items))
    assert win_rate(ties[0]) == 0.5 and ties[1]["ties"] == 1.0
    assert swapped_outcome("A", "tie") == 0.75 and swapped_outcome("B", "A") == 0.0


def test_an_llm_judge_is_antisymmetric_whatever_its_bias(tiny_model_dir):
    """Asked in both orders, any judge gives win(a, b) + win(b, a) = 1 on every prompt."""
    spec = ModelSpec(name=str(tiny_model_dir))
    judge = LLMJudge(load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec))
    ours, theirs = ["red", "hello there", "1 2 3"], ["blue sky", "hi", "one"]
    forward, found, _ = judge.judge(PROMPTS, ours, theirs)
    backward, _, _ = judge.judge(PROMPTS, theirs, ours)
    assert all(a + b == 1.0 for a, b in zip(forward, backward)) and 0.0 <= found["first_position"] <= 1.0
    assert set(judge.verdicts([("q", "a", "b")])) <= {"A", "B", "tie"}


def test_rm_parts_are_disjoint_and_an_rm_on_the_other_half_judges_a_known_preference(tiny_model_dir, tmp_path):
    """Two rm stages on parts 1/2 and 2/2 of the rankings share no prompt; the second, an independent judge of
    a policy trained on the first, prefers the answer the rankings prefer (it mentions a fox)."""
    rankings = marker_rankings(48, 1)
    halves = [prompt_part(_parsed(rankings), f"{i}/2") for i in (1, 2)]
    assert len(halves[0]) + len(halves[1]) == 48 and halves[0] and halves[1]
    assert not {json.dumps(r.prompt) for r in halves[0]} & {json.dumps(r.prompt) for r in halves[1]}
    train = write_jsonl(tmp_path / "train.jsonl", rankings)
    (tmp_path / "r.yaml").write_text(f"""name: judges
model: {{name: {tiny_model_dir}, adapter: full}}
data: {{rankings: {{train: {train}}}}}
tracking: none
output_dir: {tmp_path / "run"}
stages:
  - {{name: rm, kind: rm, part: 1/2, learning_rate: 3.0e-3, max_steps: 24, max_length: 64, eval_before: false,
      warmup_ratio: 0.0, lr_scheduler: constant, save_steps: 0}}
  - {{name: rm_judge, kind: rm, part: 2/2, learning_rate: 3.0e-3, max_steps: 24, max_length: 64,
      eval_before: false, warmup_ratio: 0.0, lr_scheduler: constant, save_steps: 0}}
""")
    metrics = run_pipeline(load_recipe(tmp_path / "r.yaml"))
    assert [metrics[s]["train_prompts"] for s in ("rm", "rm_judge")] == [len(h) for h in halves]
    spec = ModelSpec(name=str(tiny_model_dir), adapter="full")
    judge = RewardJudge(load_artifact(tmp_path / "run" / "rm_judge", spec, "reward"), load_tokenizer(spec))
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    foxes, plain = [f"{PHRASES[i]} fox" for i in range(len(prompts))], [PHRASES[i + 1] for i in range(len(prompts))]
    outcomes, found, _ = judge.judge(prompts, foxes, plain)
    assert win_rate(outcomes) >= 0.75 and found["reward"] > found["reward_start"]


def _parsed(rows):
    from align.rankings import parse_ranking

    return [parse_ranking("x", i, r) for i, r in enumerate(rows)]


def test_part_must_be_i_of_n(tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", marker_rankings(4, 1))
    (tmp_path / "r.yaml").write_text(f"""name: parts
model: {{name: {tiny_model_dir}}}
data: {{rankings: {{train: {train}}}}}
evals: [{{hook: llm_judge}}, {{hook: win_rate, judge: sft}}]
stages: [{{name: rm, kind: rm, part: 3/2}}]
""")
    out = _align("validate", str(tmp_path / "r.yaml"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "stages.rm.part: '3/2' is not a part" in out.stderr
    assert "evals[0].judge: llm_judge needs the judging model" in out.stderr
    assert "evals[1].judge: 'sft' is not an rm stage" in out.stderr


# ---- align eval refuses what it cannot measure (issue 23, item 10) --------------------------------------

def _align(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(align.__file__).parents[1]))
    return subprocess.run([str(ALIGN), *args], capture_output=True, text=True, env=env, timeout=300)


def test_align_eval_says_what_is_missing(tiny_model_dir, tmp_path):
    rankings = write_jsonl(tmp_path / "r.jsonl", marker_rankings(2, 1))
    out = _align("eval", "base", "--model", str(tiny_model_dir), "--hook", "rm_accuracy", "--data", str(rankings))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "rm_accuracy measures a reward model" in out.stderr and "base is a policy" in out.stderr
    out = _align("eval", "base", "--model", str(tiny_model_dir), "--hook", "win_rate", "--against", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "win_rate needs a judge" in out.stderr and "--judge" in out.stderr


def test_generating_hooks_take_their_prompts_from_rankings_of_any_format(tmp_path):
    """win_rate / kl / samples default to the recipe's held-out rankings: OpenAssistant and hh-rlhf records too
    (recipes/human-preferences.yaml stopped here before)."""
    from align.evaluation.hooks import HookContext, Row, prompts_of
    from align.schema import DataSpec, EvalSpec

    def prompts(data):
        return prompts_of(HookContext(Row("x", None), EvalSpec(hook="win_rate", max_examples=2), data,
                                      ModelSpec(name="m"), tmp_path))

    oasst = Path(__file__).parents[1] / "reward_data/human/oasst/test.jsonl"
    assert len(prompts(str(oasst))) == 2 and all(p[-1]["role"] == "user" and p[-1]["content"]
                                                 for p in prompts(str(oasst)))
    hh = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                              "rejected": "\n\nHuman: hi\n\nAssistant: go away"}])
    assert prompts(str(hh)) == [[{"role": "user", "content": "hi"}]]
    # a recipe's rankings section: its eval file's prompts
    assert prompts(DataSpec(train=str(hh), eval=str(oasst))) == prompts(str(oasst))


def test_a_copied_run_folder_keeps_its_evaluation_rows(tmp_path):
    """A row's cache key names its judge by stage and finished record, not by path: a run folder copied or
    moved elsewhere reuses its rows; a judge that was retrained (another record) measures them again."""
    from align.evaluation.table import RunEvaluations

    recipe = load_recipe(Path(align.__file__).parents[1] / "recipes" / "quickstart.yaml")
    record = json.dumps({"status": "finished", "stage": "rm", "artifact_id": "a1"})
    keys = []
    for name, text in (("here", record), ("moved", record), ("retrained", record.replace("a1", "b2"))):
        (tmp_path / name / "rm").mkdir(parents=True)
        (tmp_path / name / "rm" / "artifact.json").write_text(text)
        evals = RunEvaluations(recipe, tmp_path / name)
        evals._passed.add("rm")  # the run has reached the rm stage
        keys.append(evals._key(recipe.evals, "f00d", [evals._judge(e) for e in recipe.evals]))
    assert keys[0] == keys[1] and keys[2] != keys[0]


def test_rerunning_a_finished_run_copied_elsewhere_measures_no_row_again(tiny_run, tmp_path, monkeypatch):
    """Every stage reused, every row reused: the baseline and sft rows keep the keys of their first run (no
    judge yet) although the rm now exists from the start, and no key holds the run folder's path."""
    import shutil

    import align.evaluation.table as table

    copy = tmp_path / "moved"
    shutil.copytree(tiny_run, copy)
    measured = []
    real = table.evaluate_row
    monkeypatch.setattr(table, "evaluate_row", lambda evals, row, *a, **k: measured.append(row.name) or
                        real(evals, row, *a, **k))
    run_pipeline(load_recipe(tiny_run.parent / "r.yaml", [f"output_dir={copy}", "tracking.backend=none"]))
    assert measured == []
    rows = {r["row"]: r["metrics"] for r in json.loads((copy / "evals.json").read_text())["rows"]}
    assert "win_rate" in rows["sft"] and "win_rate" in rows["dpo"]  # the late-judged sft row came from its cache
