"""Ranking data: the one home for preference records (reward models now, DPO later).

A `Ranking` is a prompt (chat messages), two or more responses, and a best-to-worst order of response
indices in groups (a group of several indices is a tie). `parse_ranking` reads every supported form,
detected per record, with no conversion step:

* native K-wise: `{"prompt": str | messages, "responses": [str | assistant message, ...],
  "ranking": [2, [0, 3], 1], "annotator"?, "scores"?}`;
* pairwise: `prompt` / `chosen` / `rejected` strings, optional numeric `margin`;
* TRL conversational preference: `chosen` / `rejected` message lists, with an explicit `prompt` or an
  implicit one (their shared leading messages);
* Anthropic hh-rlhf transcripts: `chosen` / `rejected` strings with `\\n\\nHuman:` / `\\n\\nAssistant:`
  markers (the text up to the last `\\n\\nAssistant:` is the prompt, shared by both);
* OpenAssistant K-wise groups: `conversation` (roles prompter/assistant) and `replies` with `rank`
  (0 = best; equal ranks are ties).

Every bad record is an `AlignError` naming the file, the line and the field; `check_file` lists all
of a file's bad lines at once (`align data check FILE`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

from align.data import as_messages, check_messages, loads, read_bytes, read_records, regular_file, render_chats
from align.errors import AlignError

PairMode = Literal["all", "best_vs_rest", "adjacent"]
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_OASST_ROLES = {"prompter": "user", "assistant": "assistant", "system": "system"}


@dataclass
class Ranking:
    prompt: list[dict]  # chat messages, the conversation the responses answer
    responses: list[str]
    ranking: list[list[int]]  # groups of response indices, best first; a group of several is a tie
    annotator: str | None = None
    scores: list[float] | None = None
    margin: float | None = None  # how much better the best is than the worst (pairwise records)

    def group_of(self) -> list[int]:
        """Per response, the position of its group in the ranking (0 = best)."""
        out = [0] * len(self.responses)
        for g, group in enumerate(self.ranking):
            for i in group:
                out[i] = g
        return out


# ---- pairs ----------------------------------------------------------------------------------------

def expand_pairs(ranking: Ranking) -> list[tuple[int, int]]:
    """Every (better, worse) pair the ranking implies: K(K-1)/2 for a strict ranking, none between ties."""
    return ordered_pairs(ranking.ranking)


def ordered_pairs(groups: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(better, worse) pairs of ranking groups (best first): each member of a group against every later one."""
    return [(a, b) for hi, lo in combinations(groups, 2) for a in hi for b in lo]


def to_pairs(ranking: Ranking, mode: PairMode = "all") -> list[tuple[int, int]]:
    """(better, worse) pairs: `all` of them, each of the best group against every other (`best_vs_rest`),
    or each group against the next one (`adjacent`)."""
    groups = ranking.ranking
    if mode == "all":
        return expand_pairs(ranking)
    if mode == "best_vs_rest":
        return [(a, b) for a in groups[0] for lo in groups[1:] for b in lo]
    if mode == "adjacent":
        return [(a, b) for hi, lo in zip(groups, groups[1:]) for a in hi for b in lo]
    raise ValueError(f"unknown pair mode {mode!r}; use all, best_vs_rest or adjacent")


def tokenize_rankings(rankings: list[Ranking], tok: Any, max_length: int) -> tuple[list[dict], int]:
    """One row per prompt: its responses' token ids (left-truncated), their group (0 = best), its margin."""
    rendered = iter(render_chats(tok, [r.prompt + [{"role": "assistant", "content": x}]
                                       for r in rankings for x in r.responses], add_generation_prompt=False))
    rows, truncated = [], 0
    for r in rankings:
        ids = [next(rendered) for _ in r.responses]
        truncated += sum(len(x) > max_length for x in ids)
        rows.append({"input_ids": [x[-max_length:] for x in ids], "group": r.group_of(),
                     "margin": float(r.margin or 0.0)})
    return rows, truncated



# ---- reading --------------------------------------------------------------------------------------

