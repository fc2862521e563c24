"""The recipe schema: the typed config objects a recipe YAML is validated into.

Every key a recipe may hold is a field here, with its type, default and a one-line help text
(`recipe.py` validates against these classes; the recipe reference in the docs is generated from them).
A stage's fields are those of `StageBase` plus those of its kind's class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal


def _f(default, help: str, **kw):
    """A dataclass field with a help text (mutable defaults pass `default_factory` instead)."""
    if "default_factory" in kw:
        return field(metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class LoraSpec:
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r).")
    dropout: float = _f(0.0, "Dropout on the LoRA branch (measured on CPU: 0.05 costs ~10% of a step).")
    target_modules: str | list[str] = _f(
        "all-linear", "Modules to adapt: 'all-linear' (every linear layer but the output head) or a list of names."
    )


@dataclass
class ModelSpec:
    name: str = _f(
        "smollm2-135m-instruct",
        "Hub id, local folder, .gguf file, or the embedded 'smollm2-135m-instruct'.",
    )
    adapter: Literal["lora", "full", "qlora"] = _f("lora", "Train LoRA adapters, all weights, or 4-bit QLoRA (CUDA).")
    lora: LoraSpec = _f(None, "LoRA settings (adapter: lora or qlora).", default_factory=LoraSpec)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "Weight dtype; auto = bfloat16 on a bf16-capable GPU, float32 on CPU (bf16 measured no faster here)."
    )
    gradient_checkpointing: bool | None = _f(
        None, "Trade compute for memory; unset = on only for models over 1B parameters on a GPU."
    )
    chat_template: str | None = _f(
        None, "Jinja chat template file, or 'chatml', for a tokenizer that has none."
    )
    trust_remote_code: bool = _f(False, "Run model code from the hub repository (off unless you trust it).")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit).")
    attn_implementation: str | None = _f(None, "Attention kernel (eager, sdpa, flash_attention_2); unset = default.")


@dataclass
class DataSpec:
    train: str = _f(None, "Training data: a JSONL file, a local dataset folder, or a hub dataset id.")
    eval: str | None = _f(None, "Held-out data, same forms as train.")
    eval_fraction: float = _f(0.0, "Hold out this fraction of train when no eval set is given.")
    split: str = _f("train", "Split to read from a hub dataset or dataset folder.")
    max_examples: int | None = _f(None, "Use at most this many training examples.")


@dataclass
class DataSection:
    sft: DataSpec | None = _f(None, "Chat data for sft stages.")
    rankings: DataSpec | None = _f(None, "Ranked or pairwise preferences for rm and dpo stages.")
    prompts: DataSpec | None = _f(None, "Prompts for on-policy stages (ppo).")


@dataclass
class TrackingSpec:
    SHORTHAND: ClassVar[str] = "backend"  # `tracking: none` means `tracking: {backend: none}`
    backend: Literal["wandb", "tensorboard", "none"] = _f(
        "wandb", "Where metrics go; wandb runs offline when WANDB_API_KEY is unset."
    )
    project: str = _f("align", "W&B project.")
    entity: str | None = _f(None, "W&B entity (team or user); unset = your default.")
    tags: list[str] = _f(None, "W&B tags.", default_factory=list)


@dataclass
class StageBase:
    name: str = _f(None, "Stage name, unique in the recipe; its artifact folder and the key for overrides.")
    kind: str = _f(None, "What the stage does: sft, rm, dpo or ppo.")
    init: str = _f("base", "Starting model: 'base' (the recipe's model) or the name of an earlier stage.")
    data: DataSpec | None = _f(None, "This stage's data; unset = the recipe's data section for its kind.")
    learning_rate: float = _f(2e-4, "Peak learning rate.")
    epochs: float = _f(1.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = _f(-1, "Optimizer steps; -1 = run for `epochs`.")
    batch_size: int = _f(4, "Examples per device per micro-batch.")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.")
    max_length: int = _f(512, "Truncate tokenized examples to this many tokens.")
    warmup_ratio: float = _f(0.03, "Fraction of steps for linear warm-up.")
    lr_scheduler: str = _f("cosine", "transformers scheduler name (cosine, linear, constant, ...).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm.")
    logging_steps: int = _f(5, "Log every N optimizer steps.")
    eval_batch_size: int = _f(8, "Examples per batch for evaluation.")
    eval_before: bool = _f(True, "Also evaluate the starting model on the held-out set (the 'before' numbers).")
    save_steps: int = _f(50, "Checkpoint every N optimizer steps, to resume after a crash; 0 = never.")
    seed: int | None = _f(None, "Seed for this stage; unset = the recipe's seed.")


@dataclass
class SFTStage(StageBase):
    packing: bool = _f(False, "Pack several examples into each max_length row (no padding).")
    assistant_only_loss: bool = _f(True, "Train only on assistant tokens; false = every token.")


@dataclass
class RMStage(StageBase):
    learning_rate: float = _f(1e-4, "Peak learning rate (LoRA + the new score head; half of SFT's, as the head "
                                    "starts random).")
    batch_size: int = _f(4, "PROMPTS per micro-batch: each brings all its K responses (K forward rows) and all "
                            "its ranked pairs.")
    eval_batch_size: int = _f(16, "Responses per forward pass when scoring the held-out set.")
    loss: Literal["bradley_terry", "plackett_luce"] = _f(
        "bradley_terry", "bradley_terry: -log sigmoid(r_better - r_worse - margin), mean over a prompt's pairs, "
        "then over prompts; plackett_luce: listwise likelihood of the whole ranking (ties: Breslow).")
    margin: bool = _f(True, "Subtract a record's 'margin' inside the Bradley-Terry loss (records without one: 0).")
    center_coef: float = _f(0.0, "Reward-centering penalty coef * mean(r^2) keeping rewards near 0 "
                                 "(e.g. 0.01); 0 = off.")


STAGE_KINDS: dict[str, type[StageBase] | None] = {"sft": SFTStage, "rm": RMStage, "dpo": None, "ppo": None}
"""Stage kind -> its config class; None marks a kind that is reserved but not implemented yet."""


@dataclass
class Recipe:
    name: str = _f(None, "Recipe name; the default run folder is runs/<name>.")
    model: ModelSpec = _f(None, "The model every stage starts from.", default_factory=ModelSpec)
    stages: list[StageBase] = _f(None, "Stages, run in order.", default_factory=list)
    data: DataSection = _f(None, "Datasets per kind of stage.", default_factory=DataSection)
    tracking: TrackingSpec = _f(None, "Experiment tracking.", default_factory=TrackingSpec)
    output_dir: str | None = _f(None, "Run folder; unset = runs/<name>.")
    seed: int = _f(42, "Random seed for every stage that sets none.")
    source: str = field(default="<recipe>", metadata={"internal": True})

    def stage(self, name: str) -> StageBase:
        return next(s for s in self.stages if s.name == name)

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"
