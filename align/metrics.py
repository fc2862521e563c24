"""Metrics as pure functions of scores and log-probs: the rm stage's held-out numbers and the evaluation hooks'.

Reward-model metrics take, per prompt, the model's scores of its responses and the human `ranking`
groups (best first, ties grouped, as in `align.rankings.Ranking.ranking`); policy metrics take the
judge's scores of two policies' completions, or their per-token log-probs; a rate of k in n has its Wilson
interval (`wilson`: the compliance hook's refusal rates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from align.rankings import ordered_pairs

Scores = Sequence[Sequence[float]]
Groups = Sequence[Sequence[Sequence[int]]]


def pairwise_accuracy(scores: Scores, rankings: Groups) -> float:
    """Fraction of human-ordered pairs (ties excluded) that the scores order the same way, over all pairs;
    an exact score tie counts half."""
    hits, n = 0.0, 0
    for s, groups in zip(scores, rankings):
        for a, b in ordered_pairs(groups):
            hits += 1.0 if s[a] > s[b] else 0.5 if s[a] == s[b] else 0.0
            n += 1
    return hits / n if n else float("nan")


def top1_agreement(scores: Scores, rankings: Groups) -> float:
    """Fraction of prompts whose highest-scored response is in the human best group."""
    hits = [max(range(len(s)), key=lambda i: s[i]) in groups[0] for s, groups in zip(scores, rankings)]
    return sum(hits) / len(hits) if hits else float("nan")


def expected_calibration_error(scores: Scores, rankings: Groups, bins: int = 10) -> float:
    """ECE of P(a beats b) = sigmoid(r_a - r_b) against the human choice, in `bins` equal-width bins.

    Each human pair enters in both orientations, (p, 1) and (1 - p, 0), so the result does not depend
    on which response of a pair a file lists first.
    """
    probs, labels = [], []
    for s, groups in zip(scores, rankings):
        for a, b in ordered_pairs(groups):
            p = 1.0 / (1.0 + math.exp(-(s[a] - s[b])))
            probs += [p, 1.0 - p]
            labels += [1.0, 0.0]
    return calibration_error(probs, labels, bins)


def calibration_error(probs: Sequence[float], labels: Sequence[float], bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (bin size / n) * |mean label - mean probability|."""
    if not probs:
        return float("nan")
    sums = [[0, 0.0, 0.0] for _ in range(bins)]  # count, sum of probabilities, sum of labels
    for p, y in zip(probs, labels):
        b = sums[min(int(p * bins), bins - 1)]
        b[0] += 1
        b[1] += p
        b[2] += y
    return sum(abs(ys - ps) for _, ps, ys in sums) / len(probs)


def reward_stats(scores: Scores) -> dict[str, float]:
    """Mean and (population) standard deviation of every response's score."""
    flat = [x for s in scores for x in s]
    mean = sum(flat) / len(flat)
    return {"reward_mean": mean, "reward_std": math.sqrt(sum((x - mean) ** 2 for x in flat) / len(flat))}


def ranking_metrics(scores: Scores, rankings: Groups) -> dict[str, float]:
    """Every metric above, named as the rm stage reports them."""
    return {"pairwise_accuracy": pairwise_accuracy(scores, rankings),
            "top1_agreement": top1_agreement(scores, rankings),
            "ece": expected_calibration_error(scores, rankings), **reward_stats(scores)}


def outcome(score: float, against: float) -> float:
    """One prompt's outcome by a scoring judge: 1 when `score` beats `against`, 1/2 on a tie, else 0."""
    return 1.0 if score > against else 0.5 if score == against else 0.0


def swapped_outcome(first: str, second: str) -> float:
    """One prompt's outcome by a pairwise judge asked twice, the policy's answer shown first ("A") and then
    second ("B"): the mean of the two verdicts (each 1 win, 1/2 tie, 0 loss). A judge that always picks
    the same position gives exactly 1/2, so a position bias cannot make a policy win."""
    points = {"A": 1.0, "tie": 0.5, "B": 0.0}
    return (points[first] + 1.0 - points[second]) / 2


def win_rate(outcomes: Sequence[float]) -> float:
    """The win rate: the mean over prompts of their outcomes (`outcome` or `swapped_outcome`)."""
    return sum(outcomes) / len(outcomes) if outcomes else float("nan")


def kl_from_samples(policy_logprobs: Sequence[Sequence[float]], reference_logprobs: Sequence[Sequence[float]]) \
        -> float:
    """Monte-Carlo KL(policy || reference) per sequence: the mean over completions SAMPLED FROM THE POLICY of
    sum_t [log p(y_t) - log q(y_t)] (unbiased; single samples can be negative, the mean tends to >= 0).

    It is a KL only when both log-probs are of the distribution the completions were sampled from: at
    sampling temperature T, log-probs of softmax(logits / T) for both models (`generation.completion_logprobs`
    with `temperature=T`), which is what the `kl` hook passes."""
    sums = [sum(p) - sum(q) for p, q in zip(policy_logprobs, reference_logprobs)]
    return sum(sums) / len(sums) if sums else float("nan")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (95% for the default z): unlike p +- z*SE it stays
    inside [0, 1] and is not zero-width at 0/n or n/n. (nan, nan) when n is 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
