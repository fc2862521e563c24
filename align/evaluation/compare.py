"""A policy against another on the same prompts: the win rate (its one definition), the KL, sample tables.

The win rate of a policy against a rival is computed in one place, `compare_policies`: both answer the
same prompts with the same sampling seed, a judge (`align.evaluation.judges`: a reward model, or an LLM
asked in both orders) gives each prompt an outcome in [0, 1] (1 a win, 1/2 a tie, 0 a loss), and the
win rate is their mean (`align.metrics.win_rate`).

The KL (`sampled_kl`) is KL(pi_T || ref_T) per sequence, where pi_T = softmax(logits / T) at the hook's
sampling temperature T for BOTH models: the completions are sampled from pi_T (top_p 1, so from exactly
that distribution), and both log-probs are tempered alike. At T = 1 it is the plain KL; a greedy
setting (T = 0) samples at T = 1, since a greedy answer is not a sample of any distribution.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from align.generation import adapters_disabled, completion_logprobs, generate, prompt_ids
from align.metrics import kl_from_samples, win_rate
from align.schema import GenerationSpec


def sampling(gen: GenerationSpec) -> dict[str, Any]:
    return dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                batch_size=gen.batch_size, seed=gen.seed)


def compare_policies(policy: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec,
                     reference: Any | None = None, judge: Any | None = None,
                     n_samples: int = 8) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of `policy` against `reference` (None: the policy with its adapters disabled) and a sample table.

    Metrics: mean response length of each, the policy's EOS rate, the number of prompts; with a `judge`
    (`judges.RewardJudge` or `judges.LLMJudge`), the policy's win rate (ties half) and the judge's own
    numbers (a reward model: both mean rewards; an LLM: its tie and first-position rates).
    """
    ids = prompt_ids(tok, prompts, gen.max_prompt_length)
    ref_ctx = contextlib.nullcontext(reference) if reference is not None else adapters_disabled(policy)
    ours = generate(policy, tok, ids, **sampling(gen))
    with ref_ctx as ref:
        theirs = generate(ref, tok, ids, **sampling(gen))
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


def sampled_kl(policy: Any, reference: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec) -> float:
    """KL(pi_T || ref_T) per sequence, from completions sampled from the policy at temperature T (see the
    module docstring): both models' log-probs of the same sampled tokens, tempered by the same T."""
    t = gen.temperature if gen.temperature > 0 else 1.0
    ids = prompt_ids(tok, prompts, gen.max_prompt_length)
    ours = generate(policy, tok, ids, max_new_tokens=gen.max_new_tokens, temperature=t, top_p=1.0,
                    batch_size=gen.batch_size, seed=gen.seed)
    policy_lp = completion_logprobs(policy, ours, tok.pad_token_id, gen.batch_size, temperature=t)
    ref_lp = completion_logprobs(reference, ours, tok.pad_token_id, gen.batch_size, temperature=t)
    return kl_from_samples([x.tolist() for x in policy_lp], [x.tolist() for x in ref_lp])


def sample_table(policy: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec) -> list[dict[str, Any]]:
    """The policy's answers alone (the baseline row has no start model to set beside it)."""
    done = generate(policy, tok, prompt_ids(tok, prompts, gen.max_prompt_length), **sampling(gen))
    return [{"prompt": p[-1]["content"], "policy": c.text} for p, c in zip(prompts, done)]
