"""SFT stage: supervised fine-tuning on chat data, over TRL's `SFTTrainer`.

    align run recipes/quickstart.yaml

Data: chat `messages` or `prompt`/`completion` records (`data.py`). Loss on assistant tokens only by
default (every other token carries label -100), truncation to `max_length` with a count of what was
cut, optional packing. Metrics: train loss, held-out loss before and after.
"""

from __future__ import annotations

import logging

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from align.data import load_split, mix_in, parse_chat, tokenize_chat
from align.distributed import gathered_state_dict
from align.errors import AlignError
from align.models import load_model, save_model
from align.stages.common import StageContext, train_and_evaluate, trainer_args

log = logging.getLogger("align")


def run(ctx: StageContext) -> dict:
    stage, spec = ctx.stage, ctx.recipe.model
    tok = ctx.tokenizer()
    train, evals = load_split(ctx.data, parse_chat, ctx.seed)
    train, mixed = mix_in(train, stage.mix, parse_chat, ctx.seed)
    train_ds, stats = _tokenize(train, tok, stage.max_length, stage.assistant_only_loss, ctx.data.train)
    eval_ds, _ = _tokenize(evals, tok, stage.max_length, stage.assistant_only_loss, ctx.data.eval) \
        if evals else (None, {})
    if eval_ds is not None:  # similar lengths batch together: less padding to compute on
        eval_ds = eval_ds.map(lambda row: {"n": len(row["input_ids"])}).sort("n").remove_columns("n")
    if stats["truncated"]:
        log.warning("%d of %d training examples are longer than max_length=%d and were truncated",
                    stats["truncated"], len(train), stage.max_length)

    model = load_model(spec, "causal_lm", init=ctx.init)
    args = trainer_args(SFTConfig, ctx, max_length=stage.max_length, packing=stage.packing,
                        padding_free=stage.packing)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, callbacks=ctx.callbacks())
    metrics = {"train_examples": len(train_ds), "train_rows": len(trainer.train_dataset),  # rows: after packing
               "eval_examples": len(eval_ds or []), "mixed_in": mixed, **stats}
    train_and_evaluate(trainer, ctx, metrics)
    save_model(trainer.model, tok, ctx.out, spec, "causal_lm", ctx.init, gathered_state_dict(trainer))
    return metrics


def _tokenize(records: list[dict], tok, max_length: int, assistant_only: bool,
              source: str = "data") -> tuple[Dataset, dict]:
    """Pre-tokenize with assistant masks (TRL then builds labels, truncates and drops empty examples)."""
    rows, truncated, emptied = [], 0, 0
    for rec in records:
        row = tokenize_chat(tok, rec["messages"])
        if not assistant_only:
            row.pop("assistant_masks")
        elif 1 not in row["assistant_masks"][:max_length]:
            emptied += 1  # the prompt alone fills max_length: no token left to learn from
            continue
        truncated += len(row["input_ids"]) > max_length
        rows.append(row)
    if not rows:
        raise AlignError(f"{source}: every example's assistant reply starts after max_length={max_length} tokens",
                         hint="raise the stage's max_length")
    return Dataset.from_list(rows), {"truncated": truncated, "dropped_too_long": emptied}
