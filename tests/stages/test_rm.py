"""The rm stage on a tiny model: losses by hand, per-prompt batches, learning, and what it trains."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from trl import RewardConfig

from align.models import load_artifact, load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.rankings import read_rankings, tokenize_rankings
from align.recipe import load_recipe
from align.schema import STAGE_METRICS, ModelSpec
from align.stages.rm import (
    RankingCollator,
    RankingRewardTrainer,
    bradley_terry_loss,
    centering_penalty,
    evaluate_rm,
    plackett_luce_loss,
    row_rewards,
)
from tests.conftest import write_jsonl

PHRASES = ["the cat sat on the mat", "a dog ran in the park", "four is the answer", "mix flour and water",
           "here is a helpful answer", "I cannot help with that request"]
QUESTIONS = ["what is two plus two", "please tell me a story", "how do I bake bread"]


def marker_rankings(n: int, seed: int) -> list[dict]:
    """Three responses per prompt; the one that mentions a fox is best, the other two tie for last."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b, c = rng.sample(PHRASES, 3)
        responses = [f"{a} fox", b, c]
        order = rng.sample(range(3), 3)
        shuffled = [responses[i] for i in order]
        best = order.index(0)
        rows.append({"prompt": rng.choice(QUESTIONS), "responses": shuffled,
                     "ranking": [best, [i for i in range(3) if i != best]]})
    return rows


def test_bradley_terry_loss_by_hand():
    rewards = torch.tensor([2.0, 0.0, 1.0, 0.5, 0.0])
    prompt = torch.tensor([0, 0, 0, 1, 1])
    group = torch.tensor([0, 1, 2, 0, 1])
    margin = torch.tensor([0.0, 1.0])
    nls = lambda x: -F.logsigmoid(torch.tensor(x))  # noqa: E731
    first = (nls(2.0) + nls(1.0) + nls(-1.0)) / 3  # pairs (0,1) (0,2) (1,2): the prompt's mean
    assert bradley_terry_loss(rewards, prompt, group) == pytest.approx(float((first + nls(0.5)) / 2))
    assert bradley_terry_loss(rewards, prompt, group, margin) == pytest.approx(float((first + nls(-0.5)) / 2))
    tied = torch.tensor([0, 1, 1, 0, 1])  # rows 1 and 2 tied: no pair between them
    assert bradley_terry_loss(rewards, prompt, tied) == pytest.approx(float(((nls(2.0) + nls(1.0)) / 2 + nls(0.5)) / 2))


def test_plackett_luce_loss_by_hand():
    r = torch.tensor([2.0, 0.0, 1.0])
    prompt = torch.zeros(3, dtype=torch.long)
    lse = lambda *xs: torch.logsumexp(torch.tensor(xs), 0)  # noqa: E731
    strict = -((2 - lse(2, 0, 1)) + (0 - lse(0, 1)) + 0)  # order 0 > 1 > 2
    assert plackett_luce_loss(r, prompt, torch.tensor([0, 1, 2])) == pytest.approx(float(strict))
    breslow = -((2 - lse(2, 0, 1)) + (0 - lse(0, 1)) + (1 - lse(0, 1)))  # 0 > [1, 2]
    assert plackett_luce_loss(r, prompt, torch.tensor([0, 1, 1])) == pytest.approx(float(breslow))
    two = plackett_luce_loss(torch.cat([r, torch.tensor([1.0, 3.0])]), torch.tensor([0, 0, 0, 1, 1]),
                             torch.tensor([0, 1, 2, 1, 0]))
    assert two == pytest.approx(float((strict - (3 - lse(1, 3))) / 2))  # mean over prompts


class _FixedRewards(torch.nn.Module):
    """A stand-in reward model: row i's reward is rewards[input_ids[i, 0]]."""

    def __init__(self, rewards: list[float]):
        super().__init__()
        self.rewards = torch.tensor(rewards)

    def forward(self, input_ids, attention_mask, use_cache=False):
        return SimpleNamespace(logits=self.rewards[input_ids[:, 0]][:, None])


def test_center_coef_penalizes_pair_sums_not_reward_size():
    """Issue 17.7: centering is the mean over pairs of (r_better + r_worse)^2 (TRL, Eisenstein et al.), not an
    L2 on the rewards: a pair (3, -3) is centred (penalty 0) although its rewards are large."""
    prompt, group = torch.tensor([0, 0]), torch.tensor([0, 1])
    assert centering_penalty(torch.tensor([3.0, -3.0]), prompt, group) == 0
    assert centering_penalty(torch.tensor([1.0, 2.0]), prompt, group) == pytest.approx(9.0)
    # prompt 1 ranks row 2 over tied rows 3 and 4: pairs (2, 3) -> (1 + 2)^2 = 9 and (2, 4) -> 1; prompts weigh alike
    rewards, prompts, groups = [3.0, -3.0, 1.0, 2.0, 0.0], [0, 0, 1, 1, 1], [0, 1, 0, 1, 1]
    assert centering_penalty(torch.tensor(rewards), torch.tensor(prompts), torch.tensor(groups)) == pytest.approx(2.5)
    # and the trainer adds exactly center_coef times it to the ranking loss
    trainer = object.__new__(RankingRewardTrainer)
    trainer.loss_kind, trainer.use_margin, trainer.train_tokens = "bradley_terry", False, 0
    trainer._metrics = defaultdict(lambda: defaultdict(list))
    model = _FixedRewards(rewards).eval()
    inputs = lambda: {"input_ids": torch.arange(5)[:, None], "attention_mask": torch.ones(5, 1, dtype=torch.long),  # noqa: E731
                      "prompt": torch.tensor(prompts), "group": torch.tensor(groups), "margin": torch.zeros(2)}
    losses = {}
    for coef in (0.0, 0.1):
        trainer.center_coef = coef
        losses[coef] = float(trainer.compute_loss(model, inputs()))
    assert losses[0.1] - losses[0.0] == pytest.approx(0.1 * 2.5)


