"""Reward-model benchmark on real human preferences (not part of the test suite; minutes on a CPU).

    python bench/rm.py                      # both parts, CPU-sized defaults
    python bench/rm.py --part hh --steps 30 --train 240 --eval 80

(a) hh-rlhf harmless-base (../shared/data): align's rm stage vs plain TRL `RewardTrainer` on the same
    model (SmolLM2-135M-Instruct + LoRA from the shared loader), data (the same token ids, left-truncated
    to --max-length), steps and batch: held-out pairwise accuracy of both and the tokens/s ratio.
    The last 20% of the file is held out.
(b) OpenAssistant K-wise groups: all pairs per prompt (Bradley-Terry) vs Plackett-Luce vs only the
    best-vs-worst pair per prompt; held-out pairwise accuracy and top-1 agreement on whole rankings.
    The last 20% of the message trees are held out.
Prints markdown tables for bench/README.md. `perf` is the RM pair of bench/perf.py (the plain TRL script
there keeps TRL's defaults for what the comparison does not fix).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import HH, MODEL, PEERS, SHARED, TRL_SCHEDULE, fp32_model, peer_precision, run_stage
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from align.models import load_model, load_tokenizer, resolve_model
from align.rankings import Ranking, read_rankings, scan_file
from align.schema import ModelSpec
from align.stages.rm import evaluate_rm, tokenize_rankings

OASST = SHARED / "oasst-en100-ranked" / "kwise_first80.jsonl"


def native(r: Ranking) -> dict:
    return {"prompt": r.prompt, "responses": r.responses, "ranking": r.ranking}


def run_align(work: Path, name: str, train: list[Ranking], evals: list[Ranking], a: argparse.Namespace,
              loss: str = "bradley_terry", **fields) -> dict:
    """align's rm stage through a recipe, as a user runs it; `fields`: more stage fields."""
    files = {}
    for split, rows in (("train", train), ("eval", evals)):
        files[split] = work / f"{name}-{split}.jsonl"
        files[split].write_text("".join(json.dumps(native(r)) + "\n" for r in rows))
    return run_stage(work, name, {"rankings": {"train": str(files["train"]), "eval": str(files["eval"])}},
                     {"kind": "rm", "loss": loss, "learning_rate": a.lr, "max_steps": a.steps, "batch_size": a.batch,
                      "max_length": a.max_length, "logging_steps": 5, "eval_batch_size": 8, **fields})


