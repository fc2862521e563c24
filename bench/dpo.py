"""DPO benchmark: align's dpo stage vs the plain TRL `DPOTrainer` script a user would write (not a test).

    python bench/dpo.py                       # CPU-sized defaults, about 10 minutes here
    python bench/dpo.py --steps 20 --train 160 --eval 60

Same model (SmolLM2-135M-Instruct, LoRA r16 on all linear layers), same pairs (hh-rlhf harmless-base
from ../shared/data, the last 20% held out), steps, batch, max length and learning rate. Each run is a
fresh subprocess, run one after another, so its peak RSS is its own:
  align            the dpo stage through a recipe, as users run it (reference = adapters disabled)
  align precompute the same with `precompute_ref: true`
  TRL              `DPOTrainer(model, peft_config=LoraConfig(...), args=DPOConfig(...))` with TRL's defaults
                   for everything the comparison does not fix (bf16 autocast where supported, gradient
                   checkpointing on; PEFT's default LoRA dropout, 0); `--peer fp32`: with `bf16=False`
Reported: training tokens/s (TRL's own count of non-padding tokens, chosen + rejected), its ratio to
TRL, peak RSS of the process, and held-out implicit-reward accuracy and margin (TRL's evaluate on the
same held-out pairs, in fp32 on both sides). The stage's generation-based evaluation is skipped here: it
is not training.
`perf` is the DPO pair of bench/perf.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import HH, MODEL, PEERS, TRL_SCHEDULE, fp32_model, peer_precision, report, run_stage, spawn


def split(a: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    from align.rankings import scan_file

    good, _ = scan_file(HH)
    cut = int(len(good) * 0.8)
    out = []
    for name, rows in (("train", good[:a.train]), ("eval", good[cut:cut + a.eval])):
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"prompt": r.prompt, "chosen": r.responses[r.ranking[0][0]],
                                            "rejected": r.responses[r.ranking[1][0]]}) + "\n" for r in rows))
        out.append(path)
    return out[0], out[1]


def run_align(a: argparse.Namespace, work: Path, precompute: bool, **fields) -> dict:
    import align.stages.dpo as dpo

    dpo._generation_metrics = lambda *args, **kw: {}  # training and pair accuracy only (see the docstring)
    train, evals = split(a, work)
    m = run_stage(work, "bench", {"rankings": {"train": str(train), "eval": str(evals)}},
                  {"kind": "dpo", "learning_rate": a.lr, "max_steps": a.steps, "batch_size": a.batch,
                   "max_length": a.max_length, "eval_batch_size": 8, "logging_steps": 1,
                   "precompute_ref": precompute, "eval_prompts": a.eval, "save_steps": 0, **fields})
    return {"tokens_per_second": m["train_tokens_per_second"], "accuracy": m["reward_accuracy_after"],
            "margin": m["reward_margin_after"], "train_seconds": m["train_seconds"], "tokens": m["train_tokens"]}


def run_trl(a: argparse.Namespace, work: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from align.models import resolve_model

    path = resolve_model(MODEL)  # the converted safetensors folder, as a user would load it
    train, evals = split(a, work)
    rows = lambda f: [json.loads(x) for x in f.read_text().splitlines()]  # noqa: E731
    convo = lambda r: {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],  # noqa: E731
                       "rejected": [{"role": "assistant", "content": r["rejected"]}]}
    args = DPOConfig(output_dir=str(work / "trl"), learning_rate=a.lr, max_steps=a.steps,
                     per_device_train_batch_size=a.batch, per_device_eval_batch_size=8, max_length=a.max_length,
                     logging_steps=5, report_to=[], save_strategy="no", use_cpu=True, seed=42,
                     **peer_precision(a.peer))
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args,
                         train_dataset=Dataset.from_list([convo(r) for r in rows(train)]),
                         eval_dataset=Dataset.from_list([convo(r) for r in rows(evals)]),
                         processing_class=AutoTokenizer.from_pretrained(path),
                         peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    fp32_model(trainer)  # evaluated in fp32, as align's model is
    scores = trainer.evaluate()
    tokens = trainer._total_train_tokens  # TRL's count: chosen + rejected, no padding (what it logs as num_tokens)
    return {"tokens_per_second": tokens / seconds, "accuracy": scores["eval_rewards/accuracies"],
            "margin": scores["eval_rewards/margins"], "train_seconds": seconds, "tokens": tokens}


def run(kind: str, a: argparse.Namespace, work: Path, **fields) -> dict:
    return run_trl(a, work) if kind == "trl" else run_align(a, work, kind == "align-precompute", **fields)


def perf(side: str, a: argparse.Namespace, work: Path) -> dict:
    """bench/perf.py's DPO pair: side "align", "align-precompute" or "peer" (the plain TRL script)."""
    m = run("trl" if side == "peer" else side, a, work, **TRL_SCHEDULE)
    return {"tokens": m["tokens"], "train_seconds": m["train_seconds"], "metric": "heldout_reward_accuracy",
            "value": m["accuracy"], "detail": f"margin {m['margin']:.3f}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4, help="pairs per step")
    p.add_argument("--train", type=int, default=160)
    p.add_argument("--eval", type=int, default=48)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--peer", choices=PEERS, default="defaults", help="TRL's precision (fp32: bf16=False)")
    p.add_argument("--one", choices=["align", "align-precompute", "trl"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        with tempfile.TemporaryDirectory() as tmp:
            return report(run(a.one, a, Path(tmp)))
    results = {}
    for kind in ("align", "trl", "align-precompute"):
        try:
            results[kind] = spawn([__file__, "--one", kind] + sys.argv[1:])
        except RuntimeError as e:
            sys.exit(f"{kind} failed: {e}")
    trl = results["trl"]["tokens_per_second"]
    print(f"hh-rlhf harmless-base: {a.train} train pairs, {a.eval} held-out pairs, {a.steps} steps x {a.batch} pairs, "
          f"max_length {a.max_length}, lr {a.lr}, LoRA r16\n")
    print("| run | tokens/s | ratio to TRL | peak RSS (GB) | held-out reward accuracy | margin |")
    print("|---|---|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['tokens_per_second']:.0f} | {r['tokens_per_second'] / trl:.2f} | "
              f"{r['peak_rss_gb']:.2f} | {r['accuracy']:.3f} | {r['margin']:.3f} |")


if __name__ == "__main__":
    main()