def test_collator_scores_each_response_once_per_prompt():
    batch = RankingCollator(pad_token_id=0)([{"input_ids": [[5, 6], [7], [8, 9, 1]], "group": [1, 0, 1], "margin": 0.0},
                                             {"input_ids": [[2], [3]], "group": [0, 1], "margin": 1.5}])
    assert batch["input_ids"].shape == (5, 3)  # K rows per prompt, not two per pair
    assert batch["prompt"].tolist() == [0, 0, 0, 1, 1] and batch["group"].tolist() == [1, 0, 1, 0, 1]
    assert batch["margin"].tolist() == [0.0, 1.5] and batch["attention_mask"][1].tolist() == [1, 0, 0]


def test_rows_of_mixed_lengths_get_the_rewards_and_gradients_of_one_padded_forward(tiny_model_dir):
    model = load_model(ModelSpec(name=str(tiny_model_dir)), "reward")
    lengths = [40, 6, 38, 5, 7, 36]  # three short rows would be padded to 40 in one forward
    ids = torch.full((len(lengths), 40), model.config.pad_token_id)  # the reward is read before the first pad
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = torch.randint(3, 200, (n,), generator=torch.Generator().manual_seed(i)), 1
    forwards = []
    model.register_forward_hook(lambda module, args, kwargs, out: forwards.append(kwargs["input_ids"].shape),
                                with_kwargs=True)
    grads = []
    for rewards in (lambda: row_rewards(model, ids, mask),
                    lambda: model(input_ids=ids, attention_mask=mask, use_cache=False).logits.squeeze(-1)):
        model.zero_grad()
        r = rewards()
        (r * torch.arange(len(lengths))).sum().backward()  # a different weight per row: each row's gradient counts
        grads.append((r.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert forwards[:2] == [(3, 7), (3, 40)]  # the short rows at their own width
    (split, g_split), (one, g_one) = grads
    assert torch.allclose(split, one, atol=1e-5)
    assert all(torch.allclose(g_split[n], g_one[n], atol=1e-5, rtol=1e-4) for n in g_one)
    row_rewards(model, torch.ones(4, 5, dtype=torch.long), torch.ones(4, 5, dtype=torch.long))  # equal lengths
    assert forwards[-1] == (4, 5)


def test_trains_every_trainable_parameter_and_no_frozen_one(tiny_model_dir, tmp_path):
    spec = ModelSpec(name=str(tiny_model_dir))
    tok = load_tokenizer(spec)
    rows, _ = tokenize_rankings(read_rankings(str(write_jsonl(tmp_path / "r.jsonl", marker_rankings(8, 0)))), tok, 64)
    model = load_model(spec, "reward")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trainable) and any("lora_B" in n for n in trainable)
    args = RewardConfig(output_dir=str(tmp_path / "out"), max_steps=3, learning_rate=1e-2,
                        per_device_train_batch_size=4, report_to=[], use_cpu=True, bf16=False,
                        gradient_checkpointing=False, remove_unused_columns=False, save_strategy="no")
    RankingRewardTrainer("bradley_terry", True, 0.01, model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok).train()
    after = dict(model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed == trainable


@pytest.mark.parametrize("loss", ["bradley_terry", "plackett_luce"])
def test_tiny_rm_learns_a_marker_preference_through_the_pipeline(loss, tiny_model_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", marker_rankings(48, 1))
    evals = write_jsonl(tmp_path / "eval.jsonl", marker_rankings(16, 2))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: rm-test
model: {{name: {tiny_model_dir}, adapter: full}}
data: {{rankings: {{train: {train}, eval: {evals}}}}}
tracking: {{backend: none}}
output_dir: {tmp_path / "run"}
stages:
  - {{name: rm, kind: rm, loss: {loss}, learning_rate: 3.0e-3, max_steps: 36, batch_size: 4, max_length: 64,
      logging_steps: 4, warmup_ratio: 0.0, lr_scheduler: constant}}
""")
    metrics = run_pipeline(load_recipe(recipe))["rm"]
    assert set(metrics) <= set(STAGE_METRICS["rm"]), set(metrics) - set(STAGE_METRICS["rm"])  # what gates may name
    assert metrics["train_prompts"] == 48 and metrics["train_pairs"] == 96 and metrics["eval_pairs"] == 32
    assert metrics["pairwise_accuracy_after"] > 0.9, metrics
    assert metrics["top1_agreement_after"] > 0.9
    art = tmp_path / "run" / "rm"
    assert json.loads((art / "model.json").read_text())["head"] == "reward"
    # the saved artifact scores the held-out set as the trained model did
    spec = ModelSpec(name=str(tiny_model_dir), adapter="full")
    tok = load_tokenizer(spec)
    held_out = read_rankings(str(evals))
    rows, _ = tokenize_rankings(held_out, tok, 64)
    again = evaluate_rm(load_artifact(art, spec), rows, held_out, tok.pad_token_id, 16, "_after")
    assert again["pairwise_accuracy_after"] == pytest.approx(metrics["pairwise_accuracy_after"])
