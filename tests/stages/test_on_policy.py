"""The rloo and grpo stages on a tiny model: learning a synthetic reward with the reference left unchanged,
the recipe checks every on-policy stage (ppo too) gets, and SFT -> RM -> rloo + grpo through the pipeline."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from align.errors import AlignError
from align.generation import adapters_disabled, generate, prompt_ids
from align.models import load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import STAGE_METRICS, LoraSpec, ModelSpec, TrackingSpec
from align.stages.common import StageContext
from align.stages.group import group_trainer
from align.tracking import Tracker
from tests.conftest import write_jsonl
from tests.stages.test_rm import marker_rankings

QUESTIONS = ["what is two plus two", "how do I bake bread", "please tell me a story", "the cat sat on the mat"]
PROMPTS = [[{"role": "user", "content": q}] for q in QUESTIONS]
TRAINERS = {"rloo": (RLOOTrainer, RLOOConfig, {"beta": 0.05}),
            "grpo": (GRPOTrainer, GRPOConfig, {"beta": 0.04, "loss_type": "dapo", "scale_rewards": "group"})}


def even_tokens(prompts, completions, completion_ids, **_) -> list[float]:
    """Synthetic reward: how many of the answer's tokens have an even id (half the vocabulary)."""
    return [float(sum(t % 2 == 0 for t in ids)) for ids in completion_ids]


@pytest.fixture(scope="module")
def expressive_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its LM head scaled by 20. Behind the final RMSNorm the random head (std 0.02) keeps
    every logit near 0, and TRL refuses LoRA on lm_head, so LoRA elsewhere could not make any token likelier;
    measured: x1 learns nothing in 10 steps, x20 gains 3-4 even tokens of 8 (rloo and grpo), x40 is unstable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-expressive")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


POLICY_EVALS = """evals:
  - {hook: win_rate, against: start, max_examples: 4, generation: {max_new_tokens: 6, batch_size: 4}}
  - {hook: kl, max_examples: 4, generation: {max_new_tokens: 6, temperature: 1.0}}
  - {hook: samples, max_examples: 4, generation: {max_new_tokens: 6}}
"""


def write_recipe(tmp_path, model, stages: str, rm: bool = True, evals: str = "") -> object:
    """A recipe on the tiny model: SFT and (with `rm`) RM stages, then `stages` (YAML list items)."""
    rankings = write_jsonl(tmp_path / "rank.jsonl", marker_rankings(16, 1))
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"messages": [{"role": "user", "content": q},
                                                              {"role": "assistant", "content": "four"}]}
                                               for q in QUESTIONS])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q, "id": i} for i, q in enumerate(QUESTIONS * 3)])
    rm_stage = "  - {name: rm, kind: rm, init: sft, max_steps: 2, max_length: 64}\n" if rm else ""
    (tmp_path / "r.yaml").write_text(f"""name: on-policy-test
model: {{name: {model}, lora: {{r: 8, alpha: 16}}}}
data:
  sft: {{train: {sft}}}
  rankings: {{train: {rankings}}}
  prompts: {{train: {prompts}, eval_fraction: 0.34}}
tracking: none
output_dir: {tmp_path / "run"}
{evals}stages:
  - {{name: sft, kind: sft, max_steps: 2, max_length: 64}}
{rm_stage}{stages}""")
    return tmp_path / "r.yaml"


@pytest.mark.parametrize("kind", ["rloo", "grpo"])
def test_synthetic_reward_rises_reference_unchanged(kind, expressive_model_dir, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, expressive_model_dir, f"""  - name: {kind}
    kind: {kind}
    learning_rate: 2.0e-2
    lr_scheduler: constant
    max_steps: 10
    rollout_batch_size: 16
    num_generations: 4
    num_iterations: 2
    batch_size: 8
    grad_accum: 1
    save_steps: 0
    logging_steps: 1
    generation: {{max_new_tokens: 8, temperature: 1.0}}
"""))
    stage = recipe.stage(kind)
    ctx = StageContext(recipe, stage, tmp_path / "out", None, Tracker(TrackingSpec(backend="none"), tmp_path, "g", {}))
    spec = ModelSpec(name=str(expressive_model_dir), lora=LoraSpec(r=8, alpha=16))  # all-linear: no LoRA on lm_head
    tok, policy = load_tokenizer(spec), load_model(spec, "causal_lm")
    probe = torch.tensor([prompt_ids(tok, PROMPTS)[0]])
    with adapters_disabled(policy) as ref:
        ref_before = ref(input_ids=probe).logits.detach().clone()
    trainer_cls, config_cls, algorithm = TRAINERS[kind]
    trainer = group_trainer(ctx, trainer_cls, config_cls, policy, tok, PROMPTS, even_tokens, **algorithm)
    assert "ref" not in trainer.model.peft_config  # the reference is the adapter disabled, not TRL's copy
    trainer.train()
    # 10 rollout batches x 2 minibatches x 2 iterations; TRL logged the reward and the KL to the reference
    assert trainer.state.global_step == 40
    assert all(h.get("kl") is not None for h in trainer.state.log_history if "reward" in h)
    ids = prompt_ids(tok, PROMPTS) * 16  # 64 fresh samples from each, same seed

    def mean_reward(model) -> float:
        answers = generate(model, tok, ids, 8, 1.0, seed=1)
        return sum(even_tokens(None, None, [c.ids for c in answers])) / len(ids)
    with adapters_disabled(policy) as ref:
        assert torch.equal(ref(input_ids=probe).logits.detach(), ref_before)  # bit-identical after training
        start = mean_reward(ref)
    assert not torch.equal(policy(input_ids=probe).logits.detach(), ref_before)
    assert mean_reward(policy) > start + 1.0, (start, trainer.state.log_history[-2])


