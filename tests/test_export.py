"""`align export`: folders plain transformers loads in a fresh process without align (same logits as the
artifact), the generation config's stop tokens, the model card, and pushing refused without a token or
network. The folders are exported once per module (in-process) and reloaded together in one fresh process;
bad requests and one whole export run through the real `align` console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from align.errors import AlignError
from align.export import export_artifact, push_to_hub
from align.generation import stop_token_ids, turn_end_ids
from align.inference import open_artifact

ALIGN = Path(sys.executable).parent / "align"  # the installed console script (PYTHONPATH picks the code)
IDS = [[2, 40, 41, 42, 43, 3], [2, 50, 51, 3, 1, 1]]  # <|im_start|> ... <|im_end|>, the second padded
MASK = [[1] * 6, [1, 1, 1, 1, 0, 0]]
# loads each folder with plain transformers (align made unimportable) and prints their logits as JSON
RELOAD = """
import json, sys, torch
sys.modules["align"] = None
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
ids, mask = torch.tensor(json.loads(sys.argv[2])), torch.tensor(json.loads(sys.argv[3]))
out = {}
for name, (folder, head) in json.loads(sys.argv[1]).items():
    cls = AutoModelForSequenceClassification if head == "reward" else AutoModelForCausalLM
    model = cls.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    out[name] = {"logits": logits.tolist(), "template": bool(tok.chat_template), "labels": model.config.num_labels}
