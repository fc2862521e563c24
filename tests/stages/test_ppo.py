"""The ppo stage on a tiny model: log-prob layout, learning a synthetic reward, the frozen reference,
the stops (NaN reward, KL bound), resuming, and a whole SFT -> RM -> PPO recipe through the pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from align.errors import AlignError
from align.evaluation.hooks import HOOKS
from align.generation import Completion, adapters_disabled, completion_logprobs, generate, prompt_ids
from align.models import load_artifact, load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import STAGE_METRICS, GenerationSpec, LoraSpec, ModelSpec, PPOStage
from align.stages import ppo
from align.stages.ppo_model import collate, policy_forward
from tests.stages.test_on_policy import POLICY_EVALS, write_recipe

PROMPTS = [[{"role": "user", "content": q}] for q in
           ["what is two plus two", "how do I bake bread", "please tell me a story", "the cat sat on the mat"]]


def even_tokens(prompts, completions) -> list[float]:
    """Synthetic reward: how many of the completion's tokens have an even id (half the vocabulary)."""
    return [float(sum(t % 2 == 0 for t in c.ids)) for c in completions]


@pytest.fixture
def spec(tiny_model_dir) -> ModelSpec:
    # LoRA on the LM head too: the tiny random model's head is what turns hidden states into token choices
    return ModelSpec(name=str(tiny_model_dir),
                     lora=LoraSpec(r=8, alpha=16, target_modules=["q_proj", "v_proj", "down_proj", "lm_head"]))


def make_trainer(spec: ModelSpec, **overrides) -> ppo.PPOTrainer:
    torch.manual_seed(0)
    settings = dict(name="ppo", kind="ppo", learning_rate=2e-2, max_steps=10, rollout_batch_size=16, batch_size=8,
                    grad_accum=1, ppo_epochs=4, kl_coef=0.2, max_kl=15.0, normalize_reward=False,
                    missing_eos_penalty=0.0, lr_scheduler="constant", save_steps=0, logging_steps=5,
                    generation=GenerationSpec(max_new_tokens=8, temperature=1.0, batch_size=16))
    stage = PPOStage(**(settings | overrides))
    return ppo.PPOTrainer(load_model(spec, "causal_lm"), ppo.value_model(spec, None), load_tokenizer(spec), stage,
                          len(PROMPTS), seed=0)


def test_update_logprobs_equal_rollout_logprobs(spec):
    """The first PPO ratio is 1: an update's micro-batch, cut to its own widths, gives the rollout's log-probs
    (scored in other micro-batches) to float precision; the positions survive the cut."""
    trainer = make_trainer(spec)
    batch, _ = trainer.rollout(trainer.batch_prompts(PROMPTS), even_tokens)
    ro, idx = batch["ro"], torch.tensor([5, 0, 11])
    rows, prompt, answer = ro.rows(idx)
    assert rows["input_ids"].shape[1] == prompt + answer <= ro.input_ids.shape[1]
    again, _ = policy_forward(trainer.policy, rows, prompt, 1.0)
    mask = ro.mask[idx, :answer].bool()
    torch.testing.assert_close(again[mask], batch["old_logprobs"][idx, :answer][mask], atol=1e-5, rtol=1e-5)
    assert not batch["old_logprobs"][idx, answer:].any()  # nothing past the rows' longest completion
    # and they are the log-probs of the sampled tokens (independent implementation, right padding)
    tok = trainer.tok
    completions = generate(trainer.policy, tok, prompt_ids(tok, PROMPTS), 8, 1.0, seed=3)
    expected = completion_logprobs(trainer.policy, completions, tok.pad_token_id)
    ro2 = collate(completions, tok.pad_token_id)
    rows, prompt, _ = ro2.rows(torch.arange(len(PROMPTS)))
    got, _ = policy_forward(trainer.policy, rows, prompt, 1.0)
    for row, exp in zip(got, expected):
        torch.testing.assert_close(row[:len(exp)], exp, atol=1e-5, rtol=1e-5)


def test_synthetic_reward_rises_kl_stays_bounded_reference_unchanged(spec):
    # a learning rate where the reward rises well within max_kl on this seed (at 2e-2 it rises faster and
    # one seed in a few crosses 15 nats by step 10, as the KL guard is meant to catch)
    trainer = make_trainer(spec, learning_rate=1e-2, max_steps=16)
    policy, tok = trainer.policy, trainer.tok
    probe = torch.tensor([prompt_ids(tok, PROMPTS)[0]])
    with adapters_disabled(policy) as ref:
        ref_before = ref(input_ids=probe).logits.detach().clone()
    summary = trainer.train(PROMPTS, even_tokens)
    assert summary["ppo_steps"] == 16 and summary["train_kl_max"] < 15.0
    ids = prompt_ids(tok, PROMPTS) * 16  # 64 fresh samples from each, same seed

    def mean_reward(model) -> float:
        return sum(even_tokens(None, generate(model, tok, ids, 8, 1.0, seed=1))) / len(ids)
    with adapters_disabled(policy) as ref:
        ref_after = ref(input_ids=probe).logits.detach()
        start = mean_reward(ref)
    assert torch.equal(ref_before, ref_after)  # the reference is bit-identical after training
    assert not torch.equal(policy(input_ids=probe).logits.detach(), ref_after)
    assert mean_reward(policy) > start + 1.0, (start, summary)


