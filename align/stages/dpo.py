"""DPO stage: direct preference optimization on ranked or pairwise data, over TRL's `DPOTrainer`.

    align run recipes/quickstart.yaml

Data: any form `align.rankings` reads; a K-wise ranking becomes (chosen, rejected) pairs by `pairs`
(best_vs_rest, adjacent or all; never between ties); pairwise and hh-rlhf records give their pair.

Reference: the model the stage starts from. With LoRA it is the same weights with the adapters
disabled (no second copy in memory); with full fine-tuning, a frozen copy of the starting model,
or nothing at all with `precompute_ref` (its log-probs computed once before training).

Losses by name (`loss`): TRL's, plus `cdpo`, which TRL 1.16 no longer offers; see `_loss_args`. With
`sft_weight`, the chosen answers' NLL is added (RPO).

Metrics: held-out loss, implicit-reward accuracy and margin (TRL's eval_rewards/*) on the pairs of the
first `eval_prompts` held-out records. What needs sampling (win rate, KL, samples) is measured by the
run's evaluation after the stage, as for every stage (`align.evaluation`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from align import console
from align.data import cached_tokens, load_split, mix_in
from align.distributed import gathered_state_dict
from align.errors import AlignError
from align.models import load_model, save_model
from align.rankings import Ranking, parse_ranking, to_pairs
from align.stages.common import StageContext, drop_reference_adapter, trainer_args

log = logging.getLogger("align")


def run(ctx: StageContext) -> dict:
    stage, spec = ctx.stage, ctx.recipe.model
    tok = ctx.tokenizer()
    train, evals = load_split(ctx.data, parse_ranking, ctx.seed)
    train, mixed = mix_in(train, stage.mix, parse_ranking, ctx.seed)
    evals = evals[:stage.eval_prompts]
    train_ds, eval_ds = preference_pairs(train, stage.pairs), preference_pairs(evals, stage.pairs)
    if not len(train_ds):
        raise AlignError(f"{ctx.data.train}: no preference pairs (every ranking is a single tie)",
                         hint="rankings need at least two groups to give a chosen and a rejected response")

    model = load_model(spec, "causal_lm", init=ctx.init)
    full = not hasattr(model, "peft_config")
    ref = load_model(spec, "causal_lm", init=ctx.init, trainable=False) if full and not stage.precompute_ref \
        else None
    args = trainer_args(DPOConfig, ctx, max_length=stage.max_length, beta=stage.beta,
                        precompute_ref_log_probs=stage.precompute_ref, precompute_ref_batch_size=stage.eval_batch_size,
                        **_loss_args(stage.loss, stage.label_smoothing, stage.sft_weight))
    trainer = CachedDPOTrainer(model=model, ref_model=ref, args=args, train_dataset=train_ds,
                         eval_dataset=eval_ds if len(eval_ds) else None, processing_class=tok,
                         callbacks=ctx.callbacks())
    drop_reference_adapter(trainer.model)
    metrics: dict[str, Any] = {"train_prompts": len(train), "train_pairs": len(train_ds), "mixed_in": mixed,
                               "eval_prompts": len(evals), "eval_pairs": len(eval_ds)}
    ctx.train(trainer, metrics)  # tokens: TRL's count of chosen + rejected, without padding
    if len(eval_ds):
        with console.step(f"{ctx.stage.name}: held-out reward accuracy, {len(eval_ds)} pairs"):
            scores = trainer.evaluate()
        metrics |= {"eval_loss": scores["eval_loss"], "reward_accuracy_after": scores["eval_rewards/accuracies"],
                    "reward_margin_after": scores["eval_rewards/margins"]}
    save_model(trainer.model, tok, ctx.out, spec, "causal_lm", ctx.init, gathered_state_dict(trainer))
    return metrics


class CachedDPOTrainer(DPOTrainer):
    """TRL's `DPOTrainer`, its tokenization (a per-example `datasets.map`) kept in the tokenization cache, and
    its pair metrics weighed by pairs: TRL logs the plain mean of per-batch means, so a short last batch (15
    held-out pairs in batches of 8 and 7) weighs as much as a full one and the accuracy is not k/15."""

    _PER_PAIR = ("rewards/", "logps/", "logits/")  # TRL's metrics that are means over a batch's pairs

    def __init__(self, *args: Any, **kwargs: Any):
        self._pairs: dict[str, list[int]] = {"train": [], "eval": []}  # each logged batch's pairs, all ranks
        super().__init__(*args, **kwargs)

    def _compute_loss(self, model, inputs, return_outputs):
        out = super()._compute_loss(model, inputs, return_outputs)
        pairs = torch.tensor([len(inputs["input_ids"]) // 2], device=self.accelerator.device)  # chosen + rejected
        self._pairs["train" if self.model.training else "eval"].append(int(self.accelerator.gather(pairs).sum()))
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        weights = self._pairs[mode]
        for key, values in self._metrics[mode].items():
            if key.startswith(self._PER_PAIR) and len(values) == len(weights) and sum(weights):
                self._metrics[mode][key] = [sum(v * w for v, w in zip(values, weights)) / sum(weights)]
        weights.clear()
        super().log(logs, start_time)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        def build() -> tuple[Dataset, dict]:
            return DPOTrainer._prepare_dataset(self, dataset, processing_class, args, dataset_name), {}

        key = [dataset.to_list(), args.max_length, args.truncation_mode]
        return cached_tokens("dpo", key, processing_class, build, f"the {dataset_name} set, {len(dataset)} pairs")[0]


def preference_pairs(rankings: list[Ranking], mode: str) -> Dataset:
    """TRL's conversational preference records: prompt messages, then the chosen and the rejected reply."""
    rows = [{"prompt": r.prompt, "chosen": [{"role": "assistant", "content": r.responses[a]}],
             "rejected": [{"role": "assistant", "content": r.responses[b]}]}
            for r in rankings for a, b in to_pairs(r, mode)]
    return Dataset.from_list(rows) if rows else Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})


def _loss_args(loss: str, label_smoothing: float, sft_weight: float = 0.0) -> dict[str, Any]:
    """DPOConfig arguments for a loss name, plus `sft_weight` times TRL's 'sft' loss (the chosen answers'
    mean token NLL: RPO) when it is set.

    cdpo (conservative DPO, Mitchell 2023) is (1-e) * A + e * B with A = -log sigmoid(beta*delta),
    B = -log sigmoid(-beta*delta). TRL 1.16 dropped it, but its weighted multi-loss reaches it exactly:
    robust at smoothing 1/4 is (3/4 A - 1/4 B) / (1/2) = 1.5 A - 0.5 B, so
    (1 + 2e) * sigmoid - 2e * robust(1/4) = (1 + 2e - 3e) A + e B = (1 - e) A + e B.
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise AlignError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss == "cdpo":
        args = {"loss_type": ["sigmoid", "robust"], "loss_weights": [1 + 2 * label_smoothing, -2 * label_smoothing],
                "label_smoothing": 0.25}
    else:
        args = {"loss_type": [loss], "loss_weights": [1.0], "label_smoothing": label_smoothing}
    if sft_weight > 0:
        args["loss_type"] = [*args["loss_type"], "sft"]
        args["loss_weights"] = [*args["loss_weights"], sft_weight]
    return args
