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
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.utils import pad

from align.console import progress
from align.data import render_chats


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
    """Sample one completion per prompt (greedy when temperature is 0), batched with a KV cache.

    Prompts are sorted by length and left-padded a batch at a time; a completion ends at its first stop
    token (kept: `stop_token_ids`) or after `max_new_tokens`, and a finished row leaves the batch (its KV
    cache rows dropped), so the rows still running do not pay for it. Tokens are drawn from softmax(logits /
    temperature), restricted to the top_p nucleus when top_p < 1, and from nothing else: the model's own
    `generation_config` knobs (repetition_penalty, top_k, typical_p, no_repeat_ngram_size, min_length,
    bad_words_ids, ...) are never applied, so PPO's log-probs are those of the distribution sampled.
    With `seed`, the same model and prompts give the same completions (a private generator: the global
    random state is left alone). A `streamer` (transformers' interface, e.g. `TextIteratorStreamer`) gets
    one prompt's tokens by `put(ids)` as they are sampled and `end()` after the last (`align chat`).
    """
    if streamer is not None and len(prompts) != 1:
        raise ValueError("a streamer takes the tokens of one prompt")
    device = next(model.parameters()).device
    stop = torch.tensor(stop_token_ids(tok, model), device=device)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None
    out: list[Completion | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            rows = [torch.tensor(prompts[i]) for i in idx]
            ids = pad(rows, padding_value=tok.pad_token_id, padding_side="left").to(device)
            mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
            tokens, logprobs, lengths = _decode(model, ids, mask, stop, max_new_tokens, temperature, top_p, generator,
                                                streamer)
            for b, i in enumerate(idx):
                n = int(lengths[b])
                completion = tokens[b, :n].tolist()
                finished = n > 0 and completion[-1] in stop
                out[i] = Completion(list(prompts[i]), completion, tok.decode(completion, skip_special_tokens=True),
                                    finished, logprobs[b, :n].tolist())
            progress(start + len(idx), len(order), "prompts generated")
    if streamer is not None:
        streamer.end()
    return out  # type: ignore[return-value]


def _decode(model: Any, ids: torch.Tensor, mask: torch.Tensor, stop: torch.Tensor, max_new_tokens: int,
            temperature: float, top_p: float, generator: torch.Generator | None, streamer: Any = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One left-padded batch: (tokens [B, max_new_tokens], their log-probs, each row's length incl. its stop
    token). Rows that stopped are cut out of the batch and its KV cache before the next step."""
    n = ids.shape[0]
    tokens = ids.new_zeros(n, max_new_tokens)
    logprobs = torch.zeros(n, max_new_tokens)
    lengths = torch.full((n,), max_new_tokens)
    alive = torch.arange(n, device=ids.device)  # batch row of each running row
    positions = mask.cumsum(1) - 1  # the real tokens' positions, as generate() numbers them under left padding
    logits, cache = _prefill(model, ids, mask, positions.clamp(min=0))
    position = positions[:, -1]
    for step in range(max_new_tokens):
        token, logprob = _pick(logits.float(), temperature, top_p, generator)
        tokens[alive, step], logprobs[alive, step] = token, logprob.cpu()
        if streamer is not None:
            streamer.put(token.cpu())
        done = torch.isin(token, stop)
        lengths[alive[done].cpu()] = step + 1
        if step + 1 == max_new_tokens or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, token, mask, position = alive[keep], token[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], 1)
        position = position + 1
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None], cache=cache,
                       use_cache=True).logits[:, -1]
    return tokens.cpu(), logprobs, lengths


def _prefill(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
             group: int = 4) -> tuple[torch.Tensor, Any]:
    """The prompts' forward: the last position's logits and the KV cache. Run `group` rows at a time, each
    group cut to its own longest prompt (the batch is sorted by length, so a group's rows are alike), then
    the groups' caches left-padded to the batch's width and joined: padding the whole batch to its longest
    prompt would compute up to half its positions for nothing. Caches other than plain full-attention layers
    (sliding windows, ...) take the one padded forward."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    keep = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
    lengths, width = mask.sum(1), ids.shape[1]
    if len(ids) > group:
        parts = []
        for s in range(0, len(ids), group):
            w = int(lengths[s:s + group].max())
            parts.append(model(input_ids=ids[s:s + group, -w:], attention_mask=mask[s:s + group, -w:],
                               position_ids=positions[s:s + group, -w:], use_cache=True, **keep))
        if all(type(layer) is DynamicLayer for p in parts for layer in p.cache.layers):
            cache = DynamicCache()
            for i in range(len(parts[0].cache.layers)):
                k, v = (torch.cat([torch.nn.functional.pad(getattr(p.cache.layers[i], kind),
                                                           (0, 0, width - p.cache.layers[i].keys.shape[2], 0))
                                   for p in parts]) for kind in ("keys", "values"))
                cache.update(k, v, i)
            return torch.cat([p.logits[:, -1] for p in parts]), cache
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **keep)
    return out.logits[:, -1], out.cache


def _pick(logits: torch.Tensor, temperature: float, top_p: float,
          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's next token and its log-prob under the distribution it was drawn from (greedy: argmax, and
    its log-prob under the untempered distribution)."""
    if temperature > 0:
        logits = logits / temperature
        if top_p < 1.0:
            logits = _nucleus(logits, top_p)
    logprobs = torch.log_softmax(logits, -1)
    token = logits.argmax(-1) if temperature <= 0 else \
        torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(1)
    return token, logprobs.gather(-1, token[:, None]).squeeze(1)


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The logits outside each row's top_p nucleus set to -inf (transformers' TopPLogitsWarper: the least
    likely tokens whose total probability is at most 1 - top_p go; the most likely one always stays)."""
    ascending, order = torch.sort(logits, descending=False)
    drop = ascending.softmax(-1).cumsum(-1) <= 1 - top_p
    drop[:, -1] = False
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def _takes_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward can compute logits at the last position only (a prompt batch's full
    [batch, length, vocabulary] logits would be GBs for long prompts and large vocabularies)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


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
                lp = torch.log_softmax(logits[b, :n].float() / temperature, -1)
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
