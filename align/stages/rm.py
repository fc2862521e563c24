"""RM stage: a reward model trained on human rankings (K-wise or pairwise), over TRL's `RewardTrainer`.

    align run recipes/quickstart.yaml

Data: any form `align.rankings` reads. A ranking of K responses gives K(K-1)/2 (better, worse) pairs,
none between ties. A batch is `batch_size` PROMPTS: each brings its K responses, scored once each
(K forward rows, not two per pair), and all its pairs, so a prompt counts once whatever its K
(InstructGPT: loss per prompt = mean over its pairs, then mean over prompts).

Built on TRL's `RewardTrainer` (subclassed), which keeps its model checks, pad-token setup, dropout
removal and metric logging; what changes is the unit of a batch: TRL's collator puts one chosen and
one rejected row per example, so this module supplies a per-prompt collator, skips TRL's pairwise
tokenization (`_prepare_dataset`) and overrides `compute_loss` (Bradley-Terry over all pairs of each
prompt, or Plackett-Luce over the whole ranking), plus `center_coef` times the reward-centering penalty
(mean of (r_better + r_worse)^2 over the pairs, as TRL's `center_rewards_coefficient`).

Tokenization: prompt + response through the chat template, truncated to `max_length` from the LEFT,
because the reward is read at the last token: cutting the end would cut the response (counted).
Metrics: held-out pairwise accuracy, top-1 agreement, calibration error (ECE) and reward mean/std,
before and after training (`align.evaluation`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers.modeling_outputs import SequenceClassifierOutputWithPast
from trl import RewardConfig, RewardTrainer
from trl.trainer.utils import pad

from align.data import cached_tokens, load_split
from align.distributed import gathered_state_dict
from align.errors import AlignError
from align.generation import score_rankings
from align.metrics import ranking_metrics
from align.models import load_model, save_model
from align.rankings import Ranking, expand_pairs, parse_ranking, tokenize_rankings
from align.recipe import parse_part
from align.runs import content_hash
from align.stages.common import StageContext, trainer_args

log = logging.getLogger("align")


def run(ctx: StageContext) -> dict:
    stage, spec = ctx.stage, ctx.recipe.model
    tok = ctx.tokenizer()
    train, evals = load_split(ctx.data, parse_ranking, ctx.seed)
    train = prompt_part(train, stage.part)
    train_ds, truncated = tokenized(train, tok, stage.max_length)
    eval_ds, eval_truncated = tokenized(evals, tok, stage.max_length)
    eval_rows = eval_ds.to_list()
    if truncated:
        log.warning("%d training responses are longer than max_length=%d and lost their start",
                    truncated, stage.max_length)
    model = load_model(spec, "reward", init=ctx.init)
    args = trainer_args(RewardConfig, ctx, max_length=stage.max_length, remove_unused_columns=False)
    trainer = RankingRewardTrainer(stage.loss, stage.margin, stage.center_coef, model=model, args=args,
                                   train_dataset=train_ds, processing_class=tok,
                                   callbacks=ctx.callbacks())
    metrics: dict[str, Any] = {
        "train_prompts": len(train), "train_responses": sum(len(r.responses) for r in train),
        "train_pairs": sum(len(expand_pairs(r)) for r in train), "truncated": truncated,
        "eval_prompts": len(evals), "eval_pairs": sum(len(expand_pairs(r)) for r in evals),
        "eval_truncated": eval_truncated}
    if evals and stage.eval_before:
        metrics |= evaluate_rm(trainer.model, eval_rows, evals, tok.pad_token_id, stage.eval_batch_size, "_before")
    ctx.train(trainer, metrics, lambda: trainer.train_tokens)
    if evals:
        metrics |= evaluate_rm(trainer.model, eval_rows, evals, tok.pad_token_id, stage.eval_batch_size, "_after")
    save_model(trainer.model, tok, ctx.out, spec, "reward", ctx.init, gathered_state_dict(trainer))
    return metrics


def tokenized(rankings: list[Ranking], tok: Any, max_length: int) -> tuple[Dataset, int]:
    """`tokenize_rankings` as a dataset, through the tokenization cache; and how many responses were cut."""
    def build() -> tuple[Dataset, dict]:
        rows, truncated = tokenize_rankings(rankings, tok, max_length)
        return Dataset.from_list(rows), {"truncated": truncated}

    if not rankings:
        return Dataset.from_list([]), 0
    data, counts = cached_tokens("rm", [rankings, max_length], tok, build, f"{len(rankings)} rankings")
    return data, counts["truncated"]


@dataclass
class RankingCollator:
    """Prompts -> one padded batch of all their responses, with each row's prompt and group."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [torch.tensor(ids) for ex in examples for ids in ex["input_ids"]]
        return {
            "input_ids": pad(rows, padding_value=self.pad_token_id, padding_side="right"),
            "attention_mask": pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="right"),
            "prompt": torch.tensor([p for p, ex in enumerate(examples) for _ in ex["input_ids"]]),
            "group": torch.tensor([g for ex in examples for g in ex["group"]]),
            "margin": torch.tensor([ex["margin"] for ex in examples], dtype=torch.float),
        }


