"""What every stage shares: the context a stage runs in and the TRL/transformers arguments it implies."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from align.distributed import failure_callbacks, is_main
from align.errors import AlignError
from align.recipe import data_kind, reward_stage
from align.schema import DataSpec, Recipe, StageBase
from align.tracking import Tracker


@dataclass
class StageContext:
    recipe: Recipe
    stage: StageBase
    out: Path  # the artifact folder being written (renamed into place by the pipeline when complete)
    init: Path | None  # artifact of the stage named by `init`; None = the recipe's base model
    tracker: Tracker
    resume: str | None = None  # checkpoint of an interrupted run of this stage to continue from

    def callbacks(self) -> list[TrainerCallback]:
        return [self.tracker.callback(), NanGuard(self.stage.name), *failure_callbacks()]

    @property
    def data(self) -> DataSpec:
        return self.stage.data or getattr(self.recipe.data, data_kind(self.stage.kind))

    def tokenizer(self) -> Any:
        """The recipe model's tokenizer, checked to have a chat template (every stage renders chats)."""
        from align.models import load_tokenizer, require_chat_template

        tok = load_tokenizer(self.recipe.model)
        require_chat_template(tok, self.recipe.model)
        return tok

    def reward_model(self) -> Path | None:
        """The artifact of the rm stage that scores and judges this stage: the one its `reward_model` field
        names, else the last rm stage before it in the recipe; None when the recipe has none."""
        name = reward_stage(self.recipe, self.stage)
        return self.out.parent / name if name else None

    def samples(self, table: list[dict[str, Any]]) -> None:
        """A stage's sample generations: `samples.jsonl` in its artifact (the report reads it) and the tracker."""
        if is_main():
            (self.out / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in table))
        self.tracker.table("samples", table)

    @property
    def seed(self) -> int:
        return self.recipe.seed if self.stage.seed is None else self.stage.seed


def trainer_args(cls: type, ctx: StageContext, **extra: Any) -> Any:
    """A TRL config (`SFTConfig`, ...) from the stage's common fields, with settings chosen for the device.

    TRL defaults to bf16 autocast and gradient checkpointing even on CPU; measured here, both cost
    throughput on small models. The loader decides checkpointing; autocast only on a bf16 GPU model.
    """
    s = ctx.stage
    cuda = torch.cuda.is_available()
    return cls(
        output_dir=str(ctx.out / "checkpoints"),
        learning_rate=s.learning_rate,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.eval_batch_size,
        gradient_accumulation_steps=s.grad_accum,
        warmup_steps=s.warmup_ratio,
        lr_scheduler_type=s.lr_scheduler,
        weight_decay=s.weight_decay,
        max_grad_norm=s.max_grad_norm,
        logging_steps=s.logging_steps,
        seed=ctx.seed,
        data_seed=ctx.seed,
        report_to=[],
        save_strategy="steps" if s.save_steps > 0 else "no",
        save_steps=s.save_steps or 500,
        save_total_limit=1,  # the latest checkpoint is the resume point; older ones only cost disk
        eval_strategy="no",
        bf16=cuda and ctx.recipe.model.dtype in ("auto", "bfloat16") and torch.cuda.is_bf16_supported(),
        gradient_checkpointing=False,
        use_cpu=not cuda,
        **extra,
    )


class NanGuard(TrainerCallback):
    """Stops training at the first non-finite loss or gradient norm, instead of training on garbage."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise AlignError(f"stage {self.stage}: training {key} became {value} at step {state.global_step}",
                                 hint="lower learning_rate, check the data for empty or broken examples, "
                                      "or train in float32; earlier stages are kept")
