"""What the rloo and grpo stages share: TRL's group-relative trainers (`RLOOTrainer`, `GRPOTrainer`) on the
recipe's policy, rewarded by an rm stage's model (and, like every stage, measured by the run's evaluation after it).

    align run recipes/compare-on-policy.yaml

Models: the policy is the init stage's model with a new LoRA adapter (`align.models.load_model`, as every
stage loads it). The reference is the same weights with the adapter disabled: TRL's choice for a PEFT
model, once the "ref" copy TRL makes of an adapter is dropped (ours starts at B = 0, so the copy equals the
disabled adapter and would only cost a LoRA pass). With `adapter: full` TRL loads a frozen copy of the
starting weights (from the path they were loaded from); with beta 0 there is no reference pass at all.

Reward: the rm stage's model wrapped as a TRL reward function `(prompts, completions, **kw) -> scores`
rather than handed to TRL as a model. TRL would score a model itself, but on the untruncated chat, the
whole generation batch in one forward pass; the callable scores exactly as ppo's rollouts and every win
rate are scored (`generation.score_completions`: the chat rendered as in the RM's training data,
left-truncated to `max_length`, batched by length in `eval_batch_size`), so the three stages chase the
same numbers the evaluation reports. It also lets tests train against a synthetic reward.

Units: a step is one rollout batch, as in ppo: `rollout_batch_size` answers (rollout_batch_size /
num_generations prompts, num_generations each) sampled and scored, then `num_iterations` passes of
updates over minibatches of batch_size * grad_accum answers. TRL counts optimizer steps: max_steps is
converted (`_updates_per_step`); `logging_steps` and `save_steps` stay TRL's optimizer steps. Prompts
longer than `generation.max_prompt_length` tokens are left out (TRL does not truncate prompts).
Per-step statistics (reward, kl, entropy, clip ratios, answer lengths) go to the tracker as TRL logs them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from datasets import Dataset

from align import distributed
from align.data import load_split, parse_prompt
from align.errors import AlignError
from align.generation import prompt_ids, sampling_only
from align.models import load_artifact, load_model, save_model
from align.stages.common import (
    StageContext,
    drop_reference_adapter,
    minibatches_per_step,
    rm_reward,
    train_and_evaluate,
    trainer_args,
)

log = logging.getLogger("align")
RewardFunc = Callable[..., list[float]]


def run_group_stage(ctx: StageContext, trainer_cls: type, config_cls: type, **algorithm: Any) -> dict[str, Any]:
    """Train the init policy with `trainer_cls` against the rm stage's scores, save it, evaluate it as ppo is.

    `algorithm`: the trainer's own config fields (beta, loss_type, ...), passed through to `config_cls`."""
    stage, spec = ctx.stage, ctx.recipe.model
    rm_path = ctx.required_reward_model()
    tok = ctx.tokenizer()
    train, _ = load_split(ctx.data, parse_prompt, ctx.seed)  # the held-out prompts are the evaluation's
    prompts, dropped = fitting_prompts(tok, [r["prompt"] for r in train], stage.generation.max_prompt_length)
    rm = load_artifact(rm_path, spec)
    policy = load_model(spec, "causal_lm", init=ctx.init)
    metrics: dict[str, Any] = {"train_prompts": len(prompts), "dropped_long_prompts": dropped}
    with sampling_only(policy):  # TRL samples with model.generate: none of the model's own sampling knobs
        trainer = group_trainer(ctx, trainer_cls, config_cls, policy, tok, prompts,
                                rm_reward(rm, tok, stage.max_length, stage.eval_batch_size), **algorithm)
        rm.to(trainer.accelerator.device)  # scores where the policy samples
        train_and_evaluate(trainer, ctx, metrics)
    metrics |= summarize(trainer.state.log_history, stage.kind, trainer.state.global_step,
                         _updates_per_step(stage))
    save_model(trainer.model, tok, ctx.out, spec, "causal_lm", ctx.init, distributed.gathered_state_dict(trainer))
    return metrics


def group_trainer(ctx: StageContext, trainer_cls: type, config_cls: type, policy: Any, tok: Any,
                  prompts: Sequence[list[dict]], reward: RewardFunc, **algorithm: Any) -> Any:
    """The TRL trainer for the stage: its config from the stage's fields, the reference = adapters disabled."""
    s, gen = ctx.stage, ctx.stage.generation
    if gen.temperature <= 0:
        raise AlignError(f"stage {s.name}: {s.kind} samples its answers; generation.temperature must be > 0, "
                         f"got {gen.temperature}")
    steps = s.max_steps if s.max_steps > 0 else \
        math.ceil(s.epochs * len(prompts) * s.num_generations / s.rollout_batch_size)
    args = trainer_args(config_cls, ctx, max_steps=steps * _updates_per_step(s),
                        generation_batch_size=s.rollout_batch_size, num_generations=s.num_generations,
                        num_iterations=s.num_iterations, epsilon=s.cliprange, max_completion_length=gen.max_new_tokens,
                        temperature=gen.temperature, top_p=gen.top_p, disable_dropout=True, **algorithm)
    trainer = trainer_cls(model=policy, reward_funcs=reward, args=args, processing_class=tok,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                          callbacks=ctx.callbacks())
    drop_reference_adapter(trainer.model)
    return trainer


def _updates_per_step(stage: Any) -> int:
    """Optimizer steps per rollout batch: its minibatches, `num_iterations` times over."""
    return minibatches_per_step(stage) * stage.num_iterations


def fitting_prompts(tok: Any, prompts: list[list[dict]], max_prompt_length: int | None) -> tuple[list, int]:
    """The prompts of at most `max_prompt_length` tokens (rendered for generation), and how many were left out."""
    if not max_prompt_length:
        return prompts, 0
    kept = [p for p, ids in zip(prompts, prompt_ids(tok, prompts)) if len(ids) <= max_prompt_length]
    if not kept:
        raise AlignError(f"every training prompt is longer than generation.max_prompt_length={max_prompt_length} "
                         "tokens", hint="raise generation.max_prompt_length")
    if len(kept) < len(prompts):
        log.warning("%d of %d training prompts are longer than generation.max_prompt_length=%d tokens and are left "
                    "out", len(prompts) - len(kept), len(prompts), max_prompt_length)
    return kept, len(prompts) - len(kept)


def summarize(history: list[dict[str, Any]], kind: str, optimizer_steps: int, per_step: int) -> dict[str, float]:
    """The run's summary from TRL's logged rows: steps, first and last mean reward, TRL's per-token KL."""
    rows = [h for h in history if "reward" in h]
    out: dict[str, float] = {f"{kind}_steps": optimizer_steps // per_step, "optimizer_steps": optimizer_steps}
    if rows:
        out |= {"train_reward_first": rows[0]["reward"], "train_reward_last": rows[-1]["reward"]}
    kls = [h["kl"] for h in rows if h.get("kl") is not None]
    if kls:
        out |= {"train_kl_per_token_last": kls[-1], "train_kl_per_token_max": max(kls)}
    return out