@pytest.mark.parametrize("kind", ["ppo", "rloo", "grpo"])
def test_an_on_policy_stage_without_an_rm_stage_is_refused(kind, tiny_model_dir, tmp_path):
    stage = f"  - {{name: {kind}, kind: {kind}, init: sft}}\n"
    with pytest.raises(AlignError, match=f"stages.{kind}: a {kind} stage learns from a reward model's scores, "
                                         "and no rm stage comes before it"):
        load_recipe(write_recipe(tmp_path, tiny_model_dir, stage, rm=False))
    # run directly (no validation), the stage itself says what to add
    recipe = load_recipe(write_recipe(tmp_path, tiny_model_dir, stage))
    recipe.stages = [recipe.stage(kind)]
    with pytest.raises(AlignError, match=f"{kind.upper()} needs a reward model") as e:
        importlib.import_module(f"align.stages.{kind}").run(
            StageContext(recipe, recipe.stages[0], tmp_path / "out", None, None))
    assert "add an rm stage" in str(e.value)


def test_rollout_batches_must_hold_whole_groups_and_minibatches(tiny_model_dir, tmp_path):
    stages = """  - {name: a, kind: grpo, init: sft, rollout_batch_size: 12, num_generations: 8, batch_size: 4}
  - {name: b, kind: rloo, init: sft, num_generations: 1}
  - {name: c, kind: ppo, init: sft, rollout_batch_size: 6, batch_size: 4, grad_accum: 1}
"""
    with pytest.raises(AlignError) as e:
        load_recipe(write_recipe(tmp_path, tiny_model_dir, stages))
    text = str(e.value)
    assert "stages.a.rollout_batch_size: 12 is not a multiple of num_generations = 8" in text
    assert "stages.a.rollout_batch_size: 12 is not a multiple of batch_size * grad_accum = 8" in text
    assert "stages.b.num_generations: must be >= 2" in text
    assert "stages.c.rollout_batch_size: 6 is not a multiple of batch_size * grad_accum = 4" in text


def test_sft_rm_rloo_grpo_recipe_through_the_pipeline(tiny_model_dir, tmp_path):
    common = ("init: sft, max_steps: 2, rollout_batch_size: 4, num_generations: 2, batch_size: 2, grad_accum: 1, "
              "logging_steps: 1, max_length: 64, generation: {max_new_tokens: 6, temperature: 1.0}")
    recipe = write_recipe(tmp_path, tiny_model_dir, f"""  - {{name: rloo, kind: rloo, save_steps: 1, {common}}}
  - {{name: grpo, kind: grpo, num_iterations: 2, {common}}}
""", evals=POLICY_EVALS)
    metrics = run_pipeline(load_recipe(recipe))
    evals = json.loads((tmp_path / "run" / "evals.json").read_text())
    for kind, updates in (("rloo", 2), ("grpo", 4)):
        got, art = metrics[kind], tmp_path / "run" / kind
        assert set(got) <= set(STAGE_METRICS[kind]), set(got) - set(STAGE_METRICS[kind])  # what gates may name
        assert got[f"{kind}_steps"] == 2 and got["optimizer_steps"] == 2 * updates, got
        assert got["train_prompts"] == 8
        for key in ("train_reward_first", "train_reward_last", "train_kl_per_token_max"):
            assert isinstance(got[key], float), (kind, key)
        # the run's evaluation row, as for every stage: judged by the rm stage the policy optimized, so marked
        row = next(r for r in evals["rows"] if r["row"] == kind)
        assert all(isinstance(row["metrics"][k], float) for k in ("win_rate", "kl", "reward", "reward_against"))
        assert row["judges"]["win_rate"] == "rm stage rm" and row["own_reward"] == ["reward", "reward_against",
                                                                                    "win_rate"]
        assert 1 <= len(evals["samples"][kind]) <= 4  # the distinct held-out prompts, at most max_examples
        assert json.loads((art / "metrics.json").read_text()).keys() == got.keys()
        assert json.loads((art / "model.json").read_text())["head"] == "causal_lm"
        assert not (art / "checkpoints").exists()
        assert {"prompt", "start", "policy", "reward_start", "reward_policy"} <= evals["samples"][kind][0].keys()
        history = [json.loads(line) for line in (art / "history.jsonl").read_text().splitlines()]
        assert [h["step"] for h in history if "train/loss" in h] == list(range(1, 2 * updates + 1))
        sampled = [h for h in history if "train/reward" in h]  # logged where a rollout batch was sampled
        assert [h["step"] for h in sampled] == [1, 1 + updates]
        assert {"train/kl", "train/rewards/reward_model/mean", "train/completions/mean_length", "train/entropy",
                "train/num_tokens"} <= sampled[0].keys()
