"""A policy against another on the same prompts: the win rate (its one definition), the KL, sample tables.

The win rate of a policy against a rival is computed in one place, `compare_policies`: both answer the
same prompts with the same sampling settings and seed (`sample`), a judge (`align.evaluation.judges`: a
reward model, or an LLM asked in both orders) gives each prompt an outcome in [0, 1] (1 a win, 1/2 a tie,
0 a loss), and the win rate is their mean (`align.metrics.win_rate`).

The KL (`sampled_kl`) is KL(pi_T || ref_T) per sequence, where pi_T = softmax(logits / T) at the hook's
sampling temperature T for BOTH models: the completions are sampled from pi_T (top_p 1, so from exactly
that distribution), and both log-probs are tempered alike. At T = 1 it is the plain KL; a greedy
setting (T = 0) samples at T = 1, since a greedy answer is not a sample of any distribution.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from align.generation import Completion, completion_logprobs, generate, prompt_ids
from align.metrics import kl_from_samples, win_rate
from align.schema import GenerationSpec


def sampling(gen: GenerationSpec) -> dict[str, Any]:
    return dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                batch_size=gen.batch_size, seed=gen.seed)


def sample(model: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec) -> list[Completion]:
    """The model's answers to the prompts with the hook's generation settings. Each prompt draws from its own
    seeded stream (`align.generation.generate`), so the same model, prompts and settings give the same
    answers whatever else was generated: the evaluation reuses them between hooks and rows."""
    return generate(model, tok, prompt_ids(tok, prompts, gen.max_prompt_length), **sampling(gen))


def kl_sampling(gen: GenerationSpec) -> GenerationSpec:
    """The settings the KL's completions are sampled with: the hook's temperature (1 when greedy), top_p 1."""
    return dataclasses.replace(gen, temperature=gen.temperature if gen.temperature > 0 else 1.0, top_p=1.0)


def compare_policies(prompts: Sequence[list[dict]], ours: Sequence[Completion], theirs: Sequence[Completion],
                     judge: Any | None = None, n_samples: int = 8) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of a policy's answers `ours` against a rival's `theirs` to the same prompts (sampled with the
    same settings and seed), and a table of the first `n_samples`.

    Metrics: mean response length of each, the policy's EOS rate, the number of prompts; with a `judge`
    (`judges.RewardJudge` or `judges.LLMJudge`), the policy's win rate (ties half) and the judge's own
    numbers (a reward model: both mean rewards; an LLM: its tie and first-position rates).
    """
    metrics = {"response_length": sum(len(c.ids) for c in ours) / len(ours),
               "response_length_start": sum(len(c.ids) for c in theirs) / len(theirs),
               "eos_rate": sum(c.finished for c in ours) / len(ours),
               "eval_prompts": len(prompts)}
    columns: list[dict[str, Any]] = [{} for _ in prompts]
    if judge is not None:
        outcomes, found, columns = judge.judge(prompts, [c.text for c in ours], [c.text for c in theirs])
        metrics |= {"win_rate": win_rate(outcomes), **found}
    table = [{"prompt": p[-1]["content"], "start": t.text, "policy": o.text, **cols}
             for p, o, t, cols in zip(prompts[:n_samples], ours, theirs, columns)]
    return metrics, table


def sampled_kl(policy: Any, reference: Any, tok: Any, ours: Sequence[Completion], gen: GenerationSpec) -> float:
    """KL(pi_T || ref_T) per sequence (see the module docstring) from `ours`, the policy's completions sampled
    with `kl_sampling(gen)`: both models' log-probs of the same sampled tokens, tempered by the same T."""
    t = kl_sampling(gen).temperature
    policy_lp = completion_logprobs(policy, ours, tok.pad_token_id, gen.batch_size, temperature=t)
    ref_lp = completion_logprobs(reference, ours, tok.pad_token_id, gen.batch_size, temperature=t)
    return kl_from_samples([x.tolist() for x in policy_lp], [x.tolist() for x in ref_lp])


def sample_table(prompts: Sequence[list[dict]], done: Sequence[Completion]) -> list[dict[str, Any]]:
    """A policy's answers alone (the baseline row has no start model to set beside it)."""
    return [{"prompt": p[-1]["content"], "policy": c.text} for p, c in zip(prompts, done)]