def read_rankings(ref: str, split: str = "train") -> list[Ranking]:
    """Every record of a file, dataset folder or hub dataset as a `Ranking`; the first bad one raises."""
    return [parse_ranking(src, n, rec) for src, n, rec in read_records(ref, split)]


def parse_ranking(src: str, line: int, rec: dict[str, Any]) -> Ranking:
    """One record in any supported form -> a checked `Ranking` (an AlignError names file, line, field)."""
    where = f"{src} line {line}"
    try:
        if "responses" in rec or "ranking" in rec:
            return _native(rec, where)
        if "replies" in rec and "conversation" in rec:
            return _oasst(rec, where)
        if "chosen" in rec and "rejected" in rec:
            return _pairwise(rec, where)
    except AlignError as e:
        if not e.hint:
            e.hint = f"`align data check {src}` lists every bad line of the file"
        raise
    raise AlignError(f"{where}: not a ranking record: expected 'prompt'/'responses'/'ranking', "
                     "'prompt'/'chosen'/'rejected', or 'conversation'/'replies'",
                     hint=f"found fields: {', '.join(rec) or 'none'}")


def _native(rec: dict, where: str) -> Ranking:
    for key in ("prompt", "responses", "ranking"):
        if key not in rec:
            raise AlignError(f"{where}, field '{key}': missing (a K-wise record has prompt, responses, ranking)")
    prompt = _prompt(rec["prompt"], f"{where}, field 'prompt'")
    raw = rec["responses"]
    if not isinstance(raw, list):
        raise AlignError(f"{where}, field 'responses': expected a list, got {type(raw).__name__}")
    responses = [_response(r, f"{where}, field 'responses[{i}]'") for i, r in enumerate(raw)]
    groups = _groups(rec["ranking"], len(responses), f"{where}, field 'ranking'")
    scores = rec.get("scores")
    if scores is not None and (not isinstance(scores, list) or len(scores) != len(responses) or
                               not all(_is_number(s) for s in scores)):
        raise AlignError(f"{where}, field 'scores': expected {len(responses)} numbers (finite), one per response")
    annotator = rec.get("annotator")
    if annotator is not None and not isinstance(annotator, str):
        raise AlignError(f"{where}, field 'annotator': expected a string, got {type(annotator).__name__}")
    return _checked(Ranking(prompt, responses, groups, annotator, scores), where)


def _pairwise(rec: dict, where: str) -> Ranking:
    chosen, rejected = rec["chosen"], rec["rejected"]
    if isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = _split_conversations(rec, where)
    elif isinstance(chosen, str) and isinstance(rejected, str) and "prompt" not in rec and \
            chosen.lstrip(" ").startswith("\n\nHuman:"):
        prompt, chosen, rejected = _split_hh(chosen, rejected, where)
    elif "prompt" in rec:
        prompt = _prompt(rec["prompt"], f"{where}, field 'prompt'")
        chosen = _response(chosen, f"{where}, field 'chosen'")
        rejected = _response(rejected, f"{where}, field 'rejected'")
    else:
        raise AlignError(f"{where}, field 'prompt': missing: string 'chosen'/'rejected' need a 'prompt' "
                         "unless they are hh-rlhf transcripts ('\\n\\nHuman: ... \\n\\nAssistant: ...')")
    margin = rec.get("margin")
    if margin is not None and not _is_number(margin):
        raise AlignError(f"{where}, field 'margin': expected a number (finite), got {margin!r}")
    return _checked(Ranking(prompt, [chosen, rejected], [[0], [1]], margin=margin), where)