def batch_pairs(prompt: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (better, worse) of every ranked pair in a batch: same prompt, better group."""
    better = (prompt[:, None] == prompt[None, :]) & (group[:, None] < group[None, :])
    return better.nonzero(as_tuple=True)


def bradley_terry_loss(rewards: torch.Tensor, prompt: torch.Tensor, group: torch.Tensor,
                       margin: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over prompts of the mean over each prompt's (better, worse) pairs of
    -log sigmoid(r_better - r_worse - margin[prompt]); rows are responses, `group` 0 = best."""
    w, lo = batch_pairs(prompt, group)
    diff = rewards[w] - rewards[lo] - (margin[prompt[w]] if margin is not None else 0.0)
    return _prompt_mean(-F.logsigmoid(diff), prompt, w)


def centering_penalty(rewards: torch.Tensor, prompt: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Reward centering (Eisenstein et al. 2023; TRL's `center_rewards_coefficient`): the mean over each
    prompt's (better, worse) pairs of (r_better + r_worse)^2, then over prompts, as the Bradley-Terry loss
    weighs them. Zero when each pair's rewards sum to 0, whatever their margin: it pins the scores' offset,
    which the ranking losses leave free, without shrinking their differences (an L2 on rewards would)."""
    w, lo = batch_pairs(prompt, group)
    return _prompt_mean((rewards[w] + rewards[lo]).pow(2), prompt, w)


def _prompt_mean(per_pair: torch.Tensor, prompt: torch.Tensor, better: torch.Tensor) -> torch.Tensor:
    """Mean over prompts (those with at least one pair) of the mean of their pairs' values."""
    p, n = prompt[better], int(prompt.max()) + 1
    sums = per_pair.new_zeros(n).index_add(0, p, per_pair)
    counts = per_pair.new_zeros(n).index_add(0, p, torch.ones_like(per_pair))
    has_pairs = counts > 0
    return (sums[has_pairs] / counts[has_pairs]).mean()


def plackett_luce_loss(rewards: torch.Tensor, prompt: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean over prompts of -sum_i [r_i - logsumexp(r_j over responses j not placed before i)].

    Ties use Breslow's approximation (as for tied event times in Cox regression): each member of a tied
    group is placed against everything not yet placed, its group-mates included, so the loss does not
    depend on an order inside the tie. A strict ranking's last response adds 0.
    """
    losses = []
    for p in prompt.unique():
        r, g = rewards[prompt == p], group[prompt == p]
        remaining = g[None, :] >= g[:, None]  # [i, j]: j is not placed before i
        lse = torch.logsumexp(r[None, :].masked_fill(~remaining, float("-inf")), dim=1)
        losses.append(-(r - lse).sum())
    return torch.stack(losses).mean()


class RankingRewardTrainer(RewardTrainer):
    """`RewardTrainer` whose examples are whole rankings (one per prompt) instead of chosen/rejected pairs."""

    def __init__(self, loss: str, use_margin: bool, center_coef: float, **kwargs: Any):
        self.loss_kind, self.use_margin, self.center_coef = loss, use_margin, center_coef
        self.train_tokens = 0
        kwargs.setdefault("data_collator", RankingCollator(kwargs["processing_class"].pad_token_id))
        super().__init__(**kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # already tokenized per prompt by tokenize_rankings

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        prompt, group, margin = inputs.pop("prompt"), inputs.pop("group"), inputs.pop("margin")
        rewards = row_rewards(model, inputs["input_ids"], inputs["attention_mask"])
        if self.loss_kind == "plackett_luce":
            loss = plackett_luce_loss(rewards, prompt, group)
        else:
            loss = bradley_terry_loss(rewards, prompt, group, margin if self.use_margin else None)
        if self.center_coef:
            loss = loss + self.center_coef * centering_penalty(rewards, prompt, group)
        if mode == "train":
            # every rank's tokens (a no-op gather in one process), so the count does not depend on the GPUs
            self.train_tokens += int(self.accelerator.gather(inputs["attention_mask"].sum()).sum())
        with torch.no_grad():
            w, lo = batch_pairs(prompt, group)
            self._metrics[mode]["accuracy"].append((rewards[w] > rewards[lo]).float().mean().item())
            self._metrics[mode]["mean_reward"].append(rewards.mean().item())
            self._metrics[mode]["num_tokens"] = [self.train_tokens]
        return (loss, SequenceClassifierOutputWithPast(logits=rewards[:, None])) if return_outputs else loss


def row_rewards(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's reward; from two forwards when that computes at least 10% fewer padded positions than one:
    the rows (right-padded) sorted by length and cut where the short part is narrowest for its rows. A row's
    reward does not depend on the padding after it, so the loss and gradients are those of one forward.
    Under DDP one forward: its gradient hooks allow one forward per backward."""
    lengths = attention_mask.sum(1)
    order = lengths.argsort(stable=True)
    n, widths = len(order), lengths[order]
    cost = torch.arange(1, n + 1) * widths + torch.arange(n - 1, -1, -1) * widths[-1]  # cut after row i
    cut = int(cost.argmin()) + 1
    if cost[cut - 1] > 0.9 * n * widths[-1] or isinstance(model, torch.nn.parallel.DistributedDataParallel):
        cut = n
    rewards = []
    for idx in (order[:cut], order[cut:]):
        if len(idx):
            width = int(lengths[idx].max())
            out = model(input_ids=input_ids[idx, :width], attention_mask=attention_mask[idx, :width], use_cache=False)
            rewards.append(out.logits.squeeze(-1))
    return torch.cat(rewards)[order.argsort()]


def evaluate_rm(model: Any, rows: list[dict], rankings: list[Ranking], pad_token_id: int, batch_size: int,
                suffix: str = "") -> dict[str, float]:
    """`align.evaluation.ranking_metrics` of the model's scores on tokenized held-out rankings."""
    scores = score_rankings(model, rows, batch_size, pad_token_id)
    return {k + suffix: v for k, v in ranking_metrics(scores, [r.ranking for r in rankings]).items()}


def prompt_part(rankings: list[Ranking], part: str | None) -> list[Ranking]:
    """The rankings of part i of n ('i/n'): those whose prompt hashes to i - 1 modulo n. Parts of one file are
    disjoint and cover it, whatever the seed, so two rm stages with parts 1/2 and 2/2 never share a prompt."""
    if part is None:
        return rankings
    i, n = parse_part(part)
    out = [r for r in rankings if int(content_hash(r.prompt), 16) % n == i - 1]
    if not out:
        raise AlignError(f"rm part {part}: none of the {len(rankings)} training rankings falls in this part",
                         hint="use fewer parts, or more rankings")
    return out
