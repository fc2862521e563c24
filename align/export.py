"""`align export`: a stage artifact as a standard Hugging Face model folder, loadable without align.

    align export runs/quickstart/dpo --out exported/dpo --merge      # merged weights (safetensors)
    align export runs/quickstart/dpo --out exported/dpo-lora         # a LoRA adapter naming its base model
    align export runs/quickstart/rm --out exported/rm                # sequence classification, one label
    align export runs/quickstart/dpo --out exported/dpo --merge --push-to-hub you/quickstart-dpo

The folder holds the weights, the tokenizer with its chat template, a `generation_config.json` whose stop
tokens end an assistant turn, and a model card (README.md, `align.model_card`) written from the run folder.

Without `--merge`, an artifact trained on top of another adapter (dpo on sft) is exported as one LoRA
adapter on the base model: the chain's adapters side by side (rank r1 + r2, each scaled by its own
alpha / r), which is exactly their sum, W + s1 B1 A1 + s2 B2 A2. A reward model is always exported merged
(its score head is new weights, not a LoRA delta), and a fully fine-tuned artifact as its full weights. The
folder is written beside `--out` and renamed into place; an existing, non-empty `--out` is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from align import records
from align.errors import AlignError
from align.paths import output_folder


def register(sub: Any) -> None:
    """Add `export` to the `align` command's subparsers."""
    p = sub.add_parser("export", help="write a stage artifact as a Hugging Face model folder (with a model card); "
                                      "optionally push it to the Hub")
    p.add_argument("artifact", metavar="ARTIFACT", help="a stage folder, e.g. runs/quickstart/dpo")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (must be new or empty)")
    p.add_argument("--merge", action="store_true", help="merge adapters into full weights (what vLLM, llama.cpp "
                                                        "conversion and most tools want)")
    p.add_argument("--model", help="base model name, to override the artifact's")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the folder to this Hub repository (needs a token: "
                                                            "`hf auth login` or HF_TOKEN)")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: create a public repository "
                                                         "(default: private)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    if args.public and not args.push_to_hub:
        raise AlignError("--public only applies with --push-to-hub REPO_ID")
    if args.push_to_hub:  # a name the Hub refuses is said before the export, not after it is written
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(args.push_to_hub)
        except HFValidationError as e:
            raise AlignError(f"--push-to-hub {args.push_to_hub}: not a Hub repository id ({str(e).splitlines()[0]})",
                             hint="write it as owner/name, e.g. my-org/tiny-dpo") from None
    out = export_artifact(args.artifact, Path(args.out), merge=args.merge, model=args.model)
    print(f"wrote {out}")
    if args.push_to_hub:
        url = push_to_hub(out, args.push_to_hub, private=not args.public)
        print(f"pushed to {url} ({'public' if args.public else 'private'})")
    return 0


def export_artifact(artifact: str, out: Path, merge: bool = False, model: str | None = None) -> Path:
    """Write `artifact` as a model folder at `out` (see the module docstring); returns `out`."""
    from align.inference import artifact_spec, open_artifact
    from align.model_card import write_card

    if artifact == "base":
        raise AlignError("align export needs a stage folder (runs/<recipe>/<stage>), not 'base'")
    spec, path = artifact_spec(artifact, model)  # its records checked (`records`)
    out = output_folder("--out", str(out))
    from align.models import artifact_head  # after the checks: torch takes seconds to import

    head = artifact_head(path)
    # full fine-tuning has no adapter to export: its weights are written as they are
    trained = records.load(path / "model.json")["weights"]
    adapter = not merge and head == "causal_lm" and trained == "adapter"
    chain = _adapter_chain(path) if adapter else []  # checked before anything is loaded or written
    tmp = out.resolve().with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        loaded = open_artifact(artifact, model)
        if adapter:
            write_combined_adapter(chain, spec, tmp)
        else:
            if head == "reward":  # one label, named, so pipelines show what the number is
                loaded.model.config.id2label, loaded.model.config.label2id = {0: "reward"}, {"reward": 0}
            loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.tok.save_pretrained(tmp)
        if head == "causal_lm":
            _generation_config(loaded).save_pretrained(tmp)
        write_card(path, tmp, weights="adapter" if adapter else "merged", spec=spec)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _generation_config(loaded: Any) -> Any:
    """The model's generation defaults, stopping at EOS and at the token that ends an assistant turn."""
    import copy

    from transformers import GenerationConfig

    from align.generation import stop_token_ids

    model = loaded.model
    config = copy.deepcopy(model.generation_config) if getattr(model, "generation_config", None) \
        else GenerationConfig.from_model_config(model.config)
    config.eos_token_id = stop_token_ids(loaded.tok, model)  # where align's own sampling stops
    config.pad_token_id = loaded.tok.pad_token_id
    if loaded.tok.bos_token_id is not None:
        config.bos_token_id = loaded.tok.bos_token_id
    return config


# ---- one adapter from a chain of adapters -----------------------------------------------------------

