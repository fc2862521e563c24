"""Generate the `align` reward datasets from the hand-written pieces in ``source/``.

Usage (from the repository root)::

    python reward_data/build.py          # writes the .jsonl files
    python reward_data/check.py          # validates them and checks for overlaps

The output is fully deterministic: every random choice (which prompt goes to
which dataset and split, which phrasing is used, how responses are shuffled)
comes from ``random.Random`` instances seeded with fixed constants below, so
re-running the script reproduces the files byte for byte.

What gets written (paths relative to ``reward_data/``):

* ``sft/train.jsonl``, ``sft/eval.jsonl`` - supervised chat conversations.
* ``rankings/train.jsonl``, ``rankings/test.jsonl`` - K-wise ranked responses.
* ``compliance/prompts.jsonl`` - refusal / over-refusal evaluation prompts.
* ``general/text.jsonl``, ``general/chat.jsonl``, ``general/pairs.jsonl`` -
  general-domain data (not about refusals) for measuring and mitigating
  catastrophic forgetting: held-out encyclopedic paragraphs for perplexity,
  chat exchanges to mix into SFT, and preference pairs to mix into DPO.
* ``domain/train.jsonl``, ``domain/eval.jsonl`` - raw text on one technical
  domain (beekeeping) for continued pretraining, and its held-out split.

The rankings follow a fixed preference order by construction:

* harmful:     polite refusal + redirect > curt refusal > partial compliance
               > full compliance (the "compliance" texts are deliberately vague
               and contain no actionable detail).
* benign_edgy: helpful answer > hedged half-answer > over-refusal.
* helpful:     good answer > vague answer > off-topic answer
               (> curt unhelpful answer, on about half of the records).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from source import phrasings as P  # noqa: E402
from source.benign import BENIGN  # noqa: E402
from source.compliance import BENIGN as CMP_BENIGN  # noqa: E402
from source.compliance import HARMFUL as CMP_HARMFUL  # noqa: E402
from source.compliance import ORDINARY as CMP_ORDINARY  # noqa: E402
from source.domain_text import TEXTS as DOMAIN_TEXTS  # noqa: E402
from source.general_chat import CHAT as GEN_CHAT  # noqa: E402
from source.general_pairs import PAIRS as GEN_PAIRS  # noqa: E402
from source.general_text import TEXTS as GEN_TEXTS  # noqa: E402
from source.harmful import HARMFUL  # noqa: E402
from source.helpful import HELPFUL  # noqa: E402
from source.multiturn import MULTITURN  # noqa: E402

SEED = 20240611

N_RANK_PER_CATEGORY = 112   # rankings prompts per category
N_RANK_TEST_PER_CATEGORY = 23
N_SFT_EVAL_PER_CATEGORY = 13
N_TIES = 10                 # train records whose ranking contains a tie
CURT_FRACTION = 0.5         # helpful records that get a 4th (curt) response


# ---------------------------------------------------------------- helpers
def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def fill(template: str, key: str, value: str) -> str:
    return template.format(**{key: value, cap(key): cap(value)})


def lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def first_sentences(text: str, min_words: int = 10) -> str:
    """Leading sentence(s) of ``text`` with at least ``min_words`` words."""
    import re

    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z`'\"(])", text.strip())
    out = []
    for part in parts:
        out.append(part)
        if len(" ".join(out).split()) >= min_words:
            break
    return " ".join(out)


def polite_refusal(rng: random.Random, sub: str, thing: str, redirect: str) -> str:
    """Refusal that briefly says why and offers a safe redirection."""
    if sub == "self_harm":
        opener = fill(rng.choice(P.SELF_HARM_OPENERS), "thing", thing)
        return f"{opener} {redirect}"
    opener = fill(rng.choice(P.REFUSAL_OPENERS), "thing", thing)
    reason = rng.choice(P.REASONS[sub])
    conn = rng.choice(P.REDIRECT_CONNECTORS)
    body = f"{conn}{lower_first(redirect)}" if conn else redirect
    return f"{opener} {reason} {body}"


def shuffle_ranked(rng: random.Random, responses: list[str], ranking: list):
    """Shuffle ``responses`` and remap the (possibly nested) ``ranking``."""
    order = list(range(len(responses)))
    rng.shuffle(order)
    new_pos = {old: new for new, old in enumerate(order)}
    shuffled = [responses[old] for old in order]

    def remap(item):
        if isinstance(item, list):
            return sorted(new_pos[i] for i in item)
        return new_pos[item]

    return shuffled, [remap(item) for item in ranking]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- assignment
def assign_pools():
    """Split each hand-written pool between the SFT and rankings datasets."""
    rng = random.Random(SEED)

    harm_self = [h for h in HARMFUL if h[0] == "self_harm"]
    harm_other = [h for h in HARMFUL if h[0] != "self_harm"]
    rng.shuffle(harm_other)
    harm_rank = harm_other[:N_RANK_PER_CATEGORY]
    harm_sft = harm_other[N_RANK_PER_CATEGORY:] + harm_self

    benign = list(BENIGN)
    rng.shuffle(benign)
    helpful = list(HELPFUL)
    rng.shuffle(helpful)

    return {
        "rank": {
            "harmful": harm_rank,
            "benign_edgy": benign[:N_RANK_PER_CATEGORY],
            "helpful": helpful[:N_RANK_PER_CATEGORY],
        },
        "sft": {
            "harmful_refusal": harm_sft,
            "benign_edgy": benign[N_RANK_PER_CATEGORY:],
            "helpful": helpful[N_RANK_PER_CATEGORY:],
        },
    }


# ---------------------------------------------------------------- SFT
def build_sft(pools):
    rng = random.Random(SEED + 1)
    by_cat: dict[str, list[list[dict]]] = {}

    for sub, prompt, thing, redirect in pools["harmful_refusal"]:
        reply = polite_refusal(rng, sub, thing, redirect)
        by_cat.setdefault("harmful_refusal", []).append(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
        )
    for cat in ("benign_edgy", "helpful"):
        for prompt, _topic, answer in pools[cat]:
            by_cat.setdefault(cat, []).append(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            )
    for cat, turns in MULTITURN:
        roles = ["user", "assistant", "user", "assistant"]
        by_cat[cat].append([{"role": r, "content": t} for r, t in zip(roles, turns)])

    train, evals = [], []
    for cat in ("harmful_refusal", "benign_edgy", "helpful"):
        convs = by_cat[cat]
        rng.shuffle(convs)
        evals += [(cat, c) for c in convs[:N_SFT_EVAL_PER_CATEGORY]]
        train += [(cat, c) for c in convs[N_SFT_EVAL_PER_CATEGORY:]]
    rng.shuffle(train)
    rng.shuffle(evals)

    records = {"train": [], "eval": []}
    n = 0
    for split, items in (("train", train), ("eval", evals)):
        for cat, msgs in items:
            n += 1
            records[split].append({"id": f"sft-{n:04d}", "category": cat, "messages": msgs})
    return records


# ---------------------------------------------------------------- rankings
def build_rankings(pools):
    rng = random.Random(SEED + 2)
    made: dict[str, list[dict]] = {"harmful": [], "benign_edgy": [], "helpful": []}

    for sub, prompt, thing, redirect in pools["harmful"]:
        responses = [
            polite_refusal(rng, sub, thing, redirect),
            fill(rng.choice(P.CURT_REFUSALS), "thing", thing),
            f"{rng.choice(P.PARTIAL_WARNINGS)} {fill(rng.choice(P.PARTIAL_BODIES), 'thing', thing)}",
            fill(rng.choice(P.FULL_COMPLIANCE), "thing", thing),
        ]
        made["harmful"].append({"prompt": prompt, "responses": responses, "ranking": [0, 1, 2, 3]})

    for prompt, topic, answer in pools["benign_edgy"]:
        hedged = " ".join(
            [
                fill(rng.choice(P.HEDGE_OPENERS), "topic", topic),
                first_sentences(answer),
                rng.choice(P.HEDGE_CLOSERS),
            ]
        )
        responses = [answer, hedged, fill(rng.choice(P.OVER_REFUSALS), "topic", topic)]
        made["benign_edgy"].append({"prompt": prompt, "responses": responses, "ranking": [0, 1, 2]})

    helpful = pools["helpful"]
    # Off-topic answers: a good answer to a *different* prompt (a derangement).
    donors = list(range(len(helpful)))
    rng.shuffle(donors)
    offtopic_of = {donors[i]: donors[(i + 1) % len(donors)] for i in range(len(donors))}
    for i, (prompt, topic, answer) in enumerate(helpful):
        responses = [
            answer,
            fill(rng.choice(P.VAGUE_ANSWERS), "topic", topic),
            helpful[offtopic_of[i]][2],
        ]
        ranking: list = [0, 1, 2]
        if rng.random() < CURT_FRACTION:
            responses.append(fill(rng.choice(P.CURT_UNHELPFUL), "topic", topic))
            ranking.append(3)
        made["helpful"].append({"prompt": prompt, "responses": responses, "ranking": ranking})

    train, test = [], []
    for cat, recs in made.items():
        rng.shuffle(recs)
        test += [(cat, r) for r in recs[:N_RANK_TEST_PER_CATEGORY]]
        train += [(cat, r) for r in recs[N_RANK_TEST_PER_CATEGORY:]]
    rng.shuffle(train)
    rng.shuffle(test)

    # Ties: in a few 4-response helpful train records, the off-topic and the
    # curt answer are marked as equally bad.
    ties = 0
    for cat, rec in train:
        if ties < N_TIES and cat == "helpful" and len(rec["responses"]) == 4:
            rec["ranking"] = [0, 1, [2, 3]]
            ties += 1

    records = {"train": [], "test": []}
    n = 0
    for split, items in (("train", train), ("test", test)):
        for cat, rec in items:
            n += 1
            responses, ranking = shuffle_ranked(rng, rec["responses"], rec["ranking"])
            records[split].append(
                {
                    "id": f"rank-{n:04d}",
                    "category": cat,
                    "prompt": rec["prompt"],
                    "responses": responses,
                    "ranking": ranking,
                }
            )
    return records


# ---------------------------------------------------------------- compliance
def build_compliance():
    rng = random.Random(SEED + 3)
    items = (
        [("harmful", c, p) for c, p in CMP_HARMFUL]
        + [("benign", c, p) for c, p in CMP_BENIGN]
        + [("ordinary", c, p) for c, p in CMP_ORDINARY]
    )
    rng.shuffle(items)
    return [
        {"id": f"cmp-{i:04d}", "prompt": p, "label": label, "category": c}
        for i, (label, c, p) in enumerate(items, 1)
    ]


# ---------------------------------------------------------------- general
def build_general():
    """General-domain sets: shuffled (seeded) so topics are interleaved.

    Each set has its own ``random.Random`` so adding these files does not
    change any random choice made for the datasets above.
    """
    texts = list(GEN_TEXTS)
    random.Random(SEED + 4).shuffle(texts)
    chat = list(GEN_CHAT)
    random.Random(SEED + 5).shuffle(chat)
    pairs = list(GEN_PAIRS)
    random.Random(SEED + 6).shuffle(pairs)
    return {
        "text": [
            {"id": f"gen-text-{i:04d}", "topic": topic, "text": text}
            for i, (topic, text) in enumerate(texts, 1)
        ],
        "chat": [
            {
                "id": f"gen-chat-{i:04d}",
                "topic": topic,
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
            }
            for i, (topic, prompt, answer) in enumerate(chat, 1)
        ],
        # ``kind`` (how the rejected answer is worse) stays in the source only.
        "pairs": [
            {"id": f"gen-pair-{i:04d}", "topic": topic, "prompt": prompt,
             "chosen": chosen, "rejected": rejected}
            for i, (topic, _kind, prompt, chosen, rejected) in enumerate(pairs, 1)
        ],
    }


# ---------------------------------------------------------------- domain
def build_domain():
    """Beekeeping paragraphs: every sixth one (in source order, so each topic
    gives a few) is held out; both splits shuffled (seeded) to interleave topics."""
    records = [{"id": f"dom-text-{i:04d}", "topic": topic, "text": text}
               for i, (topic, text) in enumerate(DOMAIN_TEXTS, 1)]
    split = {"train": [r for i, r in enumerate(records) if i % 6 != 5],
             "eval": [r for i, r in enumerate(records) if i % 6 == 5]}
    for offset, recs in enumerate(split.values()):
        random.Random(SEED + 7 + offset).shuffle(recs)
    return split


def main() -> None:
    pools = assign_pools()
    sft = build_sft(pools["sft"])
    write_jsonl(HERE / "sft" / "train.jsonl", sft["train"])
    write_jsonl(HERE / "sft" / "eval.jsonl", sft["eval"])

    rankings = build_rankings(pools["rank"])
    write_jsonl(HERE / "rankings" / "train.jsonl", rankings["train"])
    write_jsonl(HERE / "rankings" / "test.jsonl", rankings["test"])

    write_jsonl(HERE / "compliance" / "prompts.jsonl", build_compliance())

    general = build_general()
    for name, records in general.items():
        write_jsonl(HERE / "general" / f"{name}.jsonl", records)

    domain = build_domain()
    for name, records in domain.items():
        write_jsonl(HERE / "domain" / f"{name}.jsonl", records)

    print(
        f"sft: {len(sft['train'])} train / {len(sft['eval'])} eval; "
        f"rankings: {len(rankings['train'])} train / {len(rankings['test'])} test; "
        f"general: {len(general['text'])} text / {len(general['chat'])} chat / "
        f"{len(general['pairs'])} pairs; "
        f"domain: {len(domain['train'])} train / {len(domain['eval'])} eval"
    )


if __name__ == "__main__":
    main()
