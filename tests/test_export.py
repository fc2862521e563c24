"""`align export`: folders plain transformers loads in a fresh process without align (same logits as the
artifact), the generation config's stop tokens, the model card, and pushing refused without a token or
network. Every command runs through the real `align` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from align.inference import open_artifact, turn_end_ids

ALIGN = Path(sys.executable).parent / "align"  # the installed console script (PYTHONPATH picks the code)
IDS = [[2, 40, 41, 42, 43, 3], [2, 50, 51, 3, 1, 1]]  # <|im_start|> ... <|im_end|>, the second padded
MASK = [[1] * 6, [1, 1, 1, 1, 0, 0]]
# loads the folder with plain transformers (align made unimportable) and prints its logits as JSON
RELOAD = """
import json, sys, torch
sys.modules["align"] = None
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
cls = AutoModelForSequenceClassification if sys.argv[2] == "reward" else AutoModelForCausalLM
model = cls.from_pretrained(sys.argv[1]).eval()
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids, mask = torch.tensor(json.loads(sys.argv[3])), torch.tensor(json.loads(sys.argv[4]))
with torch.no_grad():
    out = model(input_ids=ids, attention_mask=mask).logits
print(json.dumps({"logits": out.tolist(), "template": bool(tok.chat_template), "labels": model.config.num_labels}))
"""


def align_cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ALIGN), *args], capture_output=True, text=True, timeout=600, input=input,
                          env={**os.environ, **(env or {})})


def reload(folder: Path, head: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", RELOAD, str(folder), head, json.dumps(IDS), json.dumps(MASK)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def artifact_logits(artifact: Path) -> torch.Tensor:
    loaded = open_artifact(str(artifact))
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits


@pytest.mark.parametrize("merge", [True, False], ids=["merged", "adapter"])
def test_exported_policy_reloads_without_align_with_the_same_logits(tiny_run, tmp_path, merge):
    out = tmp_path / "dpo"
    done = align_cli("export", str(tiny_run / "dpo"), "--out", str(out), *(["--merge"] if merge else []))
    assert done.returncode == 0, done.stderr
    files = {p.name for p in out.iterdir()}
    weights = {"model.safetensors", "config.json"} if merge else {"adapter_model.safetensors", "adapter_config.json"}
    assert weights | {"tokenizer.json", "generation_config.json", "README.md"} <= files, files
    got = reload(out, "causal_lm")
    assert got["template"]
    assert torch.allclose(torch.tensor(got["logits"]), artifact_logits(tiny_run / "dpo"), atol=1e-4)
    if not merge:  # dpo's adapter sits on sft's: exported as one adapter of rank 4 + 4 on the base model
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["r"] == 8 and config["base_model_name_or_path"] == json.loads(
            (tiny_run / "dpo" / "model.json").read_text())["base"]
        assert all(v.shape[0] == 8 for k, v in load_file(str(out / "adapter_model.safetensors")).items()
                   if "lora_A" in k)


def test_generation_config_stops_where_an_assistant_turn_ends(tiny_run, tmp_path):
    out = tmp_path / "dpo"
    assert align_cli("export", str(tiny_run / "dpo"), "--out", str(out), "--merge").returncode == 0
    config = json.loads((out / "generation_config.json").read_text())
    loaded = open_artifact(str(tiny_run / "dpo"))
    im_end = loaded.tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_ids(loaded.tok) == [im_end] and config["eos_token_id"] == [im_end]
    assert config["pad_token_id"] == loaded.tok.pad_token_id


def test_reward_model_exports_as_one_label_sequence_classifier(tiny_run, tmp_path):
    out = tmp_path / "rm"
    done = align_cli("export", str(tiny_run / "rm"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    got = reload(out, "reward")
    assert got["labels"] == 1 and not (out / "generation_config.json").exists()
    assert torch.allclose(torch.tensor(got["logits"]), artifact_logits(tiny_run / "rm"), atol=1e-4)
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "reward"}


def test_model_card_says_what_the_run_measured(tiny_run, tmp_path):
    out = tmp_path / "dpo"
    assert align_cli("export", str(tiny_run / "dpo"), "--out", str(out), "--merge").returncode == 0
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: transformers" in front and "pipeline_tag: text-generation" in front
    evals = json.loads((tiny_run / "evals.json").read_text())
    dpo_row = next(r for r in evals["rows"] if r["row"] == "dpo")["metrics"]
    for text in ("## Model", "Stage chain: base -> sft -> dpo", "## Training", "| rm | rm | sft |", "## Data",
                 "## Evaluation", "| baseline |", "judged by the reward model of stage `rm`", "## Limitations",
                 "## Reproduce", "align run ", "name: tiny", "license: other"):
        assert text in card, text
    assert f"{dpo_row['perplexity']:.4g}" in card  # the evaluation table's numbers
    inputs = json.loads((tiny_run / "manifest.json").read_text())["stages"]["rm"]["inputs"]["data"]
    assert inputs["train"] in card and "train.jsonl" in card  # data files with their hashes
    assert "Forgetting: perplexity on general-domain text changed by" in card


def test_push_to_hub_is_refused_without_a_token_and_offline(tiny_run, tmp_path):
    token = "hf_plantedTokenXYZ987654321"
    no_token = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")}
    done = align_cli("export", str(tiny_run / "sft"), "--out", str(tmp_path / "a"), "--merge",
                     "--push-to-hub", "someone/tiny", env=no_token)
    assert done.returncode == 2 and "no Hugging Face token found" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "a" / "model.safetensors").is_file()  # the export is kept
    offline = {"HF_TOKEN": token, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    done = align_cli("export", str(tiny_run / "sft"), "--out", str(tmp_path / "b"), "--merge",
                     "--push-to-hub", "someone/tiny", env=offline)
    assert done.returncode == 2 and "HF_HUB_OFFLINE is set" in done.stderr, done.stderr
    assert token not in done.stdout + done.stderr


def test_bad_export_requests_exit_2_and_write_nothing(tiny_run, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    for args, message in (
            (["export", str(tiny_run / "dpo"), "--out", str(tmp_path / "full")], "exists and is not empty"),
            (["export", str(tmp_path), "--out", str(tmp_path / "x")], "is not a finished stage artifact"),
            (["export", "base", "--out", str(tmp_path / "x")], "needs a stage folder"),
            (["export", str(tiny_run / "dpo"), "--out", str(tmp_path / "no" / "x")], "does not exist")):
        done = align_cli(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
