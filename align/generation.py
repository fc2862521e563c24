"""Running models on prompts: sampling completions, per-token log-probs, and reward-model scores.

The primitives every on-policy stage and every generation-based evaluation share (DPO's win rate and
KL, PPO's rollouts, the `win_rate` / `kl` / `samples` / `compliance` hooks). All work on token ids;
prompts are chat messages rendered with the tokenizer's template and a generation prompt. A completion
stops at EOS or at the template's end-of-turn token; tokens are drawn from softmax(logits / temperature)
within top_p and nothing else (never the model's generation_config knobs), so on-policy log-probs are
those of the distribution sampled.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import pad

from align.console import progress
from align.data import render_chats
from align.decoding import Decoder, Row, tempered


@dataclass
class Completion:
    prompt_ids: list[int]
    ids: list[int]  # the completion's tokens, ending with EOS when `finished`
    text: str
    finished: bool  # False: cut by max_new_tokens before EOS
    logprobs: list[float] | None = None  # each token's log-prob under the distribution it was sampled from


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


@contextlib.contextmanager
def sampling_only(model: Any) -> Iterator[Any]:
    """The model with a generation_config that holds only its token ids, for samplers that call
    `model.generate` (TRL's rloo and grpo): transformers fills every knob a sampler leaves unset from the
    model's own config (an Instruct model's repetition_penalty, top_k, typical_p, no_repeat_ngram_size, ...),
    which would sample another distribution than the one trained on. Restored after, so that the saved
    artifact keeps the model's config."""
    from transformers import GenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = base.generation_config
    base.generation_config = GenerationConfig(bos_token_id=saved.bos_token_id, eos_token_id=saved.eos_token_id,
                                              pad_token_id=saved.pad_token_id)
    try:
        yield model
    finally:
        base.generation_config = saved


def prompt_ids(tok: Any, prompts: Sequence[list[dict]], max_prompt_length: int | None = None) -> list[list[int]]:
    """Chat prompts -> token ids ending with the assistant's generation prompt, left-truncated."""
    out = render_chats(tok, prompts, add_generation_prompt=True)
    return [ids[-max_prompt_length:] if max_prompt_length else ids for ids in out]


