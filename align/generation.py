"""Running models on prompts: sampling completions, per-token log-probs, and reward-model scores.

The primitives every on-policy stage and every generation-based evaluation share (DPO's win rate and
KL, PPO's rollouts, the `win_rate` / `kl` / `samples` / `compliance` hooks). All work on token ids;
prompts are chat messages rendered with the tokenizer's template and a generation prompt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import pad

from align.data import render_chats


@dataclass
class Completion:
    prompt_ids: list[int]
    ids: list[int]  # the completion's tokens, ending with EOS when `finished`
    text: str
    finished: bool  # False: cut by max_new_tokens before EOS


@contextlib.contextmanager
def adapters_disabled(model: Any) -> Iterator[Any]:
    """The model as it was before its (LoRA) adapters: the reference policy, with no second copy in memory."""
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            yield model
    else:
        yield model


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def prompt_ids(tok: Any, prompts: Sequence[list[dict]], max_prompt_length: int | None = None) -> list[list[int]]:
    """Chat prompts -> token ids ending with the assistant's generation prompt, left-truncated."""
    out = render_chats(tok, prompts, add_generation_prompt=True)
    return [ids[-max_prompt_length:] if max_prompt_length else ids for ids in out]


@torch.no_grad()
def generate(model: Any, tok: Any, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, batch_size: int = 16, seed: int | None = None) -> list[Completion]:
    """Sample one completion per prompt (greedy when temperature is 0), batched with a KV cache.

    Prompts are left-padded and batched by length; a completion ends at the first EOS (kept) or after
    `max_new_tokens`. With `seed`, the same model and prompts give the same completions.
    """
    device = next(model.parameters()).device
    eos = _eos_ids(tok, model)
    out: list[Completion | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if seed is not None:
        torch.manual_seed(seed)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            rows = [torch.tensor(prompts[i]) for i in idx]
            ids = pad(rows, padding_value=tok.pad_token_id, padding_side="left").to(device)
            mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
            sampled = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None, top_p=top_p if temperature > 0 else None,
                top_k=0 if temperature > 0 else None, pad_token_id=tok.pad_token_id, eos_token_id=eos,
                use_cache=True)
            for i, row in zip(idx, sampled[:, ids.shape[1]:].tolist()):
                cut = next((j for j, t in enumerate(row) if t in eos), None)
                completion = row[:cut + 1] if cut is not None else row
                out[i] = Completion(list(prompts[i]), completion, tok.decode(completion, skip_special_tokens=True),
                                    cut is not None)
    return out  # type: ignore[return-value]


def _eos_ids(tok: Any, model: Any) -> list[int]:
    ids = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return sorted(set(ids) | ({tok.eos_token_id} if tok.eos_token_id is not None else set()))


@torch.no_grad()
def completion_logprobs(model: Any, completions: Sequence[Completion], pad_token_id: int,
                        batch_size: int = 16, temperature: float = 1.0) -> list[torch.Tensor]:
    """Per-token log-probabilities of each completion given its prompt (one 1-D float tensor each), under
    softmax(logits / temperature): the distribution `generate` samples from at that temperature.

    Log-softmax runs only over the completion's positions, one row at a time, so no full-vocabulary
    fp32 tensor for the whole batch is ever held.
    """
    device = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(completions)
    order = sorted(range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].ids))
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            rows = [torch.tensor(completions[i].prompt_ids + completions[i].ids) for i in idx]
            ids = pad(rows, padding_value=pad_token_id, padding_side="right").to(device)
            mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="right").to(device)
            hidden = _last_hidden(model, ids, mask)
            head = model.get_output_embeddings()
            for b, i in enumerate(idx):
                n_prompt, n = len(completions[i].prompt_ids), len(completions[i].ids)
                logits = head(hidden[b, n_prompt - 1:n_prompt + n - 1]).float() / temperature
                target = ids[b, n_prompt:n_prompt + n]
                out[i] = torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1).cpu()
    return out  # type: ignore[return-value]


def token_nll(model: Any, rows: Sequence[list[int]], pad_token_id: int, batch_size: int = 8) -> tuple[float, int]:
    """Summed negative log-likelihood of every next token of every row, and how many tokens that is
    (perplexity = exp(sum / count)): `completion_logprobs` with the first token as the prompt."""
    rows = [r for r in rows if len(r) > 1]
    lps = completion_logprobs(model, [Completion(r[:1], r[1:], "", True) for r in rows], pad_token_id, batch_size)
    return -float(sum(lp.sum() for lp in lps)), sum(len(r) - 1 for r in rows)


def _last_hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The final hidden states, without computing the LM head over the whole batch."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state


@torch.no_grad()
def score(model: Any, rows: Sequence[list[int]], pad_token_id: int, batch_size: int = 16) -> list[float]:
    """A reward model's score for each token-id row (batched by length to waste little padding)."""
    device = next(model.parameters()).device
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = [0.0] * len(rows)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids = [torch.tensor(rows[i]) for i in idx]
            batch = pad(ids, padding_value=pad_token_id, padding_side="right").to(device)
            mask = pad([torch.ones_like(x) for x in ids], padding_value=0, padding_side="right").to(device)
            rewards = model(input_ids=batch, attention_mask=mask, use_cache=False).logits.squeeze(-1).float()
            for i, r in zip(idx, rewards.tolist()):
                out[i] = r
    return out


def score_rankings(model: Any, rows: Sequence[dict], batch_size: int, pad_token_id: int) -> list[list[float]]:
    """A reward model's score of every response of every tokenized ranking (`rankings.tokenize_rankings`),
    grouped back per prompt; all responses are batched together by length."""
    flat = score(model, [ids for row in rows for ids in row["input_ids"]], pad_token_id, batch_size)
    out, i = [], 0
    for row in rows:
        out.append(flat[i:i + len(row["input_ids"])])
        i += len(row["input_ids"])
    return out


def score_completions(rm: Any, tok: Any, prompts: Sequence[list[dict]], texts: Sequence[str],
                      max_length: int | None = None, batch_size: int = 16) -> list[float]:
    """The reward model's score of each prompt + response, rendered as the RM saw its training data
    (the full chat, left-truncated to `max_length`: the score is read at the last token)."""
    rows = render_chats(tok, [list(p) + [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts)],
                        add_generation_prompt=False)
    return score(rm, [r[-max_length:] if max_length else r for r in rows], tok.pad_token_id, batch_size)
