"""What every stage shares: the context a stage runs in, the TRL/transformers arguments it implies, and the
training loop's loss-type metrics. Stages train and save; whatever samples (win rate, KL, samples) is the
run's evaluation (`align.evaluation`), measured by the pipeline after the stage."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from align import console
from align.checkpoints import StageProgress
from align.distributed import device, failure_callbacks, world_size
from align.errors import AlignError
from align.models import default_dtype
from align.recipe import data_kind, reward_stage
from align.schema import DataSpec, Recipe, StageBase
from align.tracking import Tracker

log = logging.getLogger("align")


@dataclass
class StageContext:
    recipe: Recipe
    stage: StageBase
    out: Path  # the artifact folder being written (renamed into place by the pipeline when complete)
    init: Path | None  # artifact of the stage named by `init`; None = the recipe's base model
    tracker: Tracker
    resume: str | None = None  # checkpoint of an interrupted run of this stage to continue from
    progress: StageProgress = field(init=False)  # training totals, saved with checkpoints, resumed with them

    def __post_init__(self) -> None:
        self.progress = StageProgress.resuming(self.resume)

    def callbacks(self) -> list[TrainerCallback]:
        return [self.tracker.callback(), NanGuard(self.stage.name), self.progress, TrainingBar(self.stage.name),
                *failure_callbacks()]

    def train(self, trainer: Any, metrics: dict[str, Any], tokens: Any = None) -> dict[str, Any]:
        """Train `trainer` (resuming the checkpoint if any) and add the stage's train loss, seconds and tokens,
        over every part of a resumed stage. `tokens()`: this attempt's count (default: TRL's num_tokens)."""
        console.quiet_trainer(trainer)
        start = time.perf_counter()
        with console.step(f"{self.stage.name}: training"):
            result = trainer.train(resume_from_checkpoint=self.resume)
        count = tokens() if tokens else (self.progress.tokens or None)
        metrics |= self.progress.whole(trainer.state.global_step, result.training_loss, time.perf_counter() - start,
                                       count)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if losses:
            metrics["train_loss_first"], metrics["train_loss_last"] = losses[0], losses[-1]
        return metrics

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
        """The artifact of the rm stage whose scores this stage learns from: the one its `reward_model` field
        names, else the last rm stage before it in the recipe; None when the recipe has none."""
        name = reward_stage(self.recipe, self.stage)
        return self.out.parent / name if name else None

    def required_reward_model(self) -> Path:
        """`reward_model()` for a stage that cannot run without one (ppo, rloo, grpo)."""
        path = self.reward_model()
        if path is None:
            kind = self.stage.kind
            raise AlignError(f"stage {self.stage.name}: {kind.upper()} needs a reward model, and the recipe has no "
                             "rm stage before it",
                             hint=f"add an rm stage before the {kind} stage (see recipes/quickstart-ppo.yaml)")
        return path

    @property
    def seed(self) -> int:
        return self.recipe.seed if self.stage.seed is None else self.stage.seed


def trainer_args(cls: type, ctx: StageContext, **extra: Any) -> Any:
    """A TRL config (`SFTConfig`, ...) from the stage's common fields, with settings chosen for the device;
    `extra` adds the config's own fields or replaces derived ones (rloo/grpo count max_steps otherwise).

    TRL defaults to bf16 autocast and gradient checkpointing even on CPU; measured here, both cost
    throughput on small models. The loader decides checkpointing; autocast only on a bf16 GPU model.
    """
    s, cpu = ctx.stage, device().type == "cpu"
    settings = dict(
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
        bf16=not cpu and default_dtype(ctx.recipe.model) == torch.bfloat16,  # the loader's dtype decision
        gradient_checkpointing=False,
        use_cpu=cpu,
    ) | console.trainer_settings()
    return cls(**(settings | extra))


def train_and_evaluate(trainer: Any, ctx: StageContext, metrics: dict[str, Any]) -> dict[str, Any]:
    """Train a TRL/transformers trainer and add to `metrics` what the stage reports: held-out loss before
    (with `eval_before`) and after when the trainer has an eval set, train loss (mean, first and last
    logged), seconds, and the tokens trained on (TRL's count of non-padding tokens) per second."""
    console.quiet_trainer(trainer)
    if trainer.eval_dataset is not None and ctx.stage.eval_before:
        with console.step(f"{ctx.stage.name}: held-out loss before training, {len(trainer.eval_dataset)} examples"):
            metrics["eval_loss_before"] = trainer.evaluate()["eval_loss"]
    ctx.train(trainer, metrics)
    if trainer.eval_dataset is not None:
        with console.step(f"{ctx.stage.name}: held-out loss after training, {len(trainer.eval_dataset)} examples"):
            metrics["eval_loss_after"] = trainer.evaluate()["eval_loss"]
    return metrics


def minibatches_per_step(stage: Any) -> int:
    """Minibatches each process trains on per rollout batch of an on-policy stage (ppo, rloo, grpo): the
    global `rollout_batch_size` split over the processes into whole minibatches of batch_size * grad_accum
    (and, for rloo/grpo, whole groups of num_generations answers); an error otherwise. The recipe validator
    checks the same for one process; only here is the number of processes known."""
    per_update = stage.batch_size * stage.grad_accum * world_size()
    groups = getattr(stage, "num_generations", 1)
    if stage.rollout_batch_size % per_update or stage.rollout_batch_size % groups:
        raise AlignError(f"stage {stage.name}: rollout_batch_size={stage.rollout_batch_size} is not a multiple of "
                         f"batch_size * grad_accum * processes = {per_update}" +
                         (f" and of num_generations = {groups}" if groups > 1 else ""))
    return stage.rollout_batch_size // per_update


def rm_reward(rm: Any, tok: Any, max_length: int, batch_size: int) -> Callable[..., list[float]]:
    """The reward model as the reward of an on-policy stage: its score of each prompt + answer, rendered as in
    its training data (`generation.score_completions`). Answers come as `generation.Completion`s (ppo) or as
    TRL's conversational [{"role": "assistant", "content": text}] (rloo, grpo: TRL logs the function by its
    name, as rewards/reward_model/*)."""
    from align.generation import Completion, score_completions

    def reward_model(prompts: Sequence[list[dict]], completions: Sequence[Any], **_: Any) -> list[float]:
        texts = [c.text if isinstance(c, Completion) else c[-1]["content"] for c in completions]
        return score_completions(rm, tok, prompts, texts, max_length, batch_size)
    return reward_model


def drop_reference_adapter(model: Any) -> None:
    """Given a PEFT model, TRL keeps a frozen copy of its adapter ("ref") as the reference, for adapters
    that were trained before. Ours is new (LoRA B = 0), so the reference is the model with adapters
    disabled, and the reference pass computes no LoRA branch."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")


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


class TrainingBar(TrainerCallback):
    """The console's bar for a Trainer's training: steps, ETA, the last logged loss and tokens per second (TRL's
    `num_tokens` count). Held-out evaluation shows as its batches. On the main process, on a terminal, not verbose
    (the Trainer's own bar is back then)."""

    def __init__(self, stage: str):
        self.stage, self.bar, self.start, self.tokens, self.batches = stage, None, 0.0, None, 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and console.bars_on() and not console.VERBOSE:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=f"{self.stage}: training",
                            unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)
            console.hold(self.bar)  # closed with its step, also when training stops on an error
            self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if self.bar is None or "loss" not in logs:
            return
        shown = {"loss": f"{logs['loss']:.4g}"}
        count = logs.get("num_tokens")
        if isinstance(count, (int, float)):
            if self.tokens is None:  # from the start; a resumed run counts from its first log
                self.tokens = (0, self.start) if self.bar.initial == 0 else (count, time.perf_counter())
            seconds = time.perf_counter() - self.tokens[1]
            if seconds > 0 and count > self.tokens[0]:
                shown["tokens/s"] = f"{(count - self.tokens[0]) / seconds:.0f}"
        self.bar.set_postfix(shown)  # drawn now: a short run may end before the next refresh

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if state.is_world_process_zero and eval_dataloader is not None and not console.VERBOSE:
            self.batches += 1
            console.progress(self.batches, len(eval_dataloader), "batches")

    def on_evaluate(self, args, state, control, **kwargs):
        self.batches = 0

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            console.close_bar()
            self.bar = None
