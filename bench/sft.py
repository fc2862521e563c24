"""SFT pair of the performance harness: align's sft stage vs the plain TRL `SFTTrainer` script (not a test).

    python bench/perf.py --stages sft              # runs this pair, each run in its own process

Same model (SmolLM2-135M-Instruct, LoRA r16 alpha 32 on all linear layers), same chats
(reward_data/sft/train.jsonl, messages format; the same conversations in the same order, both trainers
shuffling with seed 42), steps, batch, max length and learning rate:
  align  the sft stage through a recipe, as users run it, with `assistant_only_loss: false`: TRL's
         default for messages data is the loss on every token, and the losses must be the same loss to
         compare (the compute is the same either way); and TRL's schedule (no warm-up, linear decay)
  peer   `SFTTrainer(model, args=SFTConfig(...), peft_config=LoraConfig(r=16, lora_alpha=32,
         target_modules="all-linear"))` with TRL's defaults for everything else (on CPU: bf16 autocast
         and gradient checkpointing; `use_cpu=True` there, which transformers requires with bf16 on CPU),
         or with `bf16=False` as well (bench/perf.py's `--peer fp32`)
Tokens: TRL's own count of non-padding tokens trained on (`num_tokens`; the same trainer class on both
sides). Key metric: held-out loss, the mean next-token loss over every token of reward_data/sft/eval.jsonl
(each chat rendered by the chat template and cut to max_length), computed by the same function
(`align.generation.token_nll`) on both trained models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import MODEL, ROOT, TRL_SCHEDULE, fp32_model, peak_rss_gb, peer_precision, run_stage

TRAIN = ROOT / "reward_data" / "sft" / "train.jsonl"
EVAL = ROOT / "reward_data" / "sft" / "eval.jsonl"


def heldout_loss(model, tok, max_length: int) -> float:
    """Mean negative log-likelihood per next token over the held-out chats."""
    from align.data import read_records, render_chat
    from align.generation import token_nll

    rows = [render_chat(tok, rec["messages"], add_generation_prompt=False)[:max_length]
            for _, _, rec in read_records(str(EVAL))]
    with torch.no_grad():
        total, count = token_nll(model, rows, tok.pad_token_id)
    return total / count


def run_align(a: argparse.Namespace, work: Path) -> dict:
    from align.models import load_artifact, load_tokenizer
    from align.schema import ModelSpec

    m = run_stage(work, "sft", {"sft": {"train": str(TRAIN)}},
                  {"kind": "sft", "learning_rate": a.lr, "max_steps": a.steps, "batch_size": a.batch,
                   "max_length": a.max_length, "logging_steps": 1, "save_steps": 0, "assistant_only_loss": False,
                   **TRL_SCHEDULE})
    rss = peak_rss_gb()  # before loading the trained model again for the held-out loss
    spec = ModelSpec(name=MODEL)
    loss = heldout_loss(load_artifact(work / "sft" / "sft", spec), load_tokenizer(spec), a.max_length)
    return {"tokens": m["train_tokens"], "train_seconds": m["train_seconds"], "loss": loss,
            "train_loss": m["train_loss"], "peak_rss_gb": rss}


def run_trl(a: argparse.Namespace, work: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from align.data import read_records
    from align.models import resolve_model

    path = resolve_model(MODEL)  # the converted safetensors folder, as a user would load it
    chats = Dataset.from_list([{"messages": rec["messages"]} for _, _, rec in read_records(str(TRAIN))])
    args = SFTConfig(output_dir=str(work / "trl"), learning_rate=a.lr, max_steps=a.steps,
                     per_device_train_batch_size=a.batch, max_length=a.max_length, report_to=[],
                     save_strategy="no", use_cpu=not torch.cuda.is_available(), seed=42,  # bf16 on CPU needs it
                     **peer_precision(a.peer))
    tok = AutoTokenizer.from_pretrained(path)
    trainer = SFTTrainer(AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=chats,
                         processing_class=tok, peft_config=LoraConfig(r=16, lora_alpha=32,
                                                                      target_modules="all-linear",
                                                                      task_type="CAUSAL_LM"))
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    rss = peak_rss_gb()
    return {"tokens": trainer._total_train_tokens, "train_seconds": seconds, "train_loss": result.training_loss,
            "loss": heldout_loss(fp32_model(trainer), tok, a.max_length), "peak_rss_gb": rss}


def perf(side: str, a: argparse.Namespace, work: Path) -> dict:
    """bench/perf.py's SFT pair: side "align" or "peer"."""
    m = run_align(a, work) if side == "align" else run_trl(a, work)
    return {"tokens": m["tokens"], "train_seconds": m["train_seconds"], "metric": "heldout_loss",
            "value": m["loss"], "detail": f"train loss {m['train_loss']:.3f}", "peak_rss_gb": m["peak_rss_gb"]}