def test_nan_reward_stops_with_the_step(spec):
    trainer = make_trainer(spec, max_steps=2)
    calls = []

    def reward(prompts, completions):
        calls.append(1)
        return [float("nan") if len(calls) == 2 else 1.0] + [0.0] * (len(completions) - 1)
    with pytest.raises(AlignError, match="stage ppo: reward became nan at PPO step 2"):
        trainer.train(PROMPTS, reward)


def test_kl_past_the_bound_stops_with_the_value_and_step(spec):
    trainer = make_trainer(spec, max_steps=3, learning_rate=0.1, kl_coef=0.0, max_kl=0.5)
    with pytest.raises(AlignError, match=r"KL to the reference reached [0-9.]+ at PPO step 2, above max_kl=0.5"):
        trainer.train(PROMPTS, even_tokens)


def test_resume_from_a_checkpoint_continues_identically(spec, tmp_path):
    a = make_trainer(spec, max_steps=2, save_steps=1)
    a.train(PROMPTS, even_tokens, tmp_path / "a")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["checkpoint-2"]  # only the latest is kept
    b = make_trainer(spec, max_steps=1, save_steps=1)
    b.train(PROMPTS, even_tokens, tmp_path / "b")
    c = make_trainer(spec, max_steps=2)
    c.load(tmp_path / "b" / "checkpoint-1")
    assert c.step == 1 and c.score_norm == b.score_norm
    c.train(PROMPTS, even_tokens)
    for model in ("policy", "value"):
        want, got = ppo._trainable(getattr(a, model)), ppo._trainable(getattr(c, model))
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), model


