"""Preprocessing time of a large preference set: reading and checking, then tokenizing as the rm and dpo stages do.

    . .venv/bin/activate && python bench/preprocess.py                  # 100,000 pairs
    python bench/preprocess.py --pairs 20000 --num-proc 2               # fewer pairs; DPO's map in 2 processes

The pairs are hh-rlhf harmless-base's (../shared/data), cycled to `--pairs` records, each prompt made unique
with a number so that no step is a lookup of an earlier row. Timed one after another in this process, with
the embedded SmolLM2's tokenizer and chat template:
  read       `align.rankings.read_rankings`: JSONL parsed, every record checked (hh-rlhf transcripts split
             into messages), what every rm and dpo stage does first
  rm         `align.stages.rm.tokenized`: `tokenize_rankings` (one row per prompt, each response rendered with
             the chat template) through the tokenization cache (`align.data.cached_tokens`), first a miss
             (tokenized and written), then the same call again, as a rerun of the stage: a hit (read back)
  dpo        `align.stages.dpo.preference_pairs` + TRL's `DPOTrainer._prepare_dataset` (a `datasets.map` over
             the pairs, `dataset_num_proc` processes) as the dpo stage runs it (`CachedDPOTrainer`): miss, then hit
The cache is a fresh temporary folder (`ALIGN_CACHE`), so the first calls are misses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import HH, MODEL


def write_pairs(n: int, path: Path) -> int:
    """`n` hh-rlhf records, cycled; the first human turn of each gets its row number. The few records align
    refuses (an empty last turn) are left out of the cycle; returns how many."""
    from align.errors import AlignError
    from align.rankings import parse_ranking

    records, bad = [], 0
    for n_line, line in enumerate(HH.read_text().splitlines(), 1):
        try:
            parse_ranking(str(HH), n_line, json.loads(line))
            records.append(json.loads(line))
        except AlignError:
            bad += 1
    with path.open("w") as f:
        for i, rec in zip(range(n), itertools.cycle(records)):
            unique = {k: v.replace("Human: ", f"Human: ({i}) ", 1) for k, v in rec.items()}
            f.write(json.dumps(unique) + "\n")
    return bad


def timed(label: str, fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s", flush=True)
    return out, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=100_000)
    p.add_argument("--num-proc", type=int, default=None, help="DPOConfig.dataset_num_proc (default: TRL's, one)")
    p.add_argument("--max-length", type=int, default=512)
    a = p.parse_args()

    from trl import DPOConfig

    from align.models import load_tokenizer
    from align.rankings import read_rankings
    from align.schema import ModelSpec
    from align.stages.dpo import CachedDPOTrainer, preference_pairs
    from align.stages.rm import tokenized

    tok = load_tokenizer(ModelSpec(name=MODEL))  # before ALIGN_CACHE moves: the model's converted copy is there
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALIGN_CACHE"] = str(Path(tmp) / "cache")
        path = Path(tmp) / "pairs.jsonl"
        bad = write_pairs(a.pairs, path)
        rankings, read_s = timed("read", read_rankings, str(path))
        (_, truncated), rm_s = timed("rm", tokenized, rankings, tok, a.max_length)
        _, rm_hit_s = timed("rm rerun", tokenized, rankings, tok, a.max_length)
        args = DPOConfig(output_dir=tmp, max_length=a.max_length, dataset_num_proc=a.num_proc, report_to=[],
                         use_cpu=True)
        prepare = CachedDPOTrainer._prepare_dataset  # the tokenization the trainer runs in __init__, no model
        owner = SimpleNamespace(_tokenizer=tok)
        ds, dpo_s = timed("dpo", lambda: prepare(owner, preference_pairs(rankings, "all"), tok, args, "train"))
        _, dpo_hit_s = timed("dpo rerun", lambda: prepare(owner, preference_pairs(rankings, "all"), tok, args, "train"))
    print(f"\n{a.pairs} hh-rlhf pairs ({bad} bad source records left out of the cycle), max_length {a.max_length}, "
          f"DPO dataset_num_proc {a.num_proc}\n")
    print("| step | seconds | pairs/s |\n|---|---|---|")
    for name, s in (("read and check (rm, dpo)", read_s), ("rm tokenization, cache miss", rm_s),
                    ("rm, cache hit (a rerun)", rm_hit_s), ("dpo pairs + TRL tokenization, cache miss", dpo_s),
                    ("dpo pairs, cache hit (a rerun)", dpo_hit_s)):
        print(f"| {name} | {s:.1f} | {a.pairs / s:,.0f} |")
    print(f"\nrm rows {len(rankings)} ({truncated} responses cut to max_length); dpo rows {len(ds)}")


if __name__ == "__main__":
    main()
