"""The PPO stage's models and batches as accelerate sees them: the Accelerator, policy and critic in one module,
their per-token forwards, the unwrapped policy for sampling, and the rollouts' padded layout.

accelerate wraps one module per engine (DDP, FSDP2, a DeepSpeed engine), so the policy and the critic that
the stage trains together live in one `PolicyAndCritic`, prepared once with one optimizer (as TRL's
PolicyAndValueWrapper). Its forward is the update's: the policy's log-probs and the critic's values of the
completion tokens, through the wrapper so that DDP's gradient hooks and ZeRO-3 / FSDP's parameter gathering
run.

Log-probs are computed through the model's own forward (`logits_to_keep` restricted to the completion's
positions), so its output transform applies: Gemma 2's final-logit soft-capping, Cohere's `logit_scale`,
... (a bare `get_output_embeddings()(hidden)` skips them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import pad

from align import distributed, rl
from align.decoding import tempered
from align.generation import Completion
from align.schema import PPOStage


def accelerator_for(stage: PPOStage) -> Any:
    """The stage's Accelerator: on the one device decision's device (`align.distributed.device`), with the
    stage's gradient accumulation; the learning-rate schedule counts optimizer steps (not steps x processes).
    Under DeepSpeed, the micro-batch size and clipping its config leaves to "auto" come from the stage."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=distributed.device().type == "cpu", gradient_accumulation_steps=stage.grad_accum,
                      step_scheduler_with_optimizer=False)
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None:
        config = plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = stage.batch_size
        if config.get("gradient_clipping", "auto") == "auto":
            config["gradient_clipping"] = stage.max_grad_norm
    return acc


@dataclass
class Rollouts:
    """A rollout batch, padded once to one layout: [left-padded prompt | right-padded completion]."""

    input_ids: torch.Tensor  # [N, P + R]
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    mask: torch.Tensor  # [N, R]: 1 on completion tokens (EOS included)
    prompt_width: int

    def rows(self, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int, int]:
        """Rows `idx` without the columns that are padding in all of them (the batch is padded to its longest
        prompt and completion; a micro-batch's are often shorter): (model inputs, prompt width, completion width).
        Position ids come from the whole batch's mask, so the cut changes no real token's position."""
        prompt = int(self.attention_mask[idx, :self.prompt_width].sum(1).max())
        answer = int(self.mask[idx].sum(1).max())
        cols = slice(self.prompt_width - prompt, self.prompt_width + answer)
        return ({"input_ids": self.input_ids[idx, cols], "attention_mask": self.attention_mask[idx, cols],
                 "position_ids": self.position_ids[idx, cols]}, prompt, answer)

    def by_length(self, idx: torch.Tensor, size: int) -> list[torch.Tensor]:
        """`idx` split into micro-batches of `size` rows of similar length, so that `rows` cuts more padding."""
        return list(idx[self.attention_mask[idx].sum(1).argsort(stable=True)].split(size))


def collate(completions: Sequence[Completion], pad_id: int, device: torch.device | str = "cpu") -> Rollouts:
    prompts = [torch.tensor(c.prompt_ids) for c in completions]
    answers = [torch.tensor(c.ids) for c in completions]
    p = pad(prompts, padding_value=pad_id, padding_side="left")
    r = pad(answers, padding_value=pad_id, padding_side="right")
    p_mask = pad([torch.ones_like(x) for x in prompts], padding_value=0, padding_side="left")
    r_mask = pad([torch.ones_like(x) for x in answers], padding_value=0, padding_side="right")
    mask = torch.cat([p_mask, r_mask], 1)
    # positions count real tokens only, as generate() numbered them under left padding
    return Rollouts(torch.cat([p, r], 1).to(device), mask.to(device), (mask.cumsum(1) - 1).clamp(min=0).to(device),
                    r_mask.float().to(device), p.shape[1])


class PolicyAndCritic(torch.nn.Module):
    """The trained pair. The critic reads the reward model's score head at every token, mapped into the units
    of the returns it learns: `value_gain * (head - value_bias)`, the gain and bias of the reward
    normalisation (set by `set_value_units` once the first rollout batch fixed them). Without it the critic
    would start in raw RM units while its targets are normalized, an offset that GAE turns into a
    position-dependent advantage bias (a length bias whitening cannot remove)."""

    def __init__(self, policy: Any, critic: Any):
        super().__init__()
        self.policy, self.critic = policy, critic
        self.register_buffer("value_gain", torch.ones(()), persistent=False)
        self.register_buffer("value_bias", torch.zeros(()), persistent=False)
        # FSDP's TRANSFORMER_BASED_WRAP with no class named wraps the classes the models name here
        self._no_split_modules = sorted({c for m in (policy, critic) for c in _no_split(m)})

    def set_value_units(self, gain: float, bias: float) -> None:
        self.value_gain.fill_(gain)
        self.value_bias.fill_(bias)

    def forward(self, rows: dict[str, torch.Tensor], prompt_width: int, temperature: float,
                entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        logprobs, ent = policy_forward(self.policy, rows, prompt_width, temperature, entropy)
        values = (value_forward(self.critic, rows, prompt_width) - self.value_bias) * self.value_gain
        return logprobs, ent, values


def _no_split(model: Any) -> list[str]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(getattr(base, "_no_split_modules", None) or [])


def policy_forward(model: Any, rows: dict[str, torch.Tensor], prompt_width: int, temperature: float,
                   entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the completion tokens under logits / temperature. `rows` are
    [left-padded prompt | right-padded completion]; the LM head (and the model's transform after it) runs only
    on the positions that predict completion tokens."""
    answer = rows["input_ids"].shape[1] - prompt_width
    out = model(**rows, use_cache=False, logits_to_keep=answer + 1)  # the last prompt position onwards
    logits = tempered(out.logits[:, :-1].float(), temperature)
    target = rows["input_ids"][:, prompt_width:]
    logprobs = torch.log_softmax(logits, -1).gather(-1, target[..., None]).squeeze(-1)
    return logprobs, rl.entropy_from_logits(logits) if entropy else None


def value_forward(model: Any, rows: dict[str, torch.Tensor], prompt_width: int) -> torch.Tensor:
    """The critic's raw value (the reward model's score head) of each completion state, read where the policy's
    logits for that token are."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.base_model(**rows, use_cache=False).last_hidden_state[:, prompt_width - 1:-1]
    head = base.score if hasattr(base, "score") else base.classifier
    return head(hidden).squeeze(-1).float()


@contextlib.contextmanager
def policy_for_generation(model: Any, accelerator: Any) -> Iterator[Any]:
    """The bare policy for `generate`, as TRL's `unwrap_model_for_generation`: under DeepSpeed ZeRO-3 its
    sharded weights are gathered for the duration (and ZeRO's hooks taken off, or every decoding step would
    gather again); under FSDP2 the module's own hooks gather each layer as it runs."""
    pair = accelerator.unwrap_model(model)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        yield pair.policy
        return
    import deepspeed
    from trl.models.utils import add_hooks, remove_hooks

    with deepspeed.zero.GatheredParameters(model.parameters()):
        remove_hooks(model)
        try:
            yield accelerator.unwrap_model(model).policy
        finally:
            add_hooks(model)
