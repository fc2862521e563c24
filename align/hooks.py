"""Evaluation hooks: measurements of a model on held-out data, run after a stage (and between stages).

`compare_policies` is the generation-based evaluation every policy stage reports (DPO, PPO): both
the trained policy and the model it started from answer the same held-out prompts; the recipe's
reward model scores both answers (win rate, ties half); the policy's own samples give a Monte-Carlo
KL to the reference; a few prompts go into a side-by-side sample table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from align.evaluation import kl_from_samples, win_rate
from align.generation import adapters_disabled, completion_logprobs, generate, prompt_ids, score_completions


@dataclass
class GenerationSpec:
    max_new_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 1.0
    batch_size: int = 16
    max_prompt_length: int | None = 256
    seed: int = 0


def compare_policies(policy: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec,
                     reference: Any | None = None, judge: Any | None = None, judge_max_length: int | None = None,
                     n_samples: int = 8) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of `policy` against `reference` (None: the policy with its adapters disabled) and a sample table.

    Metrics: kl (per sequence, from the policy's samples), mean response length and EOS rate of each;
    with a `judge` reward model, the mean reward of each and the policy's win rate (ties half).
    """
    ids = prompt_ids(tok, prompts, gen.max_prompt_length)
    ref_ctx = contextlib.nullcontext(reference) if reference is not None else adapters_disabled(policy)
    sample = dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                  batch_size=gen.batch_size, seed=gen.seed)
    ours = generate(policy, tok, ids, **sample)
    policy_lp = completion_logprobs(policy, ours, tok.pad_token_id, gen.batch_size)
    with ref_ctx as ref:
        theirs = generate(ref, tok, ids, **sample)
        ref_lp = completion_logprobs(ref, ours, tok.pad_token_id, gen.batch_size)
    metrics = {"kl": kl_from_samples([x.tolist() for x in policy_lp], [x.tolist() for x in ref_lp]),
               "response_length": sum(len(c.ids) for c in ours) / len(ours),
               "response_length_start": sum(len(c.ids) for c in theirs) / len(theirs),
               "eos_rate": sum(c.finished for c in ours) / len(ours),
               "eval_prompts": len(prompts)}
    rewards: tuple[list[float], list[float]] | None = None
    if judge is not None:
        rewards = (score_completions(judge, tok, prompts, [c.text for c in ours], judge_max_length, gen.batch_size),
                   score_completions(judge, tok, prompts, [c.text for c in theirs], judge_max_length,
                                     gen.batch_size))
        metrics |= {"win_rate": win_rate(*rewards), "reward": sum(rewards[0]) / len(prompts),
                    "reward_start": sum(rewards[1]) / len(prompts)}
    table = [{"prompt": p[-1]["content"], "start": t.text, "policy": o.text,
              **({"reward_start": rewards[1][i], "reward_policy": rewards[0][i]} if rewards else {})}
             for i, (p, o, t) in enumerate(zip(prompts[:n_samples], ours, theirs))]
    return metrics, table
