"""PPO stage: the policy trained on a reward model's scores with a KL penalty to where it started.

    align run recipes/quickstart-ppo.yaml

Models: the policy is the init stage's model with a new LoRA adapter; the reference is the same weights
with the adapter disabled (no second copy; `adapter: full` loads a frozen copy instead). The reward
model is the rm stage's artifact, frozen. The critic is a SEPARATE value model initialised from the
reward model (its backbone and its score head applied at every token, plus a LoRA adapter), as in Stiennon et al. and
InstructGPT: the RM's features already predict the final score, so the value estimates are useful from
the first step, and value-loss gradients cannot disturb the policy's weights (a value head on the
policy shares them and needs the loss weight tuned). The cost is one more model in memory.

Each PPO step: sample `rollout_batch_size` prompts; generate one completion each (KV cache, tempered
sampling, stop at EOS); score them; compute old/reference log-probs and values with one right-padded
forward per micro-batch, the layout the update passes use; per-token KL rewards; GAE; then `ppo_epochs`
passes over shuffled minibatches of batch_size * grad_accum rollouts. The loop takes the reward as a
callable (prompts, completions) -> scores, so tests can train against a synthetic reward.

Implementation details of Huang et al., "The N Implementation Details of RLHF with PPO" (2023):
implemented: queries left-padded and responses right-padded with position ids from the mask; reward
normalisation (gain and bias so that the starting policy's scores, taken from the first rollout batch, have
mean 0 and std 1); optional reward whitening (scale only); advantage whitening; per-token KL penalty with
the score at the last token; value model initialised from the reward model, its score head mapped into
the normalized returns' units (the reward normalisation's gain and bias) from the first step; clipped value
loss; clipped policy loss; adaptive KL controller; log-probs of the tempered distribution (logits /
temperature) in rollouts and updates alike, through the model's own output transform (soft-capping, logit
scale); dropout off (models in eval mode throughout); Adam eps 1e-5; learning rate annealed linearly to 0
over all updates; several epochs of shuffled minibatches; gradient accumulation and clipping; a penalty for
completions cut by the length limit before EOS (subtracted, as in TRL, instead of replacing the score by -1).
Left out: lm-human-preferences' fixed-length responses with a truncation token (we stop at EOS); top-k /
top-p sampling in rollouts (refused: the log-probs would not be the sampling distribution's); early stopping
of the epochs on approximate KL; a value head sharing the policy's weights.

Every token of a minibatch weighs the same in the losses: summed token losses over the minibatch's token
count (over all ranks), however the minibatch is cut into micro-batches.

On accelerate (`align/stages/ppo_model.py`): policy and critic are prepared as one module with one optimizer
and scheduler, so DDP, FSDP and DeepSpeed (`align run --num-processes N`, `--accelerate-config`) train them;
each rank generates, scores and trains on its 1/N share of every rollout batch; reward normalisation,
whitening, the KL the controller steers by and every logged statistic are over the whole batch
(`accelerator.gather` / `reduce`), and accelerate averages the gradients, so N ranks take the steps one process
would with N times the micro-batches. The reference and the reward model are frozen and whole on every rank.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import get_scheduler

from align import console, distributed, rl
from align.data import load_split, parse_prompt
from align.errors import AlignError
from align.generation import Completion, adapters_disabled, generate, prompt_ids
from align.models import load_artifact, load_model, save_model
from align.schema import ModelSpec, PPOStage
from align.stages.common import StageContext, minibatches_per_step, rm_reward
from align.stages.ppo_model import (
    PolicyAndCritic,
    Rollouts,
    accelerator_for,
    collate,
    policy_for_generation,
    policy_forward,
)
from align.tracking import Tracker

log = logging.getLogger("align")
RewardFn = Callable[[Sequence[list[dict]], Sequence[Completion]], Sequence[float]]


def run(ctx: StageContext) -> dict:
    stage, spec = ctx.stage, ctx.recipe.model
    rm_path = ctx.required_reward_model()
    tok = ctx.tokenizer()
    train, _ = load_split(ctx.data, parse_prompt, ctx.seed)  # the held-out prompts are the evaluation's
    policy = load_model(spec, "causal_lm", init=ctx.init)
    # adapters off = the starting policy; without adapters (full fine-tuning) the reference is a frozen copy
    reference = None if hasattr(policy, "disable_adapter") else load_model(spec, "causal_lm", ctx.init, False)
    value = value_model(spec, rm_path)
    rm = load_artifact(rm_path, spec)
    trainer = PPOTrainer(policy, value, tok, stage, len(train), ctx.seed, ctx.tracker, reference)
    if ctx.resume:
        trainer.load(Path(ctx.resume))
    metrics: dict[str, Any] = {"train_prompts": len(train)}
    with console.step(f"{stage.name}: training, {trainer.steps - trainer.step} PPO steps"):
        reward = rm_reward(rm, tok, stage.max_length, stage.eval_batch_size)
        metrics |= trainer.train([r["prompt"] for r in train], reward, ctx.out / "checkpoints")
    weights = trainer.policy_state_dict()
    save_model(trainer.policy, tok, ctx.out, spec, "causal_lm", ctx.init, weights)
    return metrics


def value_model(spec: ModelSpec, init: Path | None) -> Any:
    """The critic: `init`'s reward model (backbone and score head) with a new LoRA adapter, read per token.

    Loaded with the reward head rather than as a token classifier (`head="value"`): the RM's adapter then
    loads as saved (a token classifier's head has a bias the RM's lacks, and PEFT's 'all-linear' would put
    LoRA on it); `value_forward` applies the same score head to every position instead of the last.
    """
    return load_model(spec, "reward", init=init)


class PPOTrainer:
    """PPO over a LoRA policy and a separate critic, on accelerate; `train` runs the steps, `save`/`load`
    checkpoint them. `policy` and `value` are the bare models (unwrapped from DDP / FSDP / DeepSpeed)."""

    def __init__(self, policy: Any, value: Any, tok: Any, stage: PPOStage, n_prompts: int, seed: int,
                 tracker: Tracker | None = None, reference: Any | None = None):
        self.tok, self.stage, self.seed, self.tracker, self.reference = tok, stage, seed, tracker, reference
        if stage.generation.temperature <= 0 or stage.generation.top_p != 1.0:
            raise AlignError(f"stage {stage.name}: PPO samples with temperature > 0 and top_p 1 (got "
                             f"{stage.generation.temperature}, {stage.generation.top_p})",
                             hint="log-probs are those of the tempered full distribution; set generation.top_p: 1")
        self.steps = stage.max_steps if stage.max_steps > 0 else \
            math.ceil(stage.epochs * n_prompts / stage.rollout_batch_size)
        self.n_prompts, self.step, self.score_norm = n_prompts, 0, None
        self.history: list[dict[str, float]] = []  # every step's stats, resumed with a checkpoint: summaries cover all
        self.accelerator = accelerator_for(stage)
        pair = PolicyAndCritic(policy, value).to(self.accelerator.device)
        optimizer = torch.optim.AdamW([p for p in pair.parameters() if p.requires_grad], lr=stage.learning_rate,
                                      eps=1e-5, weight_decay=stage.weight_decay)
        updates = self.steps * stage.ppo_epochs * minibatches_per_step(stage)
        scheduler = get_scheduler(stage.lr_scheduler, optimizer, round(stage.warmup_ratio * updates), updates)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(pair, optimizer, scheduler)
        self.kl_ctl = rl.KLController(stage.kl_coef, stage.target_kl, stage.kl_horizon)
        if self.sharded and stage.save_steps:
            raise AlignError(f"stage {stage.name}: PPO checkpoints (save_steps) are written from rank 0's whole "
                             "weights, which FSDP and DeepSpeed ZeRO-3 shard",
                             hint=f"set stages.{stage.name}.save_steps=0, or use the ddp or deepspeed-zero2 preset")
        self.model.eval()  # no dropout anywhere: the update's log-probs must match the rollout's (Huang et al.)

    @property
    def policy(self) -> Any:
        return self.accelerator.unwrap_model(self.model).policy

    @property
    def value(self) -> Any:
        return self.accelerator.unwrap_model(self.model).critic

    @property
    def sharded(self) -> bool:
        """Whether the trained weights are split over the ranks (FSDP, DeepSpeed ZeRO-3)."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        plugin = getattr(acc.state, "deepspeed_plugin", None)
        return acc.distributed_type == DistributedType.FSDP or (plugin is not None and plugin.zero_stage == 3)

    def policy_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The policy's whole weights gathered from the shards (a collective: call on every rank), or None when
        every rank holds them whole; `save_model` writes them."""
        if not self.sharded:
            return None
        state = self.accelerator.get_state_dict(self.model)
        return {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}

    def _total(self, t: torch.Tensor) -> torch.Tensor:
        """`t` summed over the ranks (the global sums behind whitening and statistics)."""
        return self.accelerator.reduce(t, "sum")

    def batch_prompts(self, prompts: Sequence[list[dict]]) -> list[list[dict]]:
        """This step's prompts: passes over the prompt set, each in its own seeded order (resumable)."""
        n, out = self.stage.rollout_batch_size, []
        start = self.step * n
        for i in range(start, start + n):
            epoch, pos = divmod(i, len(prompts))
            order = list(range(len(prompts)))
            random.Random(self.seed * 100003 + epoch).shuffle(order)
            out.append(prompts[order[pos]])
        return out

    def train(self, prompts: Sequence[list[dict]], reward_fn: RewardFn, checkpoints: Path | None = None) -> dict:
        """Run the remaining PPO steps; return a summary of all steps (first/last rewards, KL, times, tokens/s)."""
        history = self.history
        while self.step < self.steps:
            batch = self.batch_prompts(prompts)
            rollouts, stats = self.rollout(batch, reward_fn)
            start = time.perf_counter()
            stats |= self.update(rollouts)
            stats["train_seconds"] += time.perf_counter() - start
            self.step += 1
            self.kl_ctl.update(stats["kl"], self.stage.rollout_batch_size)
            history.append(stats)
            self.check(stats)
            if self.tracker is not None:
                self.tracker.log({f"ppo/{k}": v for k, v in stats.items()}, self.step)
            if self.step % self.stage.logging_steps == 0 or self.step == self.steps:
                log.info("ppo step %d/%d: reward %.3f (std %.3f), kl %.3f (coef %.3g), entropy %.2f, clipfrac %.3f, "
                         "length %.1f, gen %.1f s, train %.1f s", self.step, self.steps, stats["reward_mean"],
                         stats["reward_std"], stats["kl"], stats["kl_coef"], stats["entropy"], stats["clipfrac"],
                         stats["response_length"], stats["gen_seconds"], stats["train_seconds"])
            if checkpoints is not None and self.stage.save_steps and self.step % self.stage.save_steps == 0 \
                    and distributed.is_main():
                self.save(checkpoints / f"checkpoint-{self.step}")
        return summarize(history, self.stage.ppo_epochs)

    @torch.no_grad()
    def rollout(self, prompts: Sequence[list[dict]], reward_fn: RewardFn) -> tuple[dict, dict]:
        """Sample and score this rank's share of the step's prompts, then `process` them."""
        gen, started, acc = self.stage.generation, time.perf_counter(), self.accelerator
        mine = list(prompts[acc.process_index::acc.num_processes])
        ids = prompt_ids(self.tok, mine, gen.max_prompt_length)
        with policy_for_generation(self.model, acc) as policy:
            completions = generate(policy, self.tok, ids, gen.max_new_tokens, gen.temperature,
                                   batch_size=gen.batch_size)
        gen_seconds = time.perf_counter() - started
        return self.process(completions, torch.tensor([float(x) for x in reward_fn(mine, completions)]), gen_seconds)

    @torch.no_grad()
    def process(self, completions: Sequence[Completion], raw: torch.Tensor,
                gen_seconds: float = 0.0) -> tuple[dict, dict]:
        """Scored completions -> the update's batch (log-probs, values, advantages) and the step's statistics,
        both over the whole rollout batch when ranks share it (gathered, or summed over ranks)."""
        s, total, started, acc = self.stage, self._total, time.perf_counter(), self.accelerator
        raw = raw.to(acc.device)
        every = acc.gather(raw)
        if not torch.isfinite(every).all():  # checked on the gathered scores: every rank stops together
            bad = every[~torch.isfinite(every)][0].item()
            raise AlignError(f"stage {s.name}: reward became {bad} at PPO step {self.step + 1}",
                             hint="the reward model gives non-finite scores: check it (rerun its stage) "
                                  "or lower the learning rate")
        if self.score_norm is None:  # the first batch comes from the starting policy
            std = every.std().item() if len(every) > 1 else 1.0
            self.score_norm = (1.0 / std if s.normalize_reward and std > 1e-6 else 1.0,
                               every.mean().item() if s.normalize_reward else 0.0)
            acc.unwrap_model(self.model).set_value_units(*self.score_norm)
        gain, bias = self.score_norm
        finished = torch.tensor([c.finished for c in completions], device=acc.device)
        scores = (raw - bias) * gain - s.missing_eos_penalty * (~finished).float()
        ro = collate(completions, self.tok.pad_token_id, acc.device)
        old_lp, ref_lp, values, entropy = self._score_tokens(ro)
        rewards, kl = rl.kl_rewards(scores, old_lp, ref_lp, ro.mask, self.kl_ctl.value)
        if s.whiten_rewards:
            rewards = rl.masked_whiten(rewards, ro.mask, shift_mean=False, total=total)
        advantages, returns = rl.gae(rewards, values, ro.mask, s.gamma, s.lam)
        advantages = rl.masked_whiten(advantages, ro.mask, total=total)
        lengths = acc.gather(ro.mask.sum(1))
        stats = {"reward_mean": every.mean().item(), "reward_std": every.std().item() if len(every) > 1 else 0.0,
                 "score_mean": acc.gather(scores).mean().item(),
                 "kl": acc.gather(kl.sum(1)).mean().item(), "kl_coef": self.kl_ctl.value,
                 "entropy": rl.masked_mean(entropy, ro.mask, total=total).item(),
                 "response_length": lengths.mean().item(),
                 "eos_rate": acc.gather(finished.float()).mean().item(), "gen_seconds": gen_seconds,
                 "gen_tokens": lengths.sum().item(),
                 "prompt_tokens": acc.gather(ro.attention_mask[:, :ro.prompt_width].sum(1)).sum().item(),
                 "value_mean": rl.masked_mean(values, ro.mask, total=total).item(),
                 "explained_variance": rl.explained_variance(values, returns, ro.mask, total=total),
                 "train_seconds": time.perf_counter() - started}
        batch = {"ro": ro, "old_logprobs": old_lp, "values": values, "advantages": advantages, "returns": returns}
        return batch, stats

    def _score_tokens(self, ro: Rollouts) -> tuple[torch.Tensor, ...]:
        """Old and reference log-probs, values and entropies, in micro-batches of the update's layout."""
        temperature, width, out = self.stage.generation.temperature, ro.mask.shape[1], []
        order = ro.by_length(torch.arange(len(ro.mask), device=ro.mask.device), self.stage.batch_size)
        for idx in order:
            rows, prompt, answer = ro.rows(idx)
            lp, ent, values = self.model(rows, prompt, temperature, entropy=True)
            with _reference(self.policy, self.reference) as ref:
                ref_lp, _ = policy_forward(ref, rows, prompt, temperature)
            out.append([torch.nn.functional.pad(x, (0, width - answer)) for x in (lp, ref_lp, values, ent)])
        back = torch.cat(order).argsort()
        return tuple(torch.cat(parts)[back] for parts in zip(*out))

    def update(self, batch: dict) -> dict[str, float]:
        """`ppo_epochs` passes of clipped policy and value updates over shuffled minibatches.

        Every token of a minibatch weighs the same: each micro-batch's summed token losses are divided by the
        minibatch's token count over all ranks, so how the minibatch is cut into micro-batches (`by_length`
        groups short rows together) and ranks changes no gradient. Logged losses and fractions are token means
        over each minibatch, averaged over the minibatches."""
        s, ro, acc = self.stage, batch["ro"], self.accelerator
        sums: dict[str, torch.Tensor] = {}
        minibatches = 0
        for _ in range(s.ppo_epochs):
            order = torch.randperm(len(ro.mask)).to(ro.mask.device)
            for minibatch in order.split(s.batch_size * s.grad_accum):
                self.optimizer.zero_grad(set_to_none=True)
                tokens = self._total(ro.mask[minibatch].sum())
                for idx in ro.by_length(minibatch, s.batch_size):  # grad_accum micro-batches: the last syncs
                    with acc.accumulate(self.model):
                        for k, v in self._micro_step(batch, idx, tokens).items():
                            sums[k] = sums.get(k, 0.0) + v
                for part in (self.policy, self.value):
                    acc.clip_grad_norm_([p for p in part.parameters() if p.requires_grad], s.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                minibatches += 1
        means = self._total(torch.stack(list(sums.values()))) / minibatches
        return dict(zip(sums, means.tolist())) | {"lr": self.scheduler.get_last_lr()[0]}

    def _micro_step(self, batch: dict, idx: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch; its share of the minibatch's token-mean losses and stats."""
        s, ro, acc = self.stage, batch["ro"], self.accelerator
        rows, prompt, answer = ro.rows(idx)
        old = {k: batch[k][idx, :answer] for k in ("old_logprobs", "advantages", "values", "returns")}
        mask = ro.mask[idx, :answer]
        logprobs, _, values = self.model(rows, prompt, s.generation.temperature)
        pg_loss, pg_stats = rl.policy_loss(logprobs, old["old_logprobs"], old["advantages"], mask, s.cliprange,
                                           tokens=tokens)
        vf_loss, vf_stats = rl.value_loss(values, old["values"], old["returns"], mask, s.cliprange_value,
                                          tokens=tokens)
        loss = pg_loss + s.vf_coef * vf_loss
        if not torch.isfinite(loss):
            raise AlignError(f"stage {s.name}: training loss became {loss.item()} at PPO step {self.step + 1}",
                             hint="lower learning_rate or raise kl_coef; earlier stages are kept")
        # DDP / DeepSpeed average gradients over ranks and accelerate divides by the accumulation steps: undo
        # both, so the minibatch's gradient is its summed token losses over its token count
        acc.backward(loss * acc.num_processes * acc.gradient_accumulation_steps)
        return {"pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(), "loss": loss.detach(),
                **{k: v.detach() for k, v in (pg_stats | vf_stats).items()}}

    def check(self, stats: dict[str, float]) -> None:
        """Stop on a KL past the configured bound (the policy has left the reference behind)."""
        s = self.stage
        if not stats["kl"] <= s.max_kl:
            raise AlignError(f"stage {s.name}: KL to the reference reached {stats['kl']:.4g} at PPO step {self.step}, "
                             f"above max_kl={s.max_kl}", hint="lower learning_rate, raise kl_coef or set target_kl; "
                                                              "or raise max_kl")

    # ---- checkpoints ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Trainable weights of policy and critic, optimizer, scheduler, KL controller, reward norm, RNG."""
        tmp = path.with_name(f".tmp-{path.name}")  # not matched by checkpoint-*: a crash leaves no half checkpoint
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save({"policy": _trainable(self.policy), "value": _trainable(self.value),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "kl": self.kl_ctl.state_dict(), "step": self.step, "score_norm": self.score_norm,
                    "torch_rng": torch.get_rng_state(), "history": self.history,
                    "cuda_rng": torch.cuda.get_rng_state() if self.accelerator.device.type == "cuda" else None},
                   tmp / "state.pt")
        os.replace(tmp, path)
        for old in path.parent.glob("checkpoint-*"):  # the latest is the resume point
            if old != path:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path) -> None:
        state = torch.load(path / "state.pt", weights_only=True)
        for model, key in ((self.policy, "policy"), (self.value, "value")):
            missing = set(_trainable(model)) - set(state[key])
            if missing:
                raise AlignError(f"checkpoint {path} does not fit the model ({len(missing)} weights missing)",
                                 hint="delete the stage's .partial folder to start it over")
            model.load_state_dict(state[key], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.load_state_dict(state["kl"])
        self.step, self.score_norm = state["step"], tuple(state["score_norm"]) if state["score_norm"] else None
        if self.score_norm is not None:
            self.accelerator.unwrap_model(self.model).set_value_units(*self.score_norm)
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.accelerator.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"])  # rollouts sample on the GPU
        log.info("resumed PPO at step %d of %d from %s", self.step, self.steps, path)


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _reference(policy: Any, reference: Any | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext(reference) if reference is not None else adapters_disabled(policy)


def summarize(history: list[dict[str, float]], ppo_epochs: int = 1) -> dict[str, float]:
    """The run's summary: first and last step's reward and KL, totals of time and tokens."""
    if not history:
        return {}
    gen_s, train_s = sum(h["gen_seconds"] for h in history), sum(h["train_seconds"] for h in history)
    tokens, prompt_tokens = sum(h["gen_tokens"] for h in history), sum(h["prompt_tokens"] for h in history)
    return {"ppo_steps": len(history), "train_reward_first": history[0]["reward_mean"],
            "train_reward_last": history[-1]["reward_mean"], "train_kl_last": history[-1]["kl"],
            "train_kl_max": max(h["kl"] for h in history), "kl_coef_final": history[-1]["kl_coef"],
            "gen_seconds": gen_s, "train_seconds": train_s, "rollout_tokens": tokens,
            "rollout_prompt_tokens": prompt_tokens,
            "rollout_tokens_per_second": tokens / gen_s if gen_s else 0.0,
            "train_tokens_per_second": tokens * ppo_epochs / train_s if train_s else 0.0}