def _adapter_chain(artifact: Path) -> list[Path]:
    """The adapter folders from the base model up to `artifact`, or an error if the chain has full weights."""
    chain, folder = [], artifact
    while folder is not None:
        meta = records.read(folder / "model.json", records.MODEL, hint="retrain the stage, or export with --merge")
        if meta["weights"] != "adapter":
            raise AlignError(f"{artifact} is an adapter on fully fine-tuned weights (stage {folder.name}), not on "
                             "a published base model", hint="export it with --merge")
        chain.append(folder / "adapter")
        folder = Path(meta["parent"]) if meta.get("parent") else None
    return chain[::-1]


def write_combined_adapter(chain: list[Path], spec: Any, out: Path) -> None:
    """One LoRA adapter equal to the chain's adapters applied in turn (their deltas add up)."""
    import torch
    from safetensors.torch import save_file

    from align.models import resolve_model

    configs = [records.read(a / "adapter_config.json", _LORA, hint="retrain its stage") for a in chain]
    for a, c in zip(chain, configs):
        if c.get("peft_type") != "LORA" or c.get("use_dora") or c.get("rank_pattern") or c.get("alpha_pattern"):
            raise AlignError(f"{a}: only plain LoRA adapters combine into one", hint="export with --merge")
    weights = [_weights(a / "adapter_model.safetensors") for a in chain]
    scales = [c["lora_alpha"] / (c["r"] ** 0.5 if c.get("use_rslora") else c["r"]) for c in configs]
    modules = sorted({k.rsplit(".lora_", 1)[0] for w in weights for k in w if ".lora_" in k})
    others = sorted(k for w in weights for k in w if ".lora_" not in k)
    if others:
        raise AlignError(f"{chain[-1]}: the adapter also trains whole modules ({others[0]}, ...)",
                         hint="export with --merge")
    merged: dict[str, torch.Tensor] = {}
    for m in modules:
        present = next(w for w in weights if f"{m}.lora_A.weight" in w)
        n_in, n_out = present[f"{m}.lora_A.weight"].shape[1], present[f"{m}.lora_B.weight"].shape[0]
        a_parts, b_parts = [], []
        for w, c, s in zip(weights, configs, scales):
            a = w.get(f"{m}.lora_A.weight")
            a_parts.append(a if a is not None else torch.zeros(c["r"], n_in))
            b = w.get(f"{m}.lora_B.weight")
            b_parts.append(b * s if b is not None else torch.zeros(n_out, c["r"]))
        merged[f"{m}.lora_A.weight"] = torch.cat(a_parts, 0).contiguous()
        merged[f"{m}.lora_B.weight"] = torch.cat(b_parts, 1).contiguous()
    rank = sum(c["r"] for c in configs)
    targets = sorted({t for c in configs for t in (c["target_modules"] if isinstance(c["target_modules"], list)
                                                   else [c["target_modules"]])})
    name = spec.name if _is_hub_id(spec.name) else str(Path(resolve_model(spec.name)).resolve())
    config = configs[-1] | {"r": rank, "lora_alpha": rank, "use_rslora": False, "target_modules": targets,
                            "base_model_name_or_path": name, "revision": spec.revision, "task_type": "CAUSAL_LM"}
    save_file(merged, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))


_LORA = {"r": int, "lora_alpha": (int, float), "target_modules": (list, str), "?peft_type": str}


def _weights(path: Path) -> dict[str, Any]:
    """An adapter's tensors; a missing or damaged file is an error naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise AlignError(f"cannot read {path}: {str(e).splitlines()[0]}",
                         hint="the artifact is damaged: retrain its stage (align run RECIPE --force STAGE)") from None


def _is_hub_id(name: str) -> bool:
    from align.models import EMBEDDED

    return name not in EMBEDDED and not Path(name).expanduser().exists() and not name.endswith(".gguf")


# ---- the Hub ----------------------------------------------------------------------------------------

def push_to_hub(folder: Path, repo_id: str, private: bool = True) -> str:
    """Upload `folder` to the Hub repository `repo_id` (created if missing, private unless asked)."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise AlignError(f"--push-to-hub {repo_id}: no Hugging Face token found; the export is kept in {folder}",
                         hint="log in with `hf auth login` (or set HF_TOKEN), then push the folder again")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise AlignError(f"--push-to-hub {repo_id}: HF_HUB_OFFLINE is set, so nothing can be uploaded; the export "
                         f"is kept in {folder}", hint="unset HF_HUB_OFFLINE on a machine with internet access")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message="Upload model exported by align")
    except Exception as e:  # no network, bad token, no permission: say which, never the token itself
        reason = str(e).replace(token, "<token>").splitlines()[0] if str(e) else type(e).__name__
        raise AlignError(f"--push-to-hub {repo_id}: upload failed ({reason}); the export is kept in {folder}",
                         hint="check the network, the repository name and that your token may write to it") from None
    return getattr(info, "repo_url", None) or f"https://huggingface.co/{repo_id}"