def _split_conversations(rec: dict, where: str) -> tuple[list[dict], str, str]:
    """TRL conversational preference: explicit prompt + one reply each, or full conversations whose
    shared leading messages are the prompt."""
    chosen = check_messages(rec["chosen"], f"{where}, field 'chosen'")
    rejected = check_messages(rec["rejected"], f"{where}, field 'rejected'")
    if "prompt" in rec:
        prompt = _prompt(rec["prompt"], f"{where}, field 'prompt'")
        k = len(prompt)  # UltraFeedback-style: the conversations repeat the prompt before the reply
        if chosen[:k] == prompt and rejected[:k] == prompt:
            chosen, rejected = chosen[k:], rejected[k:]
    else:
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if not prompt:
            raise AlignError(f"{where}, field 'chosen': shares no leading messages with 'rejected', so there "
                             "is no prompt; add a 'prompt' field")
    replies = []
    for key, msgs in (("chosen", chosen), ("rejected", rejected)):
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise AlignError(f"{where}, field '{key}': expected exactly one assistant reply after the prompt, "
                             f"got {len(msgs)} message(s)")
        replies.append(msgs[0]["content"])
    return prompt, replies[0], replies[1]


def _split_hh(chosen: str, rejected: str, where: str) -> tuple[list[dict], str, str]:
    cut_c, cut_r = chosen.rfind("\n\nAssistant:"), rejected.rfind("\n\nAssistant:")
    for key, cut in (("chosen", cut_c), ("rejected", cut_r)):
        if cut < 0:
            raise AlignError(f"{where}, field '{key}': no '\\n\\nAssistant:' turn in the transcript")
    if chosen[:cut_c] != rejected[:cut_r]:
        raise AlignError(f"{where}, field 'rejected': the transcript differs from 'chosen' before the last "
                         "Assistant turn, so the two replies do not answer the same prompt")
    parts = _HH_TURN.split(chosen[:cut_c])
    if parts[0].strip():
        raise AlignError(f"{where}, field 'chosen': text before the first '\\n\\nHuman:' marker")
    prompt = [{"role": "user" if who == "Human" else "assistant", "content": text.strip()}
              for who, text in zip(parts[1::2], parts[2::2])]
    prompt = check_messages(prompt, f"{where}, field 'chosen'")
    return (prompt, _text(chosen[cut_c + 12:].strip(), f"{where}, field 'chosen' (last Assistant turn)"),
            _text(rejected[cut_r + 12:].strip(), f"{where}, field 'rejected' (last Assistant turn)"))


def _oasst(rec: dict, where: str) -> Ranking:
    conv = rec["conversation"]
    if not isinstance(conv, list) or not conv:
        raise AlignError(f"{where}, field 'conversation': expected a non-empty list of messages")
    prompt = []
    for i, m in enumerate(conv):
        if not isinstance(m, dict) or m.get("role") not in _OASST_ROLES or not isinstance(m.get("text"), str):
            raise AlignError(f"{where}, field 'conversation[{i}]': expected {{\"role\": prompter|assistant, "
                             f"\"text\": a string}}, got {json.dumps(m)[:80]}")
        prompt.append({"role": _OASST_ROLES[m["role"]], "content": m["text"]})
    prompt = check_messages(prompt, f"{where}, field 'conversation'")
    replies = rec["replies"]
    if not isinstance(replies, list):
        raise AlignError(f"{where}, field 'replies': expected a list, got {type(replies).__name__}")
    responses, ranks = [], []
    for i, r in enumerate(replies):
        if not isinstance(r, dict) or not isinstance(r.get("rank"), int) or isinstance(r.get("rank"), bool):
            raise AlignError(f"{where}, field 'replies[{i}].rank': expected an integer rank (0 = best)")
        responses.append(_text(r.get("text"), f"{where}, field 'replies[{i}].text'"))
        ranks.append(r["rank"])
    groups = [[i for i, r in enumerate(ranks) if r == rank] for rank in sorted(set(ranks))]
    return _checked(Ranking(prompt, responses, groups), where)


# ---- field checks ---------------------------------------------------------------------------------