@torch.no_grad()
def generate(model: Any, tok: Any, prompts: Sequence[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_p: float = 1.0, batch_size: int = 16, seed: int | None = None,
             streamer: Any = None) -> list[Completion]:
    """Sample one completion per prompt (greedy when temperature is 0), up to `batch_size` rows at a time.

    Prompts are taken shortest first; a completion ends at its first stop token (kept: `stop_token_ids`) or
    after `max_new_tokens`. A finished row leaves the batch (its KV cache rows dropped) and waiting prompts
    take the free rows (their prefill joined to the running batch's cache), so the batch stays full until the
    prompts run out instead of waiting for its longest answer. Tokens are drawn from softmax(logits /
    temperature), restricted to the top_p nucleus when top_p < 1, and from nothing else: the model's own
    `generation_config` knobs (repetition_penalty, top_k, typical_p, no_repeat_ngram_size, min_length,
    bad_words_ids, ...) are never applied, so PPO's log-probs are those of the distribution sampled.
    Each prompt draws from its own random stream (`prompt_seeds`: from `seed`, its tokens and how many times
    the same prompt came before it; without `seed`, from one draw of torch's global generator), so a
    completion does not depend on which other prompts share its call or batch: the same seed gives the same
    completion for a prompt at any `batch_size` and in any list, and the global random state is left alone
    when `seed` is given. A `streamer` (transformers' interface, e.g. `TextIteratorStreamer`)
    gets one prompt's tokens by `put(ids)` as they are sampled and `end()` after the last (`align chat`).
    """
    if streamer is not None and len(prompts) != 1:
        raise ValueError("a streamer takes the tokens of one prompt")
    device = next(model.parameters()).device
    streams = prompt_seeds(prompts, seed if seed is not None else int(torch.randint(2**62, ())))
    rows = [Row(i, list(prompts[i]), torch.Generator(device).manual_seed(streams[i]))
            for i in sorted(range(len(prompts)), key=lambda i: len(prompts[i]))]
    decoder = Decoder(model, tok.pad_token_id, torch.tensor(stop_token_ids(tok, model), device=device),
                       max_new_tokens, temperature, top_p, streamer)
    out: list[Completion | None] = [None] * len(prompts)
    with eval_mode(model):
        for done, row in enumerate(decoder.run(rows, batch_size), 1):
            finished = bool(row.ids) and row.ids[-1] in decoder.stop_set
            out[row.index] = Completion(row.prompt, row.ids, tok.decode(row.ids, skip_special_tokens=True), finished,
                                        row.logprobs)
            progress(done, len(rows), "prompts generated")
    if streamer is not None:
        streamer.end()
    return out  # type: ignore[return-value]


def prompt_seeds(prompts: Sequence[Sequence[int]], seed: int) -> list[int]:
    """Each prompt's random stream: a hash of the seed, its tokens and its repeat count (the k-th copy of a
    prompt in a list gets another stream than the first: repeated prompts are repeated samples)."""
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for ids in prompts:
        key = tuple(ids)
        seen[key] = seen.get(key, -1) + 1
        digest = hashlib.blake2b(repr((seed, key, seen[key])).encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little") >> 1)
    return out


def stop_token_ids(tok: Any, model: Any) -> list[int]:
    """The tokens that end a completion: the model's and the tokenizer's EOS, and the token that closes an
    assistant turn in the chat template, which is often another one (Qwen2.5 base: `<|im_end|>` ends a turn,
    EOS is `<|endoftext|>`; Llama 3: `<|eot_id|>`)."""
    ids = model.generation_config.eos_token_id if getattr(model, "generation_config", None) else None
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    ids += [tok.eos_token_id] if tok.eos_token_id is not None else []
    return sorted(set(ids) | set(turn_end_ids(tok)))


def turn_end_ids(tok: Any) -> list[int]:
    """The special token that follows an assistant message's content in the chat template (none without a
    template, or when only plain text follows it): found by rendering a conversation whose assistant
    content is a probe string and tokenizing what comes after it."""
    if not getattr(tok, "chat_template", None):
        return []
    probe = "PROBE_4f1c_END"
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": probe}],
                                       tokenize=False)
    except Exception:  # a template that refuses this conversation (e.g. one requiring a system turn)
        return []
    if probe not in text:
        return []
    special = set(tok.all_special_ids) | {i for i, t in tok.added_tokens_decoder.items() if t.special}
    after = tok(text[text.index(probe) + len(probe):], add_special_tokens=False)["input_ids"]
    return next(([t] for t in after if t in special), [])


@torch.no_grad()
def completion_logprobs(model: Any, completions: Sequence[Completion], pad_token_id: int,
                        batch_size: int = 16, temperature: float = 1.0) -> list[torch.Tensor]:
    """Per-token log-probabilities of each completion given its prompt (one 1-D float tensor each), under
    softmax(logits / temperature): the distribution `generate` samples from at that temperature.

    Through the model's own forward, so its output transform applies (Gemma 2's final-logit soft-capping,
    Cohere's `logit_scale`, ...), with the LM head restricted to the completions' positions (`logits_to_keep`):
    prompts are left-padded and completions right-padded, so those positions are the batch's last columns.
    Log-softmax runs in fp32 one row at a time, so no fp32 full-vocabulary tensor for the whole batch is held.
    """
    device = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(completions)
    order = sorted(range(len(completions)), key=lambda i: len(completions[i].prompt_ids) + len(completions[i].ids))
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            prompts = [torch.tensor(completions[i].prompt_ids) for i in idx]
            answers = [torch.tensor(completions[i].ids) for i in idx]
            mask = torch.cat([pad([torch.ones_like(r) for r in prompts], padding_value=0, padding_side="left"),
                              pad([torch.ones_like(r) for r in answers], padding_value=0, padding_side="right")], 1)
            ids = torch.cat([pad(prompts, padding_value=pad_token_id, padding_side="left"),
                             pad(answers, padding_value=pad_token_id, padding_side="right")], 1).to(device)
            width = max(len(a) for a in answers)
            logits = model(input_ids=ids, attention_mask=mask.to(device), position_ids=(mask.cumsum(1) - 1).clamp(
                min=0).to(device), use_cache=False, logits_to_keep=width + 1).logits[:, :-1]
            for b, i in enumerate(idx):
                n = len(completions[i].ids)
                target = ids[b, ids.shape[1] - width:ids.shape[1] - width + n]
                lp = torch.log_softmax(tempered(logits[b, :n].float(), temperature), -1)
                out[i] = lp.gather(-1, target[:, None]).squeeze(-1).cpu()
            progress(start + len(idx), len(order), "sequences scored")
    return out  # type: ignore[return-value]


def token_nll(model: Any, rows: Sequence[list[int]], pad_token_id: int, batch_size: int = 8) -> tuple[float, int]:
    """Summed negative log-likelihood of every next token of every row, and how many tokens that is
    (perplexity = exp(sum / count)): `completion_logprobs` with the first token as the prompt."""
    rows = [r for r in rows if len(r) > 1]
    lps = completion_logprobs(model, [Completion(r[:1], r[1:], "", True) for r in rows], pad_token_id, batch_size)
    return -float(sum(lp.sum() for lp in lps)), sum(len(r) - 1 for r in rows)


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
            progress(start + len(idx), len(order), "sequences scored")
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
