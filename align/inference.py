"""Using a finished artifact outside a pipeline: `align chat`, `align generate` and `align export`.

`open_artifact` loads a stage folder (or the base model, `base` with a model name) as one model with its
adapters merged, with the tokenizer the stage saved (the recipe's chat template included) and the
artifact's fingerprint. Generation stops where `align.generation` stops it: at EOS or at the token that
ends an assistant turn in the chat template (`generation.turn_end_ids`; an instruct model's EOS is often
not that token).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from align import records
from align.errors import AlignError
from align.schema import ModelSpec


@dataclasses.dataclass
class Loaded:
    model: Any
    tok: Any
    spec: ModelSpec
    head: str  # causal_lm | reward
    artifact: Path | None  # None: the base model
    fingerprint: str  # the stage's fingerprint, or base:<model name>
    source: str  # what produced it, for output records: the artifact folder or base:<model name>


def artifact_spec(artifact: str, model: str | None = None) -> tuple[ModelSpec, Path | None]:
    """The model spec of a stage folder (from its config.yaml; `model` overrides the name), or of `base`."""
    from align.recipe import build_model_spec

    if artifact == "base":
        if not model:
            raise AlignError("'base' needs --model NAME (a hub id, a folder, a .gguf file or smollm2-135m-instruct)")
        return build_model_spec({"name": model}), None
    path = Path(artifact).resolve()
    found = {name: records.read_or_none(path / name, spec) for name, spec in
             (("config.yaml", records.CONFIG), ("artifact.json", records.ARTIFACT), ("model.json", records.MODEL))}
    if bad := [name for name, record in found.items() if record is None]:
        raise AlignError(f"{artifact} is not a finished stage artifact (no readable config.yaml, artifact.json and "
                         f"model.json of the shape align writes: {', '.join(bad)})",
                         hint="give a stage folder of a run, e.g. runs/quickstart/dpo, or 'base' with --model; "
                              "`align runs` lists them")
    return build_model_spec(found["config.yaml"]["model"] | ({"name": model} if model else {})), path


def open_artifact(artifact: str, model: str | None = None, head: str | None = None) -> Loaded:
    """The artifact's model (frozen, adapters merged, on `distributed.device()` as `models.load_model` places
    it) and its tokenizer."""
    spec, path = artifact_spec(artifact, model)  # checked the records read below
    kind = records.load(path / "model.json")["head"] if path else head or "causal_lm"
    if head and head != kind:
        raise AlignError(f"{artifact} is a {kind.replace('_', ' ')} artifact; this command needs a "
                         f"{head.replace('_', ' ')} (a policy stage: sft, dpo, ppo, ...)")
    from align.models import load_artifact, load_model, load_tokenizer  # after the checks: torch takes seconds

    if spec.adapter == "qlora":  # merged into full-precision weights: usable (and exportable) without bitsandbytes
        spec = dataclasses.replace(spec, adapter="lora")
    if path is None:
        loaded = load_model(spec, kind, trainable=False)
        tok, fp, source = load_tokenizer(spec), f"base:{spec.name}", f"base:{spec.name}"
    else:
        loaded = load_artifact(path, spec)
        tok = _artifact_tokenizer(path, spec)
        fp = records.load(path / "artifact.json").get("fingerprint", "")
        source = str(path)
    return Loaded(loaded, tok, spec, kind, path, fp, source)


def _artifact_tokenizer(path: Path, spec: ModelSpec) -> Any:
    """The tokenizer the stage saved (with the recipe's chat template), else the base model's."""
    from transformers import AutoTokenizer

    from align.models import load_tokenizer, unloadable_as

    if not (path / "tokenizer").is_dir():
        return load_tokenizer(spec)
    # a damaged tokenizer.json: the tokenizers library raises a bare Exception
    with unloadable_as(f"cannot load the tokenizer of {path}", f"its tokenizer/ folder is damaged: retrain the "
                       f"stage, or delete {path / 'tokenizer'} to use the base model's"):
        tok = AutoTokenizer.from_pretrained(path / "tokenizer", trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def require_chat(loaded: Loaded, command: str) -> None:
    if not loaded.tok.chat_template:
        raise AlignError(f"align {command}: the tokenizer of '{loaded.spec.name}' has no chat template",
                         hint="use an instruct model or an artifact of a recipe with model.chat_template set")
