"""Security by default: recipes are data, no remote code unless asked, safe loaders, no secrets on disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from align.errors import AlignError
from align.pipeline import run_pipeline
from align.recipe import load_recipe
from align.schema import ModelSpec
from tests.conftest import write_recipe

PACKAGE = Path(__file__).resolve().parents[1] / "align"


def test_recipe_yaml_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\nstages: []\n")
    with pytest.raises(AlignError, match="YAML syntax error"):
        load_recipe(path)
    assert not marker.exists()


def test_remote_code_is_off_unless_the_recipe_asks():
    assert ModelSpec().trust_remote_code is False


def test_no_unsafe_loaders_in_the_package():
    for source in PACKAGE.rglob("*.py"):
        text = source.read_text()
        assert "yaml.load(" not in text and "pickle" not in text, source
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (source, call)


def test_planted_secrets_appear_in_no_file_a_run_writes(tmp_path, tiny_model_dir, sft_files, monkeypatch):
    secrets = {"WANDB_API_KEY": "planted-wandb-key-0123456789abcdef0123456789abcdef",
               "HF_TOKEN": "hf_plantedTokenXYZ987654321"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_MODE", "offline")  # a key is set, but this machine has no network
    path = write_recipe(tmp_path / "r.yaml", tiny_model_dir, *sft_files, tmp_path / "run",
                        stage="    max_steps: 2\n", tracking="wandb")
    run_pipeline(load_recipe(path))
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and len(written) > 10
    for p in written:
        data = p.read_bytes()
        for value in secrets.values():
            assert value.encode() not in data, f"secret found in {p}"
