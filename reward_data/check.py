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
  rankings prompts and the compliance prompts) is normalised (lowercase,
  punctuation stripped, whitespace collapsed) and compared with every other
  one.  A pair collides if the normalised texts are equal, if their word-set
  Jaccard overlap is > 0.85, or if their ``difflib.SequenceMatcher`` ratio is
  > 0.85.  Any collision (within a split, across splits, or across
  datasets) is an error.

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
