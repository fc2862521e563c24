"""The pretrain stage on a tiny model: it learns the domain text, trains only the adapter, packs every token,
chains into sft, and bad text data is a clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from align.data import load_split, parse_text, read_records
from align.errors import AlignError
from align.models import load_artifact, load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import STAGE_METRICS, DataSpec, ModelSpec
from align.stages.common import StageContext
from tests.conftest import write_jsonl

DOCS = [
    "the queen lays eggs in the brood comb and the workers feed the larvae",
    "bees store nectar in the comb and turn it into honey over many days",
    "a strong colony fills the hive with bees, brood and stores of honey",
    "the beekeeper adds a box of frames when the colony needs more room",
    "workers guard the entrance of the hive and fan their wings to cool it",
    "in winter the bees form a cluster and eat the honey they stored",
]
HELD_OUT = [
    "the workers store honey in the comb and feed the brood in the hive",
    "the beekeeper checks the frames for eggs, larvae and a healthy queen",
]


@pytest.fixture
def text_files(tmp_path) -> tuple[Path, Path]:
    """Domain text: the training documents as JSONL, the held-out ones as a .txt file of paragraphs."""
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n\n".join(HELD_OUT) + "\n")
    return write_jsonl(tmp_path / "domain.jsonl", [{"id": i, "text": t} for i, t in enumerate(DOCS * 4)]), held_out


def _recipe(tmp_path: Path, model: Path, train: Path, evals: Path, more: str = "") -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"""name: test
model:
  name: {model}
  lora: {{r: 8, alpha: 16, dropout: 0.0}}
data:
  text: {{train: {train}, eval: {evals}}}
tracking: none
output_dir: {tmp_path / "run"}
stages:
  - {{name: pretrain, kind: pretrain, learning_rate: 1.0e-2, max_steps: 20, batch_size: 4, max_length: 64,
      logging_steps: 1, save_steps: 0}}
{more}""")
    return path


class _Snapshot(TrainerCallback):
    """Which parameters training changed, and which were trainable."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), self.before[n])}


def test_pretrain_learns_packs_every_token_and_trains_only_the_adapter(tmp_path, tiny_model_dir, text_files,
                                                                       monkeypatch):
    snap = _Snapshot()
    callbacks = StageContext.callbacks
    monkeypatch.setattr(StageContext, "callbacks", lambda self: [*callbacks(self), snap])
    metrics = run_pipeline(load_recipe(_recipe(tmp_path, tiny_model_dir, *text_files)))["pretrain"]
    assert set(metrics) <= set(STAGE_METRICS["pretrain"]), set(metrics) - set(STAGE_METRICS["pretrain"])

    # held-out domain text got likelier (rank-8 adapters on a random 2-layer model learn slowly: a few percent)
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["perplexity_after"] == pytest.approx(math.exp(metrics["eval_loss_after"]))
    assert (metrics["train_documents"], metrics["eval_documents"]) == (24, 2)
    tok = load_tokenizer(ModelSpec(name=str(tiny_model_dir)))
    tokens = sum(len(tok(t)["input_ids"]) + 1 for t in DOCS * 4)  # each document and its EOS
    assert metrics["train_rows"] == math.ceil(tokens / 64)  # concatenated into full 64-token rows, none dropped

    assert snap.trainable and all("lora_" in n for n in snap.trainable)
    assert snap.changed == snap.trainable  # every LoRA weight moved, no frozen weight did
    art = tmp_path / "run" / "pretrain"
    assert {"adapter", "tokenizer", "model.json", "metrics.json", "artifact.json"} <= {p.name for p in art.iterdir()}
    assert json.loads((art / "metrics.json").read_text()) == pytest.approx(metrics)


def test_sft_starts_from_the_pretrain_artifact_and_hooks_measure_both_texts(tmp_path, tiny_model_dir, text_files,
                                                                           sft_files):
    general = write_jsonl(tmp_path / "general.jsonl", [{"text": "a dog ran in the park"},
                                                       {"text": "how do I bake bread"}])
    more = f"""  - {{name: sft, kind: sft, init: pretrain, data: {{train: {sft_files[0]}}}, max_steps: 2, batch_size: 4,
      max_length: 64, save_steps: 0}}
evals:
  - {{hook: perplexity, name: domain}}
  - {{hook: perplexity, data: {general}, name: general}}
"""
    run_pipeline(load_recipe(_recipe(tmp_path, tiny_model_dir, *text_files, more)))
    run = tmp_path / "run"
    assert json.loads((run / "sft" / "model.json").read_text())["parent"] == str((run / "pretrain").resolve())
    assert json.loads((run / "sft" / "artifact.json").read_text())["status"] == "finished"

    # the artifact holds the learning: reloaded, it finds the held-out text likelier than the base model does
    spec = ModelSpec(name=str(tiny_model_dir))
    ids = torch.tensor([load_tokenizer(spec)(HELD_OUT[0])["input_ids"]])
    assert load_artifact(run / "pretrain", spec)(ids, labels=ids).loss < load_model(spec, trainable=False)(
        ids, labels=ids).loss

    rows = {r["row"]: r["metrics"] for r in json.loads((run / "evals.json").read_text())["rows"]}
    assert set(rows) == {"baseline", "pretrain", "sft"}
    assert {"perplexity_domain", "perplexity_general"} <= set(rows["baseline"])
    assert rows["pretrain"]["perplexity_domain"] < rows["baseline"]["perplexity_domain"]  # data.text.eval by default
    assert rows["pretrain"]["perplexity_domain_increase"] < 0 and "perplexity_general_increase" in rows["sft"]


def test_bad_text_data_names_the_file_line_and_field(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(AlignError) as e:
        load_split(DataSpec(train=str(bad)), parse_text, 0)
    assert f"{bad} line 2, field 'text'" in str(e.value) and "sft stages" in str(e.value)
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": "  "}])
    with pytest.raises(AlignError, match=r"line 1, field 'text': empty text"):
        load_split(DataSpec(train=str(empty)), parse_text, 0)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    with pytest.raises(AlignError, match="the file is empty") as e:
        load_split(DataSpec(train=str(blank)), parse_text, 0)
    assert "blank lines" in str(e.value)


def test_a_txt_file_is_one_document_per_paragraph(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("First paragraph,\nwrapped.\n\n\n  \nSecond one.\n")
    assert [(line, rec) for _, line, rec in read_records(str(path))] == [
        (1, {"text": "First paragraph,\nwrapped."}), (6, {"text": "Second one."})]


def test_recipe_needs_text_data_for_a_pretrain_stage_and_distinct_hook_names(tmp_path, tiny_model_dir, text_files):
    path = _recipe(tmp_path, tiny_model_dir, *text_files)
    path.write_text(path.read_text().replace(f"  text: {{train: {text_files[0]}, eval: {text_files[1]}}}\n", ""))
    with pytest.raises(AlignError, match=r"stages\.pretrain\.data: no data: set data\.text or this stage's data "
                                         r"\(raw text to continue pretraining on"):
        load_recipe(path)
    path = _recipe(tmp_path, tiny_model_dir, *text_files, "evals:\n  - {hook: perplexity}\n  - {hook: perplexity}\n")
    with pytest.raises(AlignError, match=r"evals\[1\]\.name: evals\[0\] is also hook perplexity; give each"):
        load_recipe(path)