def _groups(value: Any, k: int, where: str) -> list[list[int]]:
    if not isinstance(value, list):
        raise AlignError(f"{where}: expected a list of response indices, best first, got {type(value).__name__}")
    groups, seen = [], set()
    for item in value:
        group = item if isinstance(item, list) else [item]
        for i in group:
            if not isinstance(i, int) or isinstance(i, bool):
                raise AlignError(f"{where}: {json.dumps(i)} is not a response index (an integer, or a list of "
                                 "them for a tie)")
            if not 0 <= i < k:
                raise AlignError(f"{where}: index {i} is out of range ({k} responses: 0..{k - 1})")
            if i in seen:
                raise AlignError(f"{where}: index {i} appears twice")
            seen.add(i)
        if not group:
            raise AlignError(f"{where}: an empty tie group []")
        groups.append(list(group))
    missing = sorted(set(range(k)) - seen)
    if missing:
        raise AlignError(f"{where}: does not rank every response: missing {', '.join(map(str, missing))}")
    return groups


def _checked(r: Ranking, where: str) -> Ranking:
    """Rules on the whole record: at least two responses, a preference, no response given twice (a pair of
    equal texts teaches nothing, or the opposite of itself), a prompt the responses answer."""
    if len(r.responses) < 2:
        raise AlignError(f"{where}, field 'responses': {len(r.responses)} response(s); a ranking needs at least two")
    if len(r.ranking) < 2:
        raise AlignError(f"{where}, field 'ranking': every response is tied, so it states no preference")
    first: dict[str, int] = {}
    for i, text in enumerate(r.responses):
        j = first.setdefault(text.strip(), i)
        if j != i:
            what = "'chosen' and 'rejected' are" if len(r.responses) == 2 else f"responses {j} and {i} are"
            raise AlignError(f"{where}: {what} the same text, so the record states no preference between them",
                             hint="remove the duplicate response (or the record)")
    if r.prompt and r.prompt[-1]["role"] == "assistant":
        raise AlignError(f"{where}, field 'prompt': ends with an assistant turn; the responses must answer a user "
                         "message", hint="end the prompt with the user's message")
    return r


def _prompt(value: Any, where: str) -> list[dict]:
    return as_messages(value, "user", where)


def _response(value: Any, where: str) -> str:
    if isinstance(value, dict):
        if value.get("role") != "assistant":
            raise AlignError(f"{where}: a message response needs role 'assistant', got {value.get('role')!r}")
        value = value.get("content")
    return _text(value, where)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise AlignError(f"{where}: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise AlignError(f"{where}: empty text")
    return value


def _is_number(v: Any) -> bool:
    """A finite number that a float holds (NaN or inf in a margin or score would make the loss NaN; an integer
    past 1.8e308 has no float at all)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


# ---- checking a whole file ------------------------------------------------------------------------

def check_file(path: str | Path) -> list[str]:
    """A message for EVERY bad line of a rankings file (bad JSON included), not just the first."""
    return scan_file(path)[1]


def scan_file(path: str | Path) -> tuple[list[Ranking], list[str]]:
    """The good records of a file and a message for each bad line (an undecodable line is one bad line)."""
    ref, path = str(path), Path(path).expanduser()
    regular_file(path, ref)
    if path.suffix != ".jsonl" or not path.is_file():  # JSON lists, Parquet and datasets: the reader's errors stand
        try:
            good = read_rankings(ref)
        except AlignError as e:
            return [], [e.message + (f" ({e.hint})" if e.hint else "")]
        return good, [] if good else [f"{ref}: no records (a .json [] or a CSV or Parquet file with no rows)"]
    try:
        raw = read_bytes(path)
    except AlignError as e:
        return [], [e.message + (f" ({e.hint})" if e.hint else "")]
    good, bad = [], []
    for n, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
            if not text.strip():
                continue
            rec = loads(text, f"{path} line {n}")
            if not isinstance(rec, dict):
                raise AlignError(f"{path} line {n}: expected a JSON object, got {type(rec).__name__}")
            good.append(parse_ranking(str(path), n, rec))
        except UnicodeDecodeError as e:
            bad.append(f"{path} line {n}: not UTF-8 text (byte {e.start + 1} of the line)")
        except AlignError as e:
            bad.append(e.message)
    if not good and not bad:
        bad.append(f"{path}: the file is empty")
    return good, bad
