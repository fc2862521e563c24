"""The batch decoder behind `align.generation.generate`: a running batch that prompts join and leave.

Rows are prefilled a few at a time and joined to the running batch (KV caches and attention masks
left-padded to one width); every step samples each row's next token from its own random stream, drops the
rows that stopped (their cache rows and the columns that are padding in every row left) and runs one
forward for the others. Keys and values are written into room reserved ahead (`GrowingLayer`) instead of
concatenated: the dynamic cache's copy of every layer at every step was a fifth of a CPU decode step.
Models whose cache is not plain full attention (sliding windows, ...) keep their own cache and decode one
batch at a time.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer
from trl.trainer.utils import pad


@dataclass
class Row:
    index: int  # the prompt's position in the caller's list
    prompt: list[int]
    generator: torch.Generator
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class Decoder:
    """The running batch: its rows, their KV cache (left-padded to one width), attention mask, last
    positions and next-token logits. `run` yields each row when it finishes."""

    def __init__(self, model: Any, pad_token_id: int, stop: torch.Tensor, max_new_tokens: int, temperature: float,
                 top_p: float, streamer: Any) -> None:
        self.model, self.pad, self.stop, self.stop_set = model, pad_token_id, stop, set(stop.tolist())
        self.max_new, self.temperature, self.top_p, self.streamer = max_new_tokens, temperature, top_p, streamer
        self.keep = {"logits_to_keep": 1} if _takes_logits_to_keep(model) else {}
        self.rows: list[Row] = []
        self.cache: Any = None
        self.joinable = True  # plain full-attention layers: rows can be joined and the cache grown in place

    def run(self, waiting: list[Row], batch_size: int) -> Iterator[Row]:
        queue = list(reversed(waiting))  # popped from the end: shortest prompt first
        # rows join when a quarter of the batch is free (or it is empty): each join copies the cache once
        refill = max(1, batch_size // 4)
        while queue or self.rows:
            free = batch_size - len(self.rows)
            if queue and (not self.rows or (self.joinable and free >= min(refill, len(queue)))):
                self._admit([queue.pop() for _ in range(min(free, len(queue)))])
            yield from self._step()

    def _step(self) -> list[Row]:
        """Sample each row's next token; drop the rows that stopped; one forward for the others."""
        token, logprob = pick(self.logits.float(), self.temperature, self.top_p, [r.generator for r in self.rows])
        if self.streamer is not None:
            self.streamer.put(token.cpu())
        done = torch.isin(token, self.stop)
        for row, t, lp in zip(self.rows, token.tolist(), logprob.tolist()):
            row.ids.append(t)
            row.logprobs.append(lp)
        done |= torch.tensor([len(r.ids) >= self.max_new for r in self.rows], device=done.device)
        finished = [r for r, d in zip(self.rows, done.tolist()) if d]
        if finished:
            keep = (~done).nonzero().squeeze(1)
            self.rows = [r for r, d in zip(self.rows, done.tolist()) if not d]
            if not self.rows:
                self.cache = None
                return finished
            token = token[keep]
            self._select(keep)
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], 1)
        self.position = self.position + 1
        self.logits = self.model(input_ids=token[:, None], attention_mask=self.mask,
                                 position_ids=self.position[:, None], cache=self.cache, use_cache=True).logits[:, -1]
        return finished

    def _admit(self, new: list[Row], group: int = 4) -> None:
        """Prefill the new rows `group` at a time, each group cut to its own longest prompt (they come sorted
        by length, so a group's rows are alike: padding all to the longest would compute up to half the
        positions for nothing), and join each to the batch."""
        for s in range(0, len(new), group):
            part = new[s:s + group]
            rows = [torch.tensor(r.prompt) for r in part]
            device = self.stop.device
            ids = pad(rows, padding_value=self.pad, padding_side="left").to(device)
            mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left").to(device)
            positions = (mask.cumsum(1) - 1).clamp(min=0)  # real tokens' positions, as generate() numbers them
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **self.keep)
            self._join(part, out.cache, mask, positions[:, -1], out.logits[:, -1])

    def _join(self, rows: list[Row], cache: Any, mask: torch.Tensor, position: torch.Tensor,
              logits: torch.Tensor) -> None:
        """Add prefilled rows to the batch: both caches and masks left-padded to the wider of the two."""
        if self.cache is None:
            self.rows, self.mask, self.position, self.logits = list(rows), mask, position, logits
            self.joinable = all(type(layer) is DynamicLayer for layer in cache.layers)
            self.cache = _grown(cache) if self.joinable else cache
            return
        width = max(self.mask.shape[1], mask.shape[1])
        layers = [[torch.cat([_left_pad(getattr(old, kind), width), _left_pad(getattr(new, kind), width)])
                   for kind in ("keys", "values")] for old, new in zip(self.cache.layers, cache.layers)]
        self.cache = _grown(DynamicCache(), layers)
        self.mask = torch.cat([_left_pad(self.mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self.rows += rows
        self.position, self.logits = torch.cat([self.position, position]), torch.cat([self.logits, logits])

    def _select(self, keep: torch.Tensor) -> None:
        """Keep the rows `keep`; with a joinable cache also cut the columns that are padding in every row left
        (the rows that joined late were padded to the width of those that finished)."""
        self.mask, self.position = self.mask[keep], self.position[keep]
        if not self.joinable:
            self.cache.batch_select_indices(keep)
            return
        lead = int((self.mask.cumsum(1) == 0).sum(1).min())
        self.mask = self.mask[:, lead:]
        self.cache = _grown(DynamicCache(), [[getattr(layer, kind)[keep, :, lead:] for kind in ("keys", "values")]
                                             for layer in self.cache.layers])


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer that writes each step's keys and values into room reserved ahead
    (`DynamicLayer` concatenates, copying the whole cache at every step: a fifth of a CPU decode step)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self._k, self._v, self._n = keys, values, keys.shape[-2]
        self._reserve(64)

    def _reserve(self, room: int) -> None:
        n = self._n
        self._k, self._v = (torch.cat([t[:, :, :n], t.new_empty(*t.shape[:2], room, t.shape[3])], 2)
                            for t in (self._k, self._v))
        self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n, m = self._n, key_states.shape[-2]
        if n + m > self._k.shape[-2]:
            self._reserve(max(m, n))
        self._k[:, :, n:n + m], self._v[:, :, n:n + m] = key_states, value_states
        self._n = n + m
        self.keys, self.values = self._k[:, :, :n + m], self._v[:, :, :n + m]
        return self.keys, self.values


def _grown(cache: Any, layers: list[list[torch.Tensor]] | None = None) -> Any:
    """`cache` with its layers (or the given [keys, values] per layer) as `GrowingLayer`s."""
    layers = layers if layers is not None else [[layer.keys, layer.values] for layer in cache.layers]
    cache.layers = [GrowingLayer(k, v) for k, v in layers]
    return cache


def _left_pad(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """`t` zero-padded on the left of dimension `dim` (a cache's sequence, a mask's columns) to `width`."""
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    return torch.cat([t.new_zeros(*t.shape[:dim], missing, *t.shape[dim + 1:]), t], dim)


def tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature, shifted first so each row's largest is 0: the same softmax, but a temperature near 0
    (1e-30, still > 0) cannot overflow the largest to inf, which turns the softmax into NaN."""
    return (logits - logits.amax(-1, keepdim=True)) / temperature


def pick(logits: torch.Tensor, temperature: float, top_p: float,
          generators: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's next token (row b drawn with `generators[b]`) and its log-prob under the distribution it was
    drawn from (greedy: argmax, and its log-prob under the untempered distribution)."""
    if temperature > 0:
        logits = tempered(logits, temperature)
        if top_p < 1.0:
            logits = nucleus(logits, top_p)
    logprobs = torch.log_softmax(logits, -1)
    if temperature <= 0:
        token = logits.argmax(-1)
    else:
        probs = logprobs.exp()
        token = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
    return token, logprobs.gather(-1, token[:, None]).squeeze(1)


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
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
