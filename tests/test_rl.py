"""PPO math (`align.rl`) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from align import rl


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype))


def test_gae_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [1.0, 2.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # second row: 2 tokens, then padding
    adv, ret = rl.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: delta_2 = 3 - 1.5; delta_1 = 2 + 0.9 * 1.5 - 1; delta_0 = 1 + 0.9 * 1 - 0.5; A_t = delta_t + 0.72 A_{t+1}
    a2 = 1.5
    a1 = 2.35 + 0.72 * a2
    a0 = 1.4 + 0.72 * a1
    # row 1: the episode ends at t = 1 (the value after it is 0, padding's 7 and 99 are ignored)
    b1 = 5.0 - 2.0
    b0 = 0.0 + 0.9 * 2.0 - 1.0 + 0.72 * b1
    close(adv, [[a0, a1, a2], [b0, b1, 0.0]])
    close(ret, [[a0 + 0.5, a1 + 1.0, a2 + 1.5], [b0 + 1.0, b1 + 2.0, 0.0]])


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.3, 0.2, 0.1]]), torch.ones(1, 3)
    adv, ret = rl.gae(rewards, values, mask, 1.0, 1.0)
    close(ret, [[3.0, 2.0, 2.0]])
    close(adv, [[2.7, 1.8, 1.9]])


def test_whitening_by_hand():
    x = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the 100 is padding: ignored, and returned as 0
    assert rl.masked_mean(x, mask).item() == pytest.approx(2.0)
    assert rl.masked_var(x, mask).item() == pytest.approx(1.0)  # unbiased: (1 + 0 + 1) / 2
    assert rl.masked_whiten(x, mask).tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)
    assert rl.masked_whiten(x, mask, shift_mean=False).tolist() == pytest.approx([1.0, 2.0, 3.0, 0.0], abs=1e-6)
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(5 / 3)
    assert rl.masked_whiten(y, torch.ones(4)).tolist() == pytest.approx([(v - 2.5) / std for v in [1, 2, 3, 4]])


def test_kl_rewards_put_the_score_on_the_last_real_token():
    logprobs = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-1.5, -1.0, -9.0], [-1.0, -2.0, -0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    rewards, kl = rl.kl_rewards(torch.tensor([2.0, 3.0]), logprobs, ref, mask, kl_coef=0.1)
    close(kl, [[0.5, -1.0, 0.0], [0.0, 1.0, -0.5]])
    close(rewards, [[-0.05, 0.1 + 2.0, 0.0], [0.0, -0.1, 0.05 + 3.0]])


def _policy_case():
    ratio = torch.tensor([[1.0, 1.1, 1.5, 0.5, 1.5, 1.2]])
    adv = torch.tensor([[1.0, 1.0, 1.0, -1.0, -1.0, 1.0]])
    return torch.log(ratio), torch.zeros_like(ratio), adv, torch.ones_like(ratio)


def test_policy_loss_by_hand_inside_at_and_beyond_the_clip_range():
    logprobs, old, adv, mask = _policy_case()
    logprobs.requires_grad_(True)
    loss, stats = rl.policy_loss(logprobs, old, adv, mask, cliprange=0.2)
    # per token max(-A r, -A clip(r, 0.8, 1.2)): inside -1, -1.1; beyond +: -1.2 (clipped); beyond -, A < 0:
    # 0.8 (clipped); r = 1.5 with A < 0: 1.5 (the pessimistic unclipped term); at the range r = 1.2: -1.2
    assert loss.item() == pytest.approx((-1.0 - 1.1 - 1.2 + 0.8 + 1.5 - 1.2) / 6, rel=1e-5)
    loss.backward()
    grad = logprobs.grad[0] * 6  # d(-A r)/d log r = -A r where unclipped, 0 where the clip holds
    assert grad[:2].tolist() == pytest.approx([-1.0, -1.1])
    assert grad[2].item() == 0.0 and grad[3].item() == 0.0
    assert grad[4].item() == pytest.approx(1.5)
    r = torch.exp(logprobs.detach())
    assert stats["approx_kl"].item() == pytest.approx(((r - 1) - torch.log(r)).mean().item())
    beyond = rl.policy_loss(logprobs.detach()[:, :5], old[:, :5], adv[:, :5], mask[:, :5], 0.2)[1]
    assert beyond["clipfrac"].item() == pytest.approx(2 / 5)  # tokens 2 and 3


def test_value_loss_by_hand_inside_at_and_beyond_the_clip_range():
    values = torch.tensor([[0.1, 0.5, -0.5, 0.2]], requires_grad=True)
    old, returns, mask = torch.zeros(1, 4), torch.ones(1, 4), torch.ones(1, 4)
    loss, stats = rl.value_loss(values, old, returns, mask, cliprange_value=0.2)
    # inside: 0.9^2; beyond, moving away from the clip: max(0.5^2, 0.8^2); beyond, towards: max(1.5^2, 1.2^2);
    # at the range: 0.8^2 either way
    assert loss.item() == pytest.approx(0.5 * (0.81 + 0.64 + 2.25 + 0.64) / 4)
    loss.backward()
    assert values.grad[0].tolist() == pytest.approx([-0.9 / 4, 0.0, -1.5 / 4, -0.8 / 4])
    assert stats["vf_clipfrac"].item() == pytest.approx(1 / 4)


def test_adaptive_kl_controller_moves_the_right_way():
    ctl = rl.KLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(12.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))  # error clipped at +0.2
    high = ctl.value
    assert ctl.update(6.0, 100) == pytest.approx(high)  # on target: unchanged
    assert ctl.update(5.4, 100) == pytest.approx(high * (1 - 0.1 * 0.01))  # 10% under target
    low = ctl.value
    assert ctl.update(0.0, 100) == pytest.approx(low * (1 - 0.2 * 0.01)) and ctl.value < low
    fixed = rl.KLController(0.1)
    assert fixed.update(100.0, 100) == 0.1
    again = rl.KLController(1.0, 6.0)
    again.load_state_dict(ctl.state_dict())
    assert again.value == ctl.value


def test_explained_variance_and_entropy():
    returns, mask = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.ones(1, 4)
    assert rl.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert rl.explained_variance(torch.full((1, 4), 2.5), returns, mask) == pytest.approx(0.0)
    assert rl.entropy_from_logits(torch.zeros(2, 8)).tolist() == pytest.approx([math.log(8)] * 2)


def test_token_mean_over_a_whole_minibatch_by_hand():
    """A minibatch of a 1-token and a 3-token answer, cut into two micro-batches of one row: each part divides
    by the minibatch's 4 tokens, so the parts add up to the mean over all 4 tokens (each token weighs 1/4); the
    old per-part mean divided by the number of parts gave the short answer's token 1/2 and the others 1/6."""
    x = torch.tensor([[8.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    parts = [rl.token_mean(x[i:i + 1], mask[i:i + 1], tokens=4) for i in range(2)]
    assert [p.item() for p in parts] == [2.0, 1.5]
    assert sum(parts).item() == rl.masked_mean(x, mask).item() == 3.5
    assert rl.token_mean(x, mask).item() == 3.5  # tokens unset: this mask's own count
    adv, zeros = torch.tensor([[1.0, 0.0, 0.0], [-1.0, -1.0, -1.0]]), torch.zeros(2, 3)
    whole, _ = rl.policy_loss(zeros, zeros, adv, mask, 0.2)  # ratio 1: the loss is -mean(A) = 2/4
    cut = sum(rl.policy_loss(zeros[i:i + 1], zeros[i:i + 1], adv[i:i + 1], mask[i:i + 1], 0.2, tokens=4)[0]
              for i in range(2))
    assert whole.item() == pytest.approx(0.5) and cut.item() == pytest.approx(0.5)
