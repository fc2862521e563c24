"""Shared fixtures: a tiny Llama and a tiny BPE tokenizer with a chat template, built offline in seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)

CORPUS = [
    "the cat sat on the mat", "a dog ran in the park", "what is two plus two", "four is the answer",
    "please tell me a story", "once upon a time there was a fox", "how do I bake bread", "mix flour and water",
    "I cannot help with that request", "here is a helpful answer", "system user assistant",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?'-:;()",
]


@pytest.fixture(autouse=True)
def _session_cache(request, tmp_path_factory, monkeypatch):
    """Caches (tokenized data, converted models) in the session's temporary folder, not the user's; slow
    tests keep the user's, where the embedded model's converted copy is."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("ALIGN_CACHE", str(tmp_path_factory.getbasetemp() / "align-cache"))


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from align.models import CHATML

    special = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved 2-layer Llama (hidden 32) with a chat tokenizer: a model spec tests can name by path."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def save_tiny_model(out: Path) -> Path:
    """The tiny Llama and its chat tokenizer, saved into `out` (also for bench/bad_inputs.py, outside pytest)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer_only_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with its chat template removed (a base model's tokenizer)."""
    import shutil

    out = tmp_path_factory.mktemp("tiny-no-template")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


@pytest.fixture
def sft_files(tmp_path) -> tuple[Path, Path]:
    """A memorizable SFT set: the same few question -> answer pairs, repeated."""
    pairs = [("what is two plus two", "four is the answer"), ("how do I bake bread", "mix flour and water"),
             ("please tell me a story", "once upon a time there was a fox")]
    train = [chat(q, a) for q, a in pairs] * 8
    evals = [chat(q, a) for q, a in pairs]
    return write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "eval.jsonl", evals)


def write_recipe(path: Path, model: Path | str, train: Path, evals: Path | None, run_dir: Path,
                 stage: str = "", tracking: str = "none") -> Path:
    """A one-stage SFT recipe on the tiny model; `stage` adds indented YAML lines to the stage (a key it sets
    replaces the default below: a key given twice is a recipe error)."""
    eval_line = f", eval: {evals}" if evals else ""
    own = []
    for line in stage.splitlines():
        if line.startswith("  - "):  # a further stage begins
            break
        if line.startswith("    ") and not line.startswith("     ") and ":" in line:
            own.append(line.split(":")[0].strip())
    defaults = "".join(f"    {k}: {v}\n" for k, v in (("learning_rate", "3.0e-3"), ("batch_size", 4),
                                                        ("max_length", 64), ("logging_steps", 1)) if k not in own)
    path.write_text(f"""name: test
model:
  name: {model}
  lora: {{r: 8, alpha: 16, dropout: 0.0}}
data:
  sft: {{train: {train}{eval_line}}}
tracking: {{backend: {tracking}}}
output_dir: {run_dir}
stages:
  - name: sft
    kind: sft
{defaults}{stage}""")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished sft -> rm -> dpo run of the tiny model with evaluation hooks and offline W&B tracking (once per
    session): the run folder that `align chat`, `generate`, `export` and the W&B lineage tests start from."""
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe
    from tests.stages.test_rm import marker_rankings

    root = tmp_path_factory.mktemp("tiny-run")
    pairs = [("what is two plus two", "four is the answer"), ("how do I bake bread", "mix flour and water")]
    sft = write_jsonl(root / "sft.jsonl", [chat(q, a) for q, a in pairs] * 4)
    train = write_jsonl(root / "train.jsonl", marker_rankings(16, 1))
    held = write_jsonl(root / "eval.jsonl", marker_rankings(6, 2))
    text = write_jsonl(root / "text.jsonl", [{"text": t} for t in CORPUS[:4]])
    (root / "r.yaml").write_text(f"""name: tiny
model: {{name: {tiny_model_dir}, lora: {{r: 4, alpha: 8}}}}
data: {{sft: {{train: {sft}}}, rankings: {{train: {train}, eval: {held}}}}}
tracking: {{backend: wandb, project: align-tests}}
output_dir: {root / "run"}
evals:
  - {{hook: perplexity, data: {text}}}
  - {{hook: win_rate, max_examples: 2, generation: {{max_new_tokens: 4}}}}
  - {{hook: rm_accuracy, max_examples: 4}}
stages:
  - {{name: sft, kind: sft, max_steps: 2, batch_size: 4, max_length: 64}}
  - {{name: rm, kind: rm, init: sft, max_steps: 2, batch_size: 4, max_length: 64, eval_before: false,
     gate: ["rm_accuracy >= 0"]}}
  - {{name: dpo, kind: dpo, init: sft, max_steps: 2, batch_size: 4, max_length: 64, eval_prompts: 2}}
""")
    run_pipeline(load_recipe(root / "r.yaml"))
    return root / "run"