def test_sft_rm_ppo_recipe_through_the_pipeline(tiny_model_dir, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model_dir, """  - name: ppo
    kind: ppo
    init: sft
    max_steps: 2
    rollout_batch_size: 4
    batch_size: 2
    grad_accum: 2
    ppo_epochs: 2
    save_steps: 1
    max_length: 64
    generation: {max_new_tokens: 6, temperature: 1.0, batch_size: 4}
""", evals=POLICY_EVALS)
    metrics = run_pipeline(load_recipe(recipe))["ppo"]
    assert set(metrics) <= set(STAGE_METRICS["ppo"]), set(metrics) - set(STAGE_METRICS["ppo"])  # what gates may name
    assert metrics["ppo_steps"] == 2 and metrics["train_prompts"] == 8
    evals = json.loads((tmp_path / "run" / "evals.json").read_text())
    rows = {r["row"]: r for r in evals["rows"]}
    assert list(rows) == ["baseline", "sft", "rm", "ppo"]
    # every policy row measured alike; sft's win rate judged once the rm stage finished (it came first)
    for name in ("sft", "ppo"):
        assert 0.0 <= rows[name]["metrics"]["win_rate"] <= 1.0 and rows[name]["judges"]["win_rate"] == "rm stage rm"
    assert isinstance(rows["ppo"]["metrics"]["kl"], float) and "win_rate" not in rows["baseline"]["metrics"]
    assert "win_rate" in rows["ppo"]["own_reward"] and rows["sft"]["own_reward"] == []  # ppo optimized its judge
    declared = {m for h in HOOKS.values() for m in h.metrics}  # what gates may name
    assert set(rows["ppo"]["metrics"]) <= declared, set(rows["ppo"]["metrics"]) - declared
    report = (tmp_path / "run" / "report.md").read_text()
    assert "own reward: optimistic" in report and "judged by its own reward (optimistic)" in report
    art = tmp_path / "run" / "ppo"
    assert json.loads((art / "model.json").read_text())["head"] == "causal_lm"
    assert not (art / "checkpoints").exists()  # the pipeline drops them once the stage finished
    assert {"prompt", "start", "policy", "reward_start", "reward_policy"} <= evals["samples"]["ppo"][0].keys()
    history = [json.loads(line) for line in (art / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if "ppo/kl" in h] == [1, 2]
    assert {"ppo/reward_mean", "ppo/entropy", "ppo/clipfrac", "ppo/approx_kl", "ppo/vf_loss", "ppo/explained_variance",
            "ppo/response_length", "ppo/gen_seconds", "ppo/train_seconds"} <= history[0].keys()
    spec = ModelSpec(name=str(tiny_model_dir), lora=LoraSpec(r=8, alpha=16))
    load_artifact(art, spec)  # loads as a policy
    # the critic starts as the reward model: its score head and (merged) backbone
    rm, critic = load_artifact(tmp_path / "run" / "rm", spec), ppo.value_model(spec, tmp_path / "run" / "rm")
    assert torch.equal(critic.get_base_model().score.weight, rm.score.weight)
    assert torch.equal(critic.get_base_model().model.norm.weight, rm.model.norm.weight)


def test_logprobs_go_through_the_models_final_logit_softcapping():
    """Gemma 2 soft-caps its logits after the LM head: PPO's and the evaluations' log-probs are those of the
    model's own output, log_softmax(model(...).logits), not of the bare LM head."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=8, final_logit_softcapping=0.5, pad_token_id=0,
        attn_implementation="eager")).eval()
    completions = [Completion([5, 6, 7, 8], [9, 10, 11], "", True),
                   Completion([12, 13], [14, 15, 16, 17, 18], "", True)]
    ro = collate(completions, 0)
    rows, prompt, _ = ro.rows(torch.arange(2))
    with torch.no_grad():
        full = torch.log_softmax(model(**rows).logits.float(), -1)
        got, _ = policy_forward(model, rows, prompt, 1.0)
        evaluated = completion_logprobs(model, completions, 0)
    for b, c in enumerate(completions):
        want = full[b, prompt - 1:prompt - 1 + len(c.ids)].gather(-1, torch.tensor(c.ids)[:, None]).squeeze(-1)
        torch.testing.assert_close(got[b, :len(c.ids)], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(evaluated[b], want, atol=1e-5, rtol=1e-5)


def _fixed_batch_grads(spec: ModelSpec, **overrides) -> dict[str, torch.Tensor]:
    """The gradients of one PPO minibatch (the whole rollout batch) on tests/ppo_ranks.py's fixed rollouts."""
    from tests.ppo_ranks import fixed_rollouts

    trainer = make_trainer(spec, rollout_batch_size=8, ppo_epochs=1, normalize_reward=True, **overrides)
    batch, _ = trainer.process(*fixed_rollouts(trainer.tok))
    trainer.update(batch)
    return {n: p.grad.clone() for m in (trainer.policy, trainer.value) for n, p in m.named_parameters()
            if p.requires_grad}


def test_token_weights_do_not_depend_on_how_a_minibatch_is_cut_into_micro_batches(spec):
    """One minibatch of 8 rollouts of lengths 2-7, as one micro-batch of 8 or four of 2 (grouped by length):
    every token weighs 1 / (the minibatch's tokens) either way, so the gradients are the same."""
    whole = _fixed_batch_grads(spec, batch_size=8, grad_accum=1)
    cut = _fixed_batch_grads(spec, batch_size=2, grad_accum=4)
    assert whole.keys() == cut.keys()
    for name in whole:
        torch.testing.assert_close(cut[name], whole[name], rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in whole.values())


class _OffsetHead(torch.nn.Module):
    """A score head reading about 10 everywhere: a critic initialised from a reward model whose scores are
    10 +- 3 (its own small head added, so the critic still trains)."""

    def __init__(self, head: torch.nn.Module):
        super().__init__()
        self.head = head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden) + 10.0


def test_critic_starts_in_the_units_of_the_normalized_returns(spec):
    """Reward normalisation maps the RM's 10 +- 3 to 0 +- 1; the critic, read from the same RM's head, must
    predict in those units from the first rollout, or its offset becomes a position-dependent advantage."""
    trainer = make_trainer(spec, normalize_reward=True, whiten_rewards=False, kl_coef=0.0)
    base = trainer.value.get_base_model()
    base.score = _OffsetHead(base.score)
    n = trainer.stage.rollout_batch_size
    spread = torch.linspace(-1.0, 1.0, n)
    scores = (10.0 + 3.0 * (spread - spread.mean()) / spread.std()).tolist()
    batch, stats = trainer.rollout(trainer.batch_prompts(PROMPTS), lambda prompts, completions: scores)
    assert trainer.score_norm == pytest.approx((1 / 3, 10.0))
    assert stats["score_mean"] == pytest.approx(0.0, abs=1e-5)
    assert abs(stats["value_mean"] - stats["score_mean"]) < 0.3, stats
    mask, raw_advantages = batch["ro"].mask, batch["returns"] - batch["values"]
    last = mask.sum(1).long() - 1
    rows = torch.arange(len(mask))
    assert abs(raw_advantages[:, 0].mean().item()) < 0.5 and abs(raw_advantages[rows, last].mean().item()) < 0.5