def run_trl(work: Path, train: list[Ranking], evals: list[Ranking], a: argparse.Namespace,
            plain: bool = False) -> dict:
    """TRL RewardTrainer on the same token ids (pairs only: each record is one chosen/rejected pair).

    Default: align's model loader and align's training settings (fp32, no gradient checkpointing, the
    stage's warmup and schedule), so only the trainer differs. `plain`: the script a user would write,
    `RewardTrainer(AutoModelForSequenceClassification, peft_config=LoraConfig(...), args=RewardConfig(...))`
    with TRL's defaults for everything the comparison does not fix (bf16 autocast, gradient checkpointing),
    or with `bf16=False` as well where `a.peer` is "fp32".
    """
    spec = ModelSpec(name=MODEL)
    tok = load_tokenizer(spec)
    rows, _ = tokenize_rankings(train, tok, a.max_length)
    pairs = [{"chosen_ids": row["input_ids"][0], "rejected_ids": row["input_ids"][1]} for row in rows]
    fixed = {"output_dir": str(work / "trl"), "learning_rate": a.lr, "max_steps": a.steps, "report_to": [],
             "per_device_train_batch_size": a.batch, "max_length": a.max_length, "save_strategy": "no",
             "use_cpu": True, "seed": 42}
    if plain:
        from peft import LoraConfig
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(resolve_model(MODEL), num_labels=1)
        args, extra = RewardConfig(**fixed, **peer_precision(a.peer)), {"peft_config": LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", task_type="SEQ_CLS")}
    else:
        model, extra = load_model(spec, "reward"), {}
        args = RewardConfig(**fixed, logging_steps=5, warmup_steps=0.03, lr_scheduler_type="cosine", bf16=False,
                            gradient_checkpointing=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=tok,
                            **extra)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    eval_rows, _ = tokenize_rankings(evals, tok, a.max_length)
    out = evaluate_rm(fp32_model(trainer), eval_rows, evals, tok.pad_token_id, 8, "_after")
    return {**out, "train_seconds": seconds, "train_tokens": trainer._total_train_tokens,
            "train_tokens_per_second": trainer._total_train_tokens / seconds}


def hh_split(a: argparse.Namespace) -> tuple[list[Ranking], list[Ranking], list]:
    """The first `a.train` hh-rlhf pairs, `a.eval` held-out ones from the last 20%, and the bad records."""
    good, bad = scan_file(HH)
    cut = int(len(good) * 0.8)
    return good[:a.train], good[cut:cut + a.eval], bad


def perf(side: str, a: argparse.Namespace, work: Path) -> dict:
    """bench/perf.py's RM pair on hh-rlhf: align's rm stage ("align") or the plain TRL script ("peer");
    tokens are the non-padding tokens of the chosen and rejected rows trained on."""
    train, evals, _ = hh_split(a)
    if side == "align":
        m = run_align(work, "hh", train, evals, a, eval_before=False, **TRL_SCHEDULE)
    else:
        m = run_trl(work, train, evals, a, plain=True)
    return {"tokens": m["train_tokens"], "train_seconds": m["train_seconds"],
            "metric": "heldout_pair_accuracy", "value": m["pairwise_accuracy_after"]}


def part_hh(work: Path, a: argparse.Namespace) -> str:
    train, evals, bad = hh_split(a)
    ours = run_align(work, "hh", train, evals, a)
    trl = run_trl(work, train, evals, a)
    return "\n".join([
        f"hh-rlhf harmless-base: {len(train)} train pairs, {len(evals)} held-out (from the last 20%), "
        f"{a.steps} steps x {a.batch} pairs, max_length {a.max_length}, lr {a.lr}, LoRA r16 ({len(bad)} bad "
        "records skipped)", "",
        "| trainer | held-out pairwise accuracy | tokens/s |", "|---|---|---|",
        f"| align rm | {ours['pairwise_accuracy_after']:.3f} | {ours['train_tokens_per_second']:.0f} |",
        f"| TRL RewardTrainer | {trl['pairwise_accuracy_after']:.3f} | {trl['train_tokens_per_second']:.0f} |",
        f"\ntokens/s ratio align/TRL: {ours['train_tokens_per_second'] / trl['train_tokens_per_second']:.2f}; "
        f"align accuracy before training: {ours['pairwise_accuracy_before']:.3f}"])


def part_oasst(work: Path, a: argparse.Namespace) -> str:
    rankings = read_rankings(str(OASST))
    trees = [json.loads(line)["message_tree_id"] for line in OASST.read_text().splitlines() if line.strip()]
    order = list(dict.fromkeys(trees))
    held = set(order[int(len(order) * 0.8):])
    train = [r for r, t in zip(rankings, trees) if t not in held][:a.train]
    evals = [r for r, t in zip(rankings, trees) if t in held][:a.eval]
    ends = [Ranking(r.prompt, [r.responses[r.ranking[0][0]], r.responses[r.ranking[-1][0]]], [[0], [1]])
            for r in train]
    runs = {"all pairs, Bradley-Terry": run_align(work, "oa-bt", train, evals, a),
            "Plackett-Luce": run_align(work, "oa-pl", train, evals, a, "plackett_luce"),
            "best vs worst only, Bradley-Terry": run_align(work, "oa-ends", ends, evals, a)}
    lines = [f"OpenAssistant K-wise: {len(train)} train prompts, {len(evals)} held-out prompts "
             f"({sum(len(r.responses) for r in evals)} responses, from held-out trees), {a.steps} steps x "
             f"{a.batch} prompts, max_length {a.max_length}", "",
             "| training signal | held-out pairwise accuracy | top-1 agreement |", "|---|---|---|"]
    lines += [f"| {k} | {m['pairwise_accuracy_after']:.3f} | {m['top1_agreement_after']:.3f} |"
              for k, m in runs.items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["hh", "oasst", "all"], default="all")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--train", type=int, default=240, help="training prompts")
    p.add_argument("--eval", type=int, default=80, help="held-out prompts")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--peer", choices=PEERS, default="defaults", help="TRL's precision (fp32: bf16=False)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for part, fn in (("hh", part_hh), ("oasst", part_oasst)):
            if a.part in (part, "all"):
                print(fn(Path(tmp), a), flush=True)


if __name__ == "__main__":
    main()
