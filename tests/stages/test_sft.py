"""The SFT stage on a tiny model: it learns, masks prompts, and writes a complete artifact."""

from __future__ import annotations

import json
import time

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from align.data import tokenize_chat
from align.models import load_artifact, load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import STAGE_METRICS, ModelSpec
from align.stages.sft import _tokenize
from align.tracking import find_wandb_files, read_wandb_history, read_wandb_records, read_wandb_summary
from tests.conftest import chat, write_recipe

ARTIFACT_FILES = {"adapter", "tokenizer", "model.json", "metrics.json", "config.yaml", "train.log", "artifact.json"}


@pytest.fixture
def recipe_path(tmp_path, tiny_model_dir, sft_files):
    return write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run",
                        stage="    max_steps: 30\n    learning_rate: 1.0e-2\n")


def test_sft_learns_and_writes_a_complete_artifact(recipe_path, tmp_path, tiny_model_dir):
    # full fine-tuning: rank-8 adapters on a random 2-layer model learn too slowly for a quick test
    recipe = load_recipe(recipe_path, ["model.adapter=full", "stages.sft.max_steps=60"])
    metrics = run_pipeline(recipe)["sft"]
    assert set(metrics) <= set(STAGE_METRICS["sft"]), set(metrics) - set(STAGE_METRICS["sft"])  # what gates may name
    assert metrics["train_loss_last"] < 0.5 * metrics["train_loss_first"]
    assert metrics["eval_loss_after"] < 0.5 * metrics["eval_loss_before"]
    art = tmp_path / "run" / "sft"
    assert (ARTIFACT_FILES - {"adapter"}) | {"model"} <= {p.name for p in art.iterdir()}
    assert json.loads((art / "artifact.json").read_text())["status"] == "finished"
    assert json.loads((art / "metrics.json").read_text()) == pytest.approx(metrics)
    assert "train/loss" in (art / "train.log").read_text()
    assert not list((tmp_path / "run").glob(".*partial*"))

    # the adapter really holds the learning: the reloaded model has the trained loss on a training answer
    spec = ModelSpec(name=str(tiny_model_dir))
    tok = load_tokenizer(spec)
    row = tokenize_chat(tok, chat("how do I bake bread", "mix flour and water")["messages"])
    ids = torch.tensor([row["input_ids"]])
    labels = torch.where(torch.tensor([row["assistant_masks"]]) == 1, ids, -100)
    trained = load_artifact(art, spec)(ids, labels=labels).loss
    base = load_model(spec, trainable=False)(ids, labels=labels).loss
    assert trained < 0.5 * base


def test_lora_sft_changes_every_adapter_weight_and_lowers_eval_loss(recipe_path, tmp_path):
    from safetensors.torch import load_file

    metrics = run_pipeline(load_recipe(recipe_path))["sft"]
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    art = tmp_path / "run" / "sft"
    assert {p.name for p in art.iterdir()} >= ARTIFACT_FILES
    weights = load_file(art / "adapter" / "adapter_model.safetensors")
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert len(lora_b) == 2 * 7  # every linear layer of both blocks: q k v o gate up down
    assert all(v.abs().sum() > 0 for v in lora_b.values())  # LoRA B starts at zero: each one moved
    assert not any("lora" not in k for k in weights)  # nothing but adapters was trained or saved


def test_packing_trains_on_full_rows(recipe_path):
    metrics = run_pipeline(load_recipe(recipe_path, ["stages.sft.packing=true", "stages.sft.max_steps=3"]))["sft"]
    assert metrics["train_examples"] == 24 and metrics["train_rows"] < 24  # packed into fewer 64-token rows
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]


def test_unchanged_stage_is_reused_and_a_changed_one_retrained(recipe_path, tmp_path, monkeypatch):
    run_pipeline(load_recipe(recipe_path))
    first = (tmp_path / "run" / "sft" / "artifact.json").read_text()
    monkeypatch.setattr(SFTTrainer, "train", lambda *a, **k: pytest.fail("an unchanged stage was retrained"))
    run_pipeline(load_recipe(recipe_path))
    assert (tmp_path / "run" / "sft" / "artifact.json").read_text() == first
    monkeypatch.undo()
    run_pipeline(load_recipe(recipe_path, ["stages.sft.max_steps=2"]))
    assert json.loads((tmp_path / "run" / "sft" / "artifact.json").read_text())["fingerprint"] != \
        json.loads(first)["fingerprint"]


def test_crash_leaves_no_finished_looking_folder_and_keeps_the_old_one(recipe_path, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash in training")

    monkeypatch.setattr(SFTTrainer, "train", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(load_recipe(recipe_path))
    run = tmp_path / "run"
    assert not (run / "sft").exists()
    assert not (run / ".sft.partial" / "artifact.json").exists()

    monkeypatch.undo()
    run_pipeline(load_recipe(recipe_path, ["stages.sft.max_steps=2"]))
    good = (run / "sft" / "artifact.json").read_text()
    monkeypatch.setattr(SFTTrainer, "train", boom)
    with pytest.raises(RuntimeError):  # a changed config retrains, and that retraining crashes
        run_pipeline(load_recipe(recipe_path, ["stages.sft.max_steps=3"]))
    assert (run / "sft" / "artifact.json").read_text() == good  # the finished artifact is untouched


def test_prompt_tokens_carry_label_minus_100(tiny_model_dir, tmp_path):
    spec = ModelSpec(name=str(tiny_model_dir))
    tok = load_tokenizer(spec)
    ds, stats = _tokenize([chat("what is two plus two", "four is the answer")], tok, 64, assistant_only=True)
    trainer = SFTTrainer(model=load_model(spec), train_dataset=ds, processing_class=tok,
                         args=SFTConfig(output_dir=str(tmp_path), max_length=64, report_to=[], use_cpu=True,
                                        bf16=False, gradient_checkpointing=False))
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    learned = [i for i, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(learned) == "four is the answer<|im_end|>\n"
    assert all(lab == -100 for i, lab in zip(ids, labels) if i not in learned)
    assert stats == {"truncated": 0, "dropped_too_long": 0}

    long = chat("what is two plus two " * 20, "four")
    ds, stats = _tokenize([long, chat("hi", "four is the answer " * 20)], tok, 32, assistant_only=True)
    assert stats == {"truncated": 1, "dropped_too_long": 1} and len(ds) == 1


def test_wandb_offline_run_holds_the_logged_loss(tmp_path, tiny_model_dir, sft_files):
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run",
                        stage="    max_steps: 4\n", tracking="wandb")
    run_pipeline(load_recipe(path))
    files = find_wandb_files(tmp_path / "run")
    assert len(files) == 1
    deadline = time.monotonic() + 60  # wandb's writer process may still be flushing right after finish()
    while not any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(files[0])):
        assert time.monotonic() < deadline, "the W&B run file was never completed"
        time.sleep(0.5)
    rows = read_wandb_history(files[0])
    logged = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(logged) == 4 and all(torch.isfinite(torch.tensor(v)) for v in logged)
    assert not any(k.startswith("final/") for r in rows for k in r)  # constants are no curves: the summary
    summary = read_wandb_summary(files[0])
    assert summary["train_loss_last"] == logged[-1] and "eval_loss_after" in summary
    config = (files[0].parent / "files" / "config.yaml")
    assert not config.exists() or "learning_rate" in config.read_text()
