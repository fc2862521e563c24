"""Validate the generated datasets and check for prompt overlap.

Usage (from the repository root, after ``python reward_data/build.py``)::

    python reward_data/check.py

Checks:

* every file parses as JSON lines and every record has the required fields
  with the right types and allowed values; ids are unique;
* rankings are permutations of the response indices (ties flattened);
* word-count limits (SFT assistant turns 30-110 words, ranked responses
  15-90 words) and the minimum counts asked for;
* prompt overlap: every user prompt (all user turns of the SFT data, the
  rankings prompts, the compliance prompts, and the prompts of the
  general-domain chat and preference sets) is normalised (lowercase,
  punctuation stripped, whitespace collapsed) and compared with every other
  one.  A pair collides if the normalised texts are equal, if their word-set
  Jaccard overlap is > 0.85, or if their ``difflib.SequenceMatcher`` ratio is
  > 0.85.  Any collision (within a split, across splits, or across
  datasets) is an error.
* general-domain data (``general/``): fields, ids (``gen-text-NNNN`` ...),
  topics, word counts (paragraphs 70-140 words, chat answers and chosen
  answers 40-110, rejected answers at most 100), chosen != rejected, and the
  held-out property of ``general/text.jsonl``: no normalised 8-word sequence
  may appear in two different general records (so no paragraph shares a
  passage with a chat or preference record, and no boilerplate is repeated),
  no opening (first three words) may start more than 3 general texts/answers,
  and the content-word Jaccard overlap between any paragraph and any
  chat/pairs record must stay below 0.3.
* domain text (``domain/``): fields, ids, word counts (35-100), and no
  normalised 8-word sequence shared by two domain paragraphs (so the eval
  split is held out) or by a domain paragraph and a general record.

Prints per-split / per-category counts (as used in README.md) and exits with
a non-zero status if anything fails.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.85
errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def load(rel: str) -> list[dict]:
    out = []
    for n, line in enumerate((HERE / rel).read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            err(f"{rel}:{n}: invalid JSON ({e})")
    return out


def words(text: str) -> int:
    return len(text.split())


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("\u2019", "'"))
    return re.sub(r"\s+", " ", text).strip()


GENERAL_TOPICS = {
    "science", "history", "geography", "arts", "technology", "everyday_life",
    "nature", "sports", "economics", "language", "maths", "food",
}
NGRAM = 8
MAX_SAME_OPENING = 3
MAX_TOPIC_JACCARD = 0.3
_STOPWORDS = (
    "the a an of and or to in on for is are was were be by with as at that this "
    "it its it's from which their they them his her he she not but can have has "
    "had more than also into about such often most many other some these those "
    "who what when where how why your you i we our one two all any may only so "
    "over up out do does been there would could"
)
STOPWORDS = set(_STOPWORDS.split())


def content_words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if len(w) > 3 and w not in STOPWORDS}


def check_general(prompts: list[tuple[str, str]], ids: Counter):
    """Validate general/*.jsonl; add their prompts to ``prompts``."""
    gen = {name: load(f"general/{name}.jsonl") for name in ("text", "chat", "pairs")}
    bodies: list[tuple[str, str, str]] = []  # (where, set, full text of the record)
    openings: list[tuple[str, str]] = []      # (where, text whose opening is checked)

    def common(name, r, fields, prefix):
        where = f"general/{name}/{r.get('id')}"
        if set(r) != fields:
            err(f"{where}: fields {sorted(r)}")
            return None
        ids[r["id"]] += 1
        if not re.fullmatch(prefix + r"\d{4}", str(r["id"])):
            err(f"{where}: bad id")
        if r["topic"] not in GENERAL_TOPICS:
            err(f"{where}: bad topic {r['topic']!r}")
        return where

    for r in gen["text"]:
        where = common("text", r, {"id", "topic", "text"}, "gen-text-")
        if where is None:
            continue
        if not isinstance(r["text"], str) or not 70 <= words(r["text"]) <= 140:
            err(f"{where}: text of {words(str(r['text']))} words")
        bodies.append((where, "text", r["text"]))
        openings.append((where, r["text"]))

    for r in gen["chat"]:
        where = common("chat", r, {"id", "topic", "messages"}, "gen-chat-")
        if where is None:
            continue
        msgs = r["messages"]
        if len(msgs) != 2 or any(set(m) != {"role", "content"} for m in msgs) or \
                [m["role"] for m in msgs] != ["user", "assistant"] or \
                not all(isinstance(m["content"], str) and m["content"].strip() for m in msgs):
            err(f"{where}: messages must be one user turn and one assistant turn")
            continue
        prompt, answer = msgs[0]["content"], msgs[1]["content"]
        prompts.append((where, prompt))
        if not 40 <= words(answer) <= 110:
            err(f"{where}: assistant turn of {words(answer)} words")
        bodies.append((where, "chat", f"{prompt} {answer}"))
        openings.append((where, answer))

    for r in gen["pairs"]:
        where = common("pairs", r, {"id", "topic", "prompt", "chosen", "rejected"}, "gen-pair-")
        if where is None:
            continue
        if not all(isinstance(r[k], str) and r[k].strip() for k in ("prompt", "chosen", "rejected")):
            err(f"{where}: empty or non-string field")
            continue
        prompts.append((where, r["prompt"]))
        if not 40 <= words(r["chosen"]) <= 110:
            err(f"{where}: chosen of {words(r['chosen'])} words")
        if words(r["rejected"]) > 100:
            err(f"{where}: rejected of {words(r['rejected'])} words")
        if normalise(r["chosen"]) == normalise(r["rejected"]):
            err(f"{where}: chosen == rejected")
        bodies.append((where, "pairs", f"{r['prompt']} {r['chosen']} {r['rejected']}"))
        openings.append((where, r["chosen"]))
        openings.append((where, r["rejected"]))

    # No passage shared between two general records (held-out text vs the
    # training mixes, and no repeated boilerplate inside a set).
    seen: dict[str, str] = {}
    shared = 0
    for where, _kind, body in bodies:
        toks = normalise(body).split()
        for gram in dict.fromkeys(" ".join(toks[i:i + NGRAM]) for i in range(len(toks) - NGRAM + 1)):
            other = seen.setdefault(gram, where)
            if other != where:
                shared += 1
                err(f"shared {NGRAM}-gram: {other} ~ {where}: {gram!r}")

    starts = Counter(" ".join(normalise(t).split()[:3]) for _w, t in openings)
    for start, n in starts.items():
        if n > MAX_SAME_OPENING:
            err(f"opening {start!r} used {n} times in general/")

    held_out = [(w, content_words(b)) for w, k, b in bodies if k == "text"]
    mixes = [(w, content_words(b)) for w, k, b in bodies if k != "text"]
    max_j, max_pair = 0.0, ("-", "-")
    for w1, s1 in held_out:
        for w2, s2 in mixes:
            j = len(s1 & s2) / len(s1 | s2)
            if j > max_j:
                max_j, max_pair = j, (w1, w2)
            if j >= MAX_TOPIC_JACCARD:
                err(f"held-out paragraph too close to a training record ({j:.2f}): {w1} ~ {w2}")

    return gen, {"shared": shared, "max_jaccard": max_j, "max_pair": max_pair,
                 "top_opening": starts.most_common(1)[0] if starts else ("-", 0)}


def check_domain(gen: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Validate domain/*.jsonl: fields, ids, lengths, no passage shared with another record."""
    dom = {split: load(f"domain/{split}.jsonl") for split in ("train", "eval")}
    seen: dict[str, str] = {}
    general = [(f"general/{k}/{r.get('id')}", json.dumps(r)) for k, recs in gen.items() for r in recs]
    domain = [(f"domain/{split}/{r.get('id')}", r) for split, recs in dom.items() for r in recs]
    for where, r in domain:
        if set(r) != {"id", "topic", "text"} or not re.fullmatch(r"dom-text-\d{4}", str(r.get("id"))):
            err(f"{where}: fields {sorted(r)} or bad id")
        elif not 35 <= words(r["text"]) <= 100:
            err(f"{where}: text of {words(r['text'])} words")
    for where, body in [(w, r.get("text", "")) for w, r in domain] + general:
        toks = normalise(body).split()
        for gram in dict.fromkeys(" ".join(toks[i:i + NGRAM]) for i in range(len(toks) - NGRAM + 1)):
            other = seen.setdefault(gram, where)
            if other != where and other.startswith("domain/"):
                err(f"shared {NGRAM}-gram: {other} ~ {where}: {gram!r}")
    if len(dom["train"]) < 120 or len(dom["eval"]) < 24:
        err(f"domain text too small: {len(dom['train'])} train / {len(dom['eval'])} eval")
    return dom


def flatten(ranking):
    for item in ranking:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def main() -> int:
    sft = {s: load(f"sft/{s}.jsonl") for s in ("train", "eval")}
    rank = {s: load(f"rankings/{s}.jsonl") for s in ("train", "test")}
    cmp_ = load("compliance/prompts.jsonl")

    ids: Counter = Counter()
    prompts: list[tuple[str, str]] = []  # (where, text)

    # ----------------------------------------------------------------- SFT
    for split, recs in sft.items():
        for r in recs:
            where = f"sft/{split}/{r.get('id')}"
            if set(r) != {"id", "category", "messages"}:
                err(f"{where}: fields {sorted(r)}")
                continue
            ids[r["id"]] += 1
            if r["category"] not in {"harmful_refusal", "benign_edgy", "helpful"}:
                err(f"{where}: bad category {r['category']}")
            msgs = r["messages"]
            if len(msgs) not in (2, 4):
                err(f"{where}: {len(msgs)} messages")
            for i, m in enumerate(msgs):
                want = "user" if i % 2 == 0 else "assistant"
                if set(m) != {"role", "content"} or m["role"] != want or not m["content"].strip():
                    err(f"{where}: bad message {i}")
                    continue
                if want == "user":
                    prompts.append((where, m["content"]))
                elif not 30 <= words(m["content"]) <= 110:
                    err(f"{where}: assistant turn of {words(m['content'])} words")

    # ------------------------------------------------------------ rankings
    best_at_zero = 0
    ties = 0
    for split, recs in rank.items():
        for r in recs:
            where = f"rankings/{split}/{r.get('id')}"
            if set(r) != {"id", "category", "prompt", "responses", "ranking"}:
                err(f"{where}: fields {sorted(r)}")
                continue
            ids[r["id"]] += 1
            cat = r["category"]
            if cat not in {"harmful", "benign_edgy", "helpful"}:
                err(f"{where}: bad category {cat}")
            resp = r["responses"]
            if not isinstance(r["prompt"], str) or not r["prompt"].strip():
                err(f"{where}: bad prompt")
            prompts.append((where, r["prompt"]))
            want_n = {"harmful": {4}, "benign_edgy": {3}, "helpful": {3, 4}}.get(cat, {3, 4})
            if len(resp) not in want_n:
                err(f"{where}: {len(resp)} responses")
            if len(set(resp)) != len(resp):
                err(f"{where}: duplicate responses")
            for x in resp:
                if not isinstance(x, str) or not 15 <= words(x) <= 90:
                    err(f"{where}: response of {words(x)} words")
            flat = list(flatten(r["ranking"]))
            if sorted(flat) != list(range(len(resp))):
                err(f"{where}: ranking {r['ranking']} is not a permutation")
            if any(isinstance(x, list) for x in r["ranking"]):
                ties += 1
                if split != "train":
                    err(f"{where}: tie outside train")
            first = r["ranking"][0]
            if first == 0 or (isinstance(first, list) and 0 in first):
                best_at_zero += 1

    # ---------------------------------------------------------- compliance
    for r in cmp_:
        where = f"compliance/{r.get('id')}"
        if set(r) != {"id", "prompt", "label", "category"}:
            err(f"{where}: fields {sorted(r)}")
            continue
        ids[r["id"]] += 1
        if r["label"] not in {"harmful", "benign", "ordinary"}:
            err(f"{where}: bad label")
        if not r["category"] or not r["prompt"].strip():
            err(f"{where}: empty field")
        prompts.append((where, r["prompt"]))

    gen, gen_stats = check_general(prompts, ids)
    dom = check_domain(gen)

    for i, c in ids.items():
        if c > 1:
            err(f"duplicate id {i}")

    # ------------------------------------------------------------- overlap
    norm = [(w, normalise(t), set(normalise(t).split())) for w, t in prompts]
    collisions = 0
    for (w1, n1, s1), (w2, n2, s2) in combinations(norm, 2):
        reason = None
        if n1 == n2:
            reason = "identical"
        elif len(s1 & s2) / len(s1 | s2) > THRESHOLD:
            reason = "word overlap"
        else:
            sm = difflib.SequenceMatcher(None, n1, n2, autojunk=False)
            if sm.real_quick_ratio() > THRESHOLD and sm.quick_ratio() > THRESHOLD and sm.ratio() > THRESHOLD:
                reason = f"difflib {sm.ratio():.2f}"
        if reason:
            collisions += 1
            err(f"overlap ({reason}): {w1} ~ {w2}: {n1!r} / {n2!r}")

    # ------------------------------------------------------------- counts
    def table(title, split_recs, key):
        print(f"\n{title}")
        cats = sorted({r[key] for recs in split_recs.values() for r in recs})
        print("| split | " + " | ".join(cats) + " | total |")
        print("|---" * (len(cats) + 2) + "|")
        for split, recs in split_recs.items():
            c = Counter(r[key] for r in recs)
            print(f"| {split} | " + " | ".join(str(c[x]) for x in cats) + f" | {len(recs)} |")

    table("SFT", sft, "category")
    multi = {s: sum(len(r["messages"]) == 4 for r in recs) for s, recs in sft.items()}
    print(f"two-turn conversations: {multi}")
    table("Rankings", rank, "category")
    nresp = Counter(len(r["responses"]) for recs in rank.values() for r in recs)
    print(f"responses per record: {dict(sorted(nresp.items()))}; ties: {ties}; "
          f"best response at index 0: {best_at_zero}/{sum(map(len, rank.values()))}")
    table("Compliance (label)", {"prompts": cmp_}, "label")
    for label in ("harmful", "benign", "ordinary"):
        c = Counter(r["category"] for r in cmp_ if r["label"] == label)
        print(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))

    table("General-domain data (topic)", gen, "topic")
    gen_words = {
        "text": [words(r["text"]) for r in gen["text"] if "text" in r],
        "chat answers": [words(r["messages"][-1]["content"]) for r in gen["chat"] if "messages" in r],
        "pairs chosen": [words(r["chosen"]) for r in gen["pairs"] if "chosen" in r],
        "pairs rejected": [words(r["rejected"]) for r in gen["pairs"] if "rejected" in r],
    }
    print("words: " + "; ".join(
        f"{k} {min(v)}-{max(v)} (total {sum(v)})" for k, v in gen_words.items() if v))
    print(f"shared {NGRAM}-grams between general records: {gen_stats['shared']}; "
          f"most frequent opening: {gen_stats['top_opening'][0]!r} x{gen_stats['top_opening'][1]}; "
          f"max paragraph/mix content-word Jaccard: {gen_stats['max_jaccard']:.2f} "
          f"({gen_stats['max_pair'][0]} ~ {gen_stats['max_pair'][1]})")

    table("Domain text (topic)", dom, "topic")
    dom_words = [words(r["text"]) for recs in dom.values() for r in recs if "text" in r]
    print(f"domain words: {min(dom_words)}-{max(dom_words)} (total {sum(dom_words)})")

    # ------------------------------------------------------------ minimums
    n_sft = sum(map(len, sft.values()))
    if n_sft < 240 or len(sft["eval"]) < 36:
        err(f"SFT too small: {n_sft} total, {len(sft['eval'])} eval")
    if not 13 <= sum(multi.values()) <= 20:
        err(f"unexpected number of two-turn conversations: {multi}")
    if sum(map(len, rank.values())) < 330:
        err("rankings too small")
    if not 8 <= ties <= 12:
        err(f"{ties} tied records")
    lab = Counter(r["label"] for r in cmp_)
    if min(lab[x] for x in ("harmful", "benign", "ordinary")) < 110:
        err(f"compliance too small: {dict(lab)}")

    if len(gen["text"]) < 120 or len(gen["chat"]) < 150 or len(gen["pairs"]) < 100:
        err(f"general data too small: {[len(v) for v in gen.values()]}")

    print(f"\nprompts compared: {len(prompts)} ({len(prompts) * (len(prompts) - 1) // 2} pairs); "
          f"collisions: {collisions}")
    if errors:
        print(f"\n{len(errors)} problem(s):")
        for e in errors:
            print("  " + e)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