print(json.dumps(out))
"""
EXPORTS = {"merged": ("dpo", True), "adapter": ("dpo", False), "rm": ("rm", False)}


def align_cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ALIGN), *args], capture_output=True, text=True, timeout=600, input=input,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """dpo merged, dpo as one adapter, and rm, each exported once: name -> (folder, what a fresh process
    without align loaded from it)."""
    root = tmp_path_factory.mktemp("exported")
    folders = {name: export_artifact(str(tiny_run / stage), root / name, merge=merge)
               for name, (stage, merge) in EXPORTS.items()}
    heads = {name: [str(f), "reward" if name == "rm" else "causal_lm"] for name, f in folders.items()}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(heads), json.dumps(IDS), json.dumps(MASK)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    reloaded = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (folders[name], reloaded[name]) for name in folders}


def artifact_logits(artifact: Path) -> torch.Tensor:
    loaded = open_artifact(str(artifact))
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits


@pytest.mark.parametrize("name", ["merged", "adapter"])
def test_exported_policy_reloads_without_align_with_the_same_logits(exported, tiny_run, name):
    out, got = exported[name]
    files = {p.name for p in out.iterdir()}
    weights = {"model.safetensors", "config.json"} if name == "merged" else {"adapter_model.safetensors",
                                                                              "adapter_config.json"}
    assert weights | {"tokenizer.json", "generation_config.json", "README.md"} <= files, files
    assert got["template"]
    assert torch.allclose(torch.tensor(got["logits"]), artifact_logits(tiny_run / "dpo"), atol=1e-4)
    if name == "adapter":  # dpo's adapter sits on sft's: exported as one adapter of rank 4 + 4 on the base model
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["r"] == 8 and config["base_model_name_or_path"] == json.loads(
            (tiny_run / "dpo" / "model.json").read_text())["base"]
        assert all(v.shape[0] == 8 for k, v in load_file(str(out / "adapter_model.safetensors")).items()
                   if "lora_A" in k)


def test_generation_config_stops_where_align_generation_stops(exported, tiny_run):
    config = json.loads((exported["merged"][0] / "generation_config.json").read_text())
    loaded = open_artifact(str(tiny_run / "dpo"))
    im_end = loaded.tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_ids(loaded.tok) == [im_end]
    assert config["eos_token_id"] == stop_token_ids(loaded.tok, loaded.model) == [im_end]
    assert config["pad_token_id"] == loaded.tok.pad_token_id


def test_reward_model_exports_as_one_label_sequence_classifier(exported, tiny_run):
    out, got = exported["rm"]
    assert got["labels"] == 1 and not (out / "generation_config.json").exists()
    assert torch.allclose(torch.tensor(got["logits"]), artifact_logits(tiny_run / "rm"), atol=1e-4)
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "reward"}


def test_model_card_says_what_the_run_measured_and_who_judged(exported, tiny_run):
    card = (exported["merged"][0] / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: transformers" in front and "pipeline_tag: text-generation" in front
    assert "library_name: peft" in (exported["adapter"][0] / "README.md").read_text().split("---")[1]
    evals = {r["row"]: r for r in json.loads((tiny_run / "evals.json").read_text())["rows"]}
    for text in ("## Model", "Stage chain: base -> sft -> dpo", "## Training", "| rm | rm | sft |", "## Data",
                 "## Evaluation", "| baseline |", "## Limitations", "## Reproduce", "align run ", "name: tiny",
                 "license: other"):
        assert text in card, text
    assert f"{evals['dpo']['metrics']['perplexity']:.4g}" in card  # the evaluation table's numbers
    # every win rate names its judge, as the run recorded it (sft's row was judged once rm had finished)
    assert evals["dpo"]["judges"]["win_rate"] == evals["sft"]["judges"]["win_rate"] == "rm stage rm"
    for row in ("sft", "dpo"):
        assert f"- {row}: win_rate, reward, reward_against: rm stage rm." in card
    assert "- win_rate: each row's answers against the base model's, judged by the reward model of the last rm " \
           "stage finished" in card
    inputs = json.loads((tiny_run / "manifest.json").read_text())["stages"]["rm"]["inputs"]["data"]
    assert inputs["train"] in card and "train.jsonl" in card  # data files with their hashes
    assert "Forgetting: perplexity on general-domain text changed by" in card
    assert "Win rates are judged by a reward model trained in this same run" in card


def test_model_card_marks_a_win_rate_judged_by_the_reward_model_the_policy_optimized():
    from align.model_card import _evaluation, _limitations

    row = {"row": "ppo", "metrics": {"win_rate": 0.9, "llm_win_rate": 0.4}, "gates": [],
           "judges": {"win_rate": "rm stage rm", "llm_win_rate": "LLM judge-model"}, "own_reward": ["win_rate"]}
    run = {"evals": {"rows": [{"row": "baseline", "metrics": {}}, row]}, "stages": {"ppo": {"metrics": {}}}}
    recipe = {"evals": [{"hook": "win_rate", "judge": "rm"}, {"hook": "llm_judge", "judge": "judge-model",
                                                              "against": "start"}]}
    text = _evaluation(run, recipe)
    assert "| ppo | 0.9 (own reward: optimistic) | 0.4 | none |" in text
    assert "- ppo: win_rate: rm stage rm (judged by its own reward (optimistic)); llm_win_rate: LLM judge-model." \
        in text
    assert "judged by the reward model of stage `rm`" in text and "judged by the LLM `judge-model`, asked in " \
        "both orders" in text and "against those of the model its stage started from" in text
    assert "so its win rates are optimistic" in _limitations(run, recipe, "ppo")


def test_push_to_hub_is_refused_without_a_token_and_offline(tiny_run, tmp_path, monkeypatch):
    # the one whole export through the console script: written, then the push refused with exit 2
    done = align_cli("export", str(tiny_run / "sft"), "--out", str(tmp_path / "a"), "--merge",
                     "--push-to-hub", "someone/tiny", env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home")})
    assert done.returncode == 2 and "no Hugging Face token found" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "a" / "model.safetensors").is_file() and "wrote" in done.stdout  # the export is kept
    token = "hf_plantedTokenXYZ987654321"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AlignError, match="HF_HUB_OFFLINE is set") as e:
        push_to_hub(tmp_path / "a", "someone/tiny")
    assert token not in str(e.value)


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
