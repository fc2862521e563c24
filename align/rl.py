"""The math of PPO for language models, as pure functions of tensors (no models, no I/O).

Shapes: one row per rollout, one column per completion token, `mask` 1 on real completion tokens (the
EOS included) and 0 on the padding after them. Every mean is over real tokens only (`masked_mean`).
Under data parallelism each rank holds a share of the rows; `total` (a sum over ranks) makes means,
variances and whitening global, as if one process held the whole batch.

    kl_rewards     per-token reward: -kl_coef * (log pi - log pi_ref) at every token, plus the sequence's
                   score at its last token (Ziegler et al. 2019; Stiennon et al. 2020)
    gae            advantages and returns by generalized advantage estimation (Schulman et al. 2016)
    masked_whiten  whitening of rewards (scale only) or advantages (shift and scale)
    token_mean     a masked sum over a whole minibatch's token count (micro-batches and ranks weigh tokens alike)
    policy_loss    clipped surrogate objective, with clip fraction and approximate KL (Schulman et al. 2017)
    value_loss     value loss clipped around the rollout's values (as in OpenAI's baselines and lm-human-preferences)
    KLController   fixed or adaptive KL coefficient (Ziegler et al. 2019, section 2.2)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Sum = Callable[[torch.Tensor], torch.Tensor]  # a tensor summed over data-parallel ranks


def _local(t: torch.Tensor) -> torch.Tensor:
    return t


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None, total: Sum = _local) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1 (all of them, or along `dim`)."""
    if dim is None:
        return total((x * mask).sum()) / total(mask.sum()).clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def token_mean(x: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | float | None = None) -> torch.Tensor:
    """Sum of `x` over the masked positions divided by `tokens`: the count of a whole minibatch this mask is a
    part of (micro-batches, ranks), so the parts' results add up to the minibatch's mean with every token
    weighted alike; None = this mask's own count (`masked_mean`)."""
    if tokens is None:
        return masked_mean(x, mask)
    return (x * mask).sum() / torch.as_tensor(tokens, dtype=x.dtype, device=x.device).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, total: Sum = _local) -> torch.Tensor:
    """Variance of `x` over the masked positions (Bessel-corrected by default, as lm-human-preferences)."""
    mean = masked_mean(x, mask, total=total)
    var = masked_mean((x - mean) ** 2, mask, total=total)
    n = total(mask.sum())
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  total: Sum = _local) -> torch.Tensor:
    """(x - mean) / std over the masked positions; `shift_mean=False` keeps the mean (reward whitening must
    not turn a good batch into a bad one: it only rescales). Padding positions come back as 0."""
    mean, var = masked_mean(x, mask, total=total), masked_var(x, mask, total=total)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
               kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards and per-token KL estimates (log pi - log pi_ref, the k1 estimator, 0 on padding).

    Each token is penalized by -kl_coef * kl; the sequence's score is added at its last real token
    (the EOS, or the last token of a completion cut by the length limit).
    """
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (advantages + values) by GAE, running backwards over each row's real tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}; the value after the last
    real token is 0 (the episode ends there), so padding never leaks into a real token's advantage.
    """
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float, tokens: torch.Tensor | float | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: mean over tokens of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)); the
    mean's denominator, and that of the stats, is `tokens` when given (`token_mean`).

    Stats: clip fraction (tokens where the clipped term is the larger), approximate KL(old || new) by
    the k3 estimator mean((ratio - 1) - log ratio) (>= 0, low variance; Schulman's "Approximating KL").
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = token_mean(torch.maximum(unclipped, clipped), mask, tokens)
    with torch.no_grad():
        stats = {"clipfrac": token_mean((clipped > unclipped).float(), mask, tokens),
                 "approx_kl": token_mean((ratio - 1) - log_ratio, mask, tokens)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float, tokens: torch.Tensor | float | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * mean over tokens of max((V - R)^2, (V_clipped - R)^2), V_clipped = V_old + clip(V - V_old, +-eps);
    over `tokens` when given (`token_mean`)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * token_mean(torch.maximum(unclipped_loss, clipped_loss), mask, tokens)
    with torch.no_grad():
        stats = {"vf_clipfrac": token_mean((clipped_loss > unclipped_loss).float(), mask, tokens)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax over the last dimension, per position."""
    logp = torch.log_softmax(logits.float(), -1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, total: Sum = _local) -> float:
    """1 - Var(returns - values) / Var(returns) over real tokens: 1 = the critic predicts returns, <= 0 = useless."""
    var = masked_var(returns, mask, unbiased=False, total=total)
    if var <= 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, unbiased=False, total=total) / var)


class KLController:
    """The KL penalty coefficient: fixed, or adaptive towards `target` (Ziegler et al. 2019).

    Adaptive: e = clip(KL / target - 1, -0.2, 0.2); coef <- coef * (1 + e * n / horizon), with `n` the rollouts
    behind the KL measurement: KL above target raises the penalty, below lowers it, at most 20% per horizon.
    """

    def __init__(self, kl_coef: float, target: float | None = None, horizon: int = 10000):
        self.value, self.target, self.horizon = kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is not None and math.isfinite(current_kl):
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]
