"""Pretrain stage: continued pretraining on raw domain text, over TRL's `SFTTrainer`.

    align run recipes/continued-pretraining.yaml

Data: `data.text`, `{"text": ...}` records or .txt files of blank-line-separated paragraphs (`data.py`),
given to TRL as a language-modeling dataset: no chat template, the loss on every token. With `packing`
(the default) TRL appends EOS to each document, concatenates them and cuts the stream into max_length
rows ("wrapped" packing), as GPT-style pretraining does: no token is dropped or padded, and a row may
start mid-document. TRL's other strategies ("bfd", "bfd_split") keep documents apart only through
padding-free batches, which flatten a batch into one row of batch_size * max_length tokens; without
FlashAttention (CPU, SDPA) that row's attention is computed over a dense mask, batch_size times the work
of separate rows. Metrics: held-out loss and perplexity (exp of the loss) before and after, train loss.
"""

from __future__ import annotations

import logging
import math

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from align.data import load_split, parse_text
from align.distributed import gathered_state_dict
from align.models import load_model, load_tokenizer, save_model
from align.stages.common import StageContext, train_and_evaluate, trainer_args

log = logging.getLogger("align")


def run(ctx: StageContext) -> dict:
    """Train the recipe's model (or `init`'s artifact) on `data.text`; write the artifact and return metrics."""
    stage, spec = ctx.stage, ctx.recipe.model
    tok = load_tokenizer(spec)  # not ctx.tokenizer(): raw text needs no chat template, a base model has none
    train, evals = load_split(ctx.data, parse_text, ctx.seed)
    train_ds = Dataset.from_list(train)
    eval_ds = Dataset.from_list(evals) if evals else None
    metrics: dict = {"train_documents": len(train), "eval_documents": len(evals)}
    if not stage.packing:
        metrics["truncated"] = _too_long(tok, train, stage.max_length)
        if metrics["truncated"]:
            log.warning("%d of %d training documents are longer than max_length=%d and were truncated (packing: "
                        "true keeps every token)", metrics["truncated"], len(train), stage.max_length)

    model = load_model(spec, "causal_lm", init=ctx.init)
    args = trainer_args(SFTConfig, ctx, max_length=stage.max_length, packing=stage.packing,
                        packing_strategy="wrapped", dataset_text_field="text", completion_only_loss=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, callbacks=ctx.callbacks())
    metrics["train_rows"] = len(trainer.train_dataset)  # max_length rows after packing
    metrics["eval_rows"] = len(trainer.eval_dataset or [])
    train_and_evaluate(trainer, ctx, metrics)
    for when in ("before", "after"):  # exp of the mean per-token loss on the held-out rows
        if f"eval_loss_{when}" in metrics:
            metrics[f"perplexity_{when}"] = math.exp(metrics[f"eval_loss_{when}"])
    save_model(trainer.model, tok, ctx.out, spec, "causal_lm", ctx.init, gathered_state_dict(trainer))
    return metrics


def _too_long(tok, records: list[dict], max_length: int) -> int:
    """Documents that do not fit one max_length row with their EOS (only counted without packing)."""
    return sum(len(ids) + 1 > max_length for ids in tok([r["text"] for r in records])["input_ids"])
