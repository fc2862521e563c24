"""The recipe schema: the typed config objects a recipe YAML is validated into.

Every key a recipe may hold is a field here, with its type, default and a one-line help text
(`recipe.py` validates against these classes; the recipe reference in the docs is generated from them).
A stage's fields are those of `StageBase` plus those of its kind's class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

_INTERVAL = re.compile(r"^([\[(])(-?[\d.e]+|-inf), (-?[\d.e]+|inf)([\])])$")


def _f(default, help: str, range: str | None = None, path: bool = False, syntax: tuple | None = None, **kw):
    """A dataclass field with a help text and, for a number, its range in interval notation ('[0, 1)',
    '(0, inf)'): `align.validator` refuses values outside it (and NaN, inf everywhere), the reference shows it.
    `path`: the value may name a file or folder, so an empty one (the current folder to pathlib) is refused;
    `syntax`: (regex, meaning) each text must match whole (a library's rule). Mutable defaults: `default_factory`."""
    meta = {"help": help, "path": path, "syntax": syntax}
    if range is not None:
        meta["range"] = interval(range)
    if "default_factory" in kw:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def interval(text: str) -> tuple[str, float, float, bool, bool]:
    """'[0, 1)' -> (text, low, high, low included, high included)."""
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(f"not an interval: {text!r}")
    return text, float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]"


STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
"""Stage names: each is a folder name in the run folder (the stage's artifact), so no dots, slashes or
leading dashes."""
RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Recipe names: the default run folder runs/<name>; a dot may follow the first character (qwen2.5)."""
DEVICE_NAME = re.compile(r"(con|prn|aux|nul|com\d|lpt\d)(\..*)?", re.IGNORECASE)  # Windows' devices: no folder there
MAX_NAME = 100  # characters of a stage or recipe name: folder names (and .<name>.partial) stay under 255 bytes
RESERVED_NAMES = frozenset({"base", "start", "evals", "report_plots", "tensorboard", "wandb", "manifest", "report",
                            "logs", "lock", "checkpoints", "runs"})
"""Names a stage may not take: what else the run folder holds (`evals/`, `report_plots/`, `logs/`, `tensorboard/`,
`wandb/` beside `manifest.json`, `report.*`, `.lock`), `base`, which `init` and `against` already mean, and
`start`, which `against` means."""

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")
"""transformers' scheduler names that need no extra arguments (`get_scheduler` fails on cosine_with_min_lr
and warmup_stable_decay without them; reduce_lr_on_plateau and greedy need a metric at each step)."""
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4",
                        "flex_attention", "paged|eager")
"""transformers' attention kernels (tests/test_recipe.py checks them against the installed version); a hub
kernel 'org/repo' is accepted too."""
SEED = "[0, 4294967295]"  # numpy's seed range, which transformers' set_seed uses


@dataclass
class LoraSpec:
    r: int = _f(16, "LoRA rank.", "[1, inf)")
    alpha: int = _f(32, "LoRA scaling numerator (scale = alpha / r).", "(0, inf)")
    dropout: float = _f(0.0, "Dropout on the LoRA branch (measured on CPU: 0.05 costs ~10% of a step).", "[0, 1)")
    target_modules: str | list[str] = _f(
        "all-linear", "Modules to adapt: 'all-linear' (every linear layer but the output head) or a list of names "
                      "(each must match a module of the model, checked when it loads, before training)."
    )


@dataclass
class ModelSpec:
    name: str = _f(
        "smollm2-135m-instruct",
        "Hub id, local folder, .gguf file, or the embedded 'smollm2-135m-instruct'.", path=True,
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
        None, "Jinja chat template file (must exist), or 'chatml', for a tokenizer that has none.", path=True
    )
    trust_remote_code: bool = _f(False, "Run model code from the hub repository (off unless you trust it).")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit).")
    attn_implementation: str | None = _f(None, "Attention kernel: " + ", ".join(ATTN_IMPLEMENTATIONS) +
                                         ", or a hub kernel 'org/repo'; unset = transformers' default.")


@dataclass
class DataSpec:
    train: str = _f(None, "Training data: a JSONL file (or .txt for data.text), a local dataset folder, or a hub "
                          "dataset id.", path=True)
    eval: str | None = _f(None, "Held-out data, same forms as train.", path=True)
    eval_fraction: float = _f(0.0, "Hold out this fraction of train when no eval set is given.", "[0, 1)")
    split: str = _f("train", "Split to read from a hub dataset or dataset folder.")
    max_examples: int | None = _f(None, "Use at most this many training examples; unset = all.", "[1, inf)")
    max_eval_examples: int | None = _f(None, "Use at most this many held-out examples (the first ones), for the "
                                             "stages' held-out numbers and the hooks' default data; unset = all.",
                                       "[1, inf)")


@dataclass
class DataSection:
    sft: DataSpec | None = _f(None, "Chat data for sft stages.")
    rankings: DataSpec | None = _f(None, "Ranked or pairwise preferences for rm and dpo stages.")
    prompts: DataSpec | None = _f(None, "Prompts for on-policy stages (ppo, rloo, grpo).")
    text: DataSpec | None = _f(None, "Raw text for pretrain stages: {\"text\": ...} records, or .txt files (each "
                                     "blank-line-separated paragraph one document).")


@dataclass
class TrackingSpec:
    SHORTHAND: ClassVar[str] = "backend"  # `tracking: none` means `tracking: {backend: none}`
    backend: Literal["wandb", "tensorboard", "none"] = _f(
        "wandb", "Where metrics go; wandb runs offline when WANDB_API_KEY is unset."
    )
    project: str = _f("align", "W&B project.", syntax=(r"[^/\\#?%:]{1,128}", "is not a W&B project name: 1 to 128 "
                                                                         "characters, none of / \\ # ? % :"))
    entity: str | None = _f(None, "W&B entity (team or user); unset = your default.")
    tags: list[str] = _f(None, "W&B tags.", default_factory=list,
                         syntax=(r"(?s).{1,64}", "is not a W&B tag: 1 to 64 characters"))


@dataclass
class GenerationSpec:
    max_new_tokens: int = _f(96, "Tokens to generate at most per completion.", "[1, inf)")
    temperature: float = _f(0.7, "Sampling temperature; 0 = greedy.", "[0, inf)")
    top_p: float = _f(1.0, "Nucleus sampling: keep the smallest token set with this much probability.", "(0, 1]")
    batch_size: int = _f(16, "Prompts per generation batch.", "[1, inf)")
    max_prompt_length: int | None = _f(256, "Keep at most this many prompt tokens (the end of the prompt).",
                                       "[1, inf)")
    seed: int = _f(0, "Sampling seed: both policies compared sample with it.", SEED)


@dataclass
class MixSpec:
    data: str = _f(None, "General-domain data of the stage's own format (chat for sft, rankings/pairs for dpo).",
                   path=True)
    ratio: float = _f(0.1, "Share of the training set drawn from `data` (examples, after mixing); 0 = none.", "[0, 1)")


@dataclass
class EvalSpec:
    hook: str = _f(None, "A built-in (rm_accuracy, win_rate, llm_judge, kl, perplexity, compliance, samples) or "
                         "your own 'module:function' (see docs/concepts.md, evaluation hooks).")
    data: str | None = _f(None, "The hook's data: rankings (rm_accuracy), prompts (win_rate, llm_judge, kl, samples, "
                                "compliance: with labels, or a benchmark name: xstest, advbench, harmbench, "
                                "strongreject), text or chat (perplexity); unset = the recipe's held-out data of "
                                "that kind.", path=True)
    max_examples: int | None = _f(None, "Use at most this many records (compliance: balanced over labels).",
                                  "[1, inf)")
    against: str = _f("base", "win_rate, llm_judge: what each row's policy is compared with: 'base' (the recipe's "
                              "model), 'start' (the model the row's stage started from) or an earlier stage's name.")
    judge: str | None = _f(None, "win_rate, samples: the rm stage that scores the answers (unset: the last rm stage "
                                 "finished); llm_judge: the judging model (hub id, folder, .gguf or the embedded "
                                 "model), asked which of two answers is better, in both orders.")
    classifier: Literal["rules", "judge"] = _f("rules", "compliance: refusal detection by the documented rule set, "
                                                         "or the evaluated model asked as a judge.")
    generation: GenerationSpec = _f(None, "Sampling for generation-based hooks.", default_factory=GenerationSpec)
    args: dict = _f(None, "Keyword arguments passed to a user hook.", default_factory=dict)
    name: str | None = _f(None, "Suffix for this hook's metric names, to run one hook on two data sets: perplexity "
                                "with name 'domain' reports perplexity_domain (and perplexity_domain_increase).")


@dataclass
class StageBase:
    name: str = _f(None, "Stage name, unique in the recipe; its artifact folder and the key for overrides: letters, "
                         "digits, _ and -, starting with a letter or digit, not a reserved name (base, evals, ...).")
    kind: str = _f(None, "What the stage does: pretrain, sft, rm, dpo, ppo, rloo or grpo.")
    init: str = _f("base", "Starting model: 'base' (the recipe's model) or the name of an earlier stage.")
    data: DataSpec | None = _f(None, "This stage's data; unset = the recipe's data section for its kind.")
    learning_rate: float = _f(2e-4, "Peak learning rate.", "(0, inf)")
    epochs: float = _f(1.0, "Passes over the training data (ignored when max_steps > 0).", "(0, inf)")
    max_steps: int = _f(-1, "Optimizer steps (not 0); -1 = run for `epochs`.", "[-1, inf)")
    batch_size: int = _f(4, "Examples per device per micro-batch.", "[1, inf)")
    grad_accum: int = _f(1, "Micro-batches per optimizer step.", "[1, inf)")
    max_length: int = _f(512, "Truncate tokenized examples to this many tokens.", "[1, inf)")
    warmup_ratio: float = _f(0.03, "Fraction of steps for linear warm-up.", "[0, 1)")
    lr_scheduler: Literal[LR_SCHEDULERS] = _f("cosine", "transformers scheduler name.")  # type: ignore[valid-type]
    weight_decay: float = _f(0.0, "AdamW weight decay.", "[0, inf)")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm; 0 = no clipping.", "[0, inf)")
    logging_steps: int = _f(5, "Log every N optimizer steps.", "[1, inf)")
    eval_batch_size: int = _f(8, "Examples per batch for evaluation.", "[1, inf)")
    eval_before: bool = _f(True, "Also evaluate the starting model on the held-out set (the 'before' numbers).")
    save_steps: int = _f(50, "Checkpoint every N optimizer steps, to resume after a crash; 0 = never.", "[0, inf)")
    seed: int | None = _f(None, "Seed for this stage; unset = the recipe's seed.", SEED)
    gate: list[str] = _f(None, "Conditions on this stage's metrics or eval hooks' metrics, e.g. 'over_refusal <= "
                               "0.2'; a failed one stops the pipeline after this stage.", default_factory=list)


@dataclass
class PretrainStage(StageBase):
    packing: bool = _f(True, "Concatenate the documents (each ended by EOS) and cut the stream into max_length "
                             "rows, as in pretraining (no padding; a row may start mid-document); false = one "
                             "document per row, cut at max_length.")


@dataclass
class SFTStage(StageBase):
    packing: bool = _f(False, "Pack several examples into each max_length row (no padding).")
    assistant_only_loss: bool = _f(True, "Train only on assistant tokens; false = every token.")
    mix: MixSpec | None = _f(None, "Mix general-domain chat data into training (forgetting guard).")


@dataclass
class RMStage(StageBase):
    learning_rate: float = _f(1e-4, "Peak learning rate (LoRA + the new score head; half of SFT's, as the head "
                                    "starts random).", "(0, inf)")
    batch_size: int = _f(4, "PROMPTS per micro-batch: each brings all its K responses (K forward rows) and all "
                            "its ranked pairs.", "[1, inf)")
    eval_batch_size: int = _f(16, "Responses per forward pass when scoring the held-out set.", "[1, inf)")
    loss: Literal["bradley_terry", "plackett_luce"] = _f(
        "bradley_terry", "bradley_terry: -log sigmoid(r_better - r_worse - margin), mean over a prompt's pairs, "
        "then over prompts; plackett_luce: listwise likelihood of the whole ranking (ties: Breslow).")
    margin: bool = _f(True, "Subtract a record's 'margin' inside the Bradley-Terry loss (records without one: 0).")
    part: str | None = _f(None, "Train on one of n disjoint parts of the training rankings, 'i/n' (by a hash of "
                                "the prompt): two rm stages with parts 1/2 and 2/2 give a reward model and an "
                                "independent judge for it (see docs/researchers.md, judges).")
    center_coef: float = _f(0.0, "Reward centering (Eisenstein et al., TRL's center_rewards_coefficient): adds "
                                 "coef * mean over ranked pairs of (r_better + r_worse)^2, pinning scores near 0 "
                                 "without shrinking margins (e.g. 0.01); 0 = off.", "[0, inf)")


DPO_LOSSES = ("sigmoid", "cdpo", "robust", "ipo", "hinge", "sigmoid_norm", "nca_pair", "sppo_hard", "apo_zero",
              "apo_down")


@dataclass
class DPOStage(StageBase):
    learning_rate: float = _f(5e-5, "Peak learning rate (LoRA; use ~5e-7 for full fine-tuning).", "(0, inf)")
    batch_size: int = _f(4, "Preference PAIRS per micro-batch (each is two forward rows).", "[1, inf)")
    beta: float = _f(0.1, "Strength of the pull to the reference (IPO: its tau).", "(0, inf)")
    loss: Literal[DPO_LOSSES] = _f(  # type: ignore[valid-type]
        "sigmoid", "sigmoid: DPO; cdpo: conservative DPO (labels flipped with probability label_smoothing); "
        "robust: rDPO (unbiased under label noise label_smoothing); ipo: IPO (length-normalized); hinge: SLiC; "
        "sigmoid_norm: DPO on per-token log-ratios; nca_pair, sppo_hard, apo_zero, apo_down: as in TRL.")
    label_smoothing: float = _f(0.0, "cdpo/robust: the probability that a preference label is wrong.", "[0, 0.5)")
    sft_weight: float = _f(0.0, "Add this weight times the chosen answers' mean token NLL to the loss (RPO, Pang "
                                "et al. 2024; TRL's loss 'sft'), so the chosen answers stay likely while the margin "
                                "grows; 0 = off, 1 = RPO's default.", "[0, inf)")
    pairs: Literal["best_vs_rest", "adjacent", "all"] = _f(
        "best_vs_rest", "How a K-wise ranking becomes pairs: the best against each other response, each rank "
                        "against the next, or every ordered pair (pairwise data: one pair either way).")
    precompute_ref: bool = _f(False, "Compute the reference log-probs once before training (no reference pass "
                                     "per step; full fine-tuning then keeps no reference copy in memory).")
    eval_prompts: int = _f(64, "Held-out records whose pairs give the implicit-reward accuracy and margin; "
                               "0 = none (win rate, KL and samples are evaluation hooks: `evals`).", "[0, inf)")
    mix: MixSpec | None = _f(None, "Mix general-domain preference pairs into training (forgetting guard).")


@dataclass
class OnPolicyStage(StageBase):
    """What ppo, rloo and grpo share: they sample their own answers to `data.prompts` and learn from an rm
    stage's scores. A step is one rollout batch: sample, score, then update on it."""

    learning_rate: float = _f(1e-4, "Peak learning rate of the policy's LoRA (ppo: and of the critic).", "(0, inf)")
    lr_scheduler: Literal[LR_SCHEDULERS] = _f(  # type: ignore[valid-type]
        "linear", "Scheduler over all updates (linear: annealed to 0, as in Huang et al.).")
    warmup_ratio: float = _f(0.0, "Fraction of updates for linear warm-up.", "[0, 1)")
    max_steps: int = _f(-1, "Steps (rollout batches, each sampled, scored, then trained on); -1 = `epochs` passes "
                            "over the train prompts.", "[-1, inf)")
    batch_size: int = _f(4, "Completions per micro-batch in the updates (and in the no-grad forward passes).",
                            "[1, inf)")
    grad_accum: int = _f(2, "Micro-batches per optimizer step: a minibatch is batch_size * grad_accum completions.",
                            "[1, inf)")
    rollout_batch_size: int = _f(16, "Completions sampled per step, over all processes; a multiple of batch_size * "
                                     "grad_accum * processes.", "[1, inf)")
    generation: GenerationSpec = _f(None, "Sampling for the rollouts.", default_factory=GenerationSpec)
    reward_model: str | None = _f(None, "rm stage whose model gives the reward; unset = the last rm stage before "
                                        "this one. An evaluation judged by it is marked 'own reward (optimistic)'.")


@dataclass
class PPOStage(OnPolicyStage):
    ppo_epochs: int = _f(4, "Passes of PPO updates over each rollout batch.", "[1, inf)")
    generation: GenerationSpec = _f(None, "Sampling for the rollouts (top_p must be 1: log-probs are of the "
                                          "tempered full distribution).",
                                    default_factory=GenerationSpec)
    kl_coef: float = _f(0.05, "Per-token KL penalty coefficient (initial value when adaptive).", "[0, inf)")
    target_kl: float | None = _f(None, "Adaptive KL (Ziegler et al.): steer the per-sequence KL to this; unset = "
                                       "fixed kl_coef.", "(0, inf)")
    kl_horizon: int = _f(10000, "Adaptive KL horizon in rollouts (how fast the coefficient moves).", "[1, inf)")
    max_kl: float = _f(30.0, "Stop with an error when the mean per-sequence KL to the reference exceeds this.",
                        "(0, inf)")
    gamma: float = _f(1.0, "GAE discount.", "[0, 1]")
    lam: float = _f(0.95, "GAE lambda.", "[0, 1]")
    cliprange: float = _f(0.2, "PPO ratio clip.", "(0, inf)")
    cliprange_value: float = _f(0.2, "Value clip around the rollout's values.", "(0, inf)")
    vf_coef: float = _f(0.1, "Value loss weight.", "[0, inf)")
    whiten_rewards: bool = _f(False, "Whiten the per-token rewards of each rollout batch (scale only).")
    normalize_reward: bool = _f(True, "Scale and shift RM scores so the first rollout batch (the starting "
                                      "policy) has mean 0, std 1.")
    missing_eos_penalty: float = _f(1.0, "Subtract this from the score of a completion cut before EOS.",
                                     "[0, inf)")


@dataclass
class GroupStage(OnPolicyStage):
    """rloo and grpo, over TRL's trainers: `num_generations` answers per prompt, each one's advantage taken
    relative to the others of its group (no critic)."""

    num_generations: int = _f(4, "Answers sampled per prompt (the group size k, >= 2): a step samples "
                                 "rollout_batch_size / k prompts, k times each.", "[2, inf)")
    num_iterations: int = _f(1, "Passes of updates over each rollout batch (TRL's mu; ppo's ppo_epochs).",
                             "[1, inf)")
    cliprange: float = _f(0.2, "Ratio clip (TRL's epsilon); it acts only when num_iterations > 1.", "(0, inf)")


@dataclass
class RLOOStage(GroupStage):
    beta: float = _f(0.05, "KL penalty: each answer's reward is its score - beta * the sum over its tokens of "
                           "log pi - log pi_ref (the reference: the adapters disabled); 0 = no reference pass.",
                  "[0, inf)")
    normalize_advantages: bool = _f(False, "Whiten the leave-one-out advantages over each rollout batch.")


GRPO_LOSSES = ("grpo", "dapo", "dr_grpo", "bnpo")


@dataclass
class GRPOStage(GroupStage):
    beta: float = _f(0.04, "Weight of the per-token KL to the reference (k3 estimator) in the loss, as in "
                           "DeepSeekMath (TRL's default is 0); 0 = no reference pass.", "[0, inf)")
    loss: Literal[GRPO_LOSSES] = _f(  # type: ignore[valid-type]
        "dapo", "How token losses add up: grpo: mean per answer, then over answers (favours short good and long "
        "bad answers); dapo (TRL's default): mean over every token of the minibatch; dr_grpo: sum divided by "
        "batch * max_new_tokens; bnpo: mean over the tokens of each micro-batch.")
    scale_rewards: Literal["group", "batch", "none"] = _f(
        "group", "Divide each advantage (reward - its group's mean) by the std of its group's rewards, of the "
                 "whole batch's, or not at all (Dr. GRPO).")


STAGE_KINDS: dict[str, type[StageBase]] = {"pretrain": PretrainStage, "sft": SFTStage, "rm": RMStage,
                                           "dpo": DPOStage, "ppo": PPOStage, "rloo": RLOOStage, "grpo": GRPOStage}
"""Stage kind -> its config class (and `align.stages.<kind>` runs it)."""


_TRAIN = ("train_seconds", "train_loss", "train_tokens", "train_tokens_per_second", "train_loss_first",
          "train_loss_last", "stage_seconds")
_LOSS = ("eval_loss_before", "eval_loss_after")
_RANKING = ("pairwise_accuracy", "top1_agreement", "ece", "reward_mean", "reward_std")  # metrics.ranking_metrics
STAGE_METRICS: dict[str, tuple[str, ...]] = {
    "pretrain": _TRAIN + _LOSS + ("train_documents", "eval_documents", "truncated", "train_rows", "eval_rows",
                                  "perplexity_before", "perplexity_after"),
    "sft": _TRAIN + _LOSS + ("train_examples", "train_rows", "eval_examples", "mixed_in", "truncated",
                             "dropped_too_long"),
    "rm": _TRAIN + ("train_prompts", "train_responses", "train_pairs", "truncated", "eval_prompts", "eval_pairs",
                    "eval_truncated") + tuple(f"{m}_{w}" for m in _RANKING for w in ("before", "after")),
    "dpo": _TRAIN + ("train_prompts", "train_pairs", "mixed_in", "eval_prompts", "eval_pairs", "eval_loss",
                     "reward_accuracy_after", "reward_margin_after"),
    "ppo": _TRAIN + ("train_prompts", "ppo_steps", "train_reward_first", "train_reward_last", "train_kl_last",
                     "train_kl_max", "kl_coef_final", "gen_seconds", "rollout_tokens", "rollout_prompt_tokens",
                     "rollout_tokens_per_second"),
    "rloo": _TRAIN + _LOSS + ("train_prompts", "rloo_steps", "optimizer_steps", "dropped_long_prompts",
                              "train_reward_first", "train_reward_last", "train_kl_per_token_last",
                              "train_kl_per_token_max"),
}
STAGE_METRICS["grpo"] = tuple(m.replace("rloo_", "grpo_") for m in STAGE_METRICS["rloo"])
"""The metrics each stage kind writes to its metrics.json (some only when they apply: held-out data): what a
`gate:` may name besides the metrics of the recipe's evaluation hooks (each hook declares its own in
`align.evaluation.hooks.HOOKS`). tests/stages check a run's metrics against it."""


@dataclass
class LaunchSpec:
    num_processes: int = _f(1, "Data-parallel processes `align run` starts (torchrun, one per GPU; docs/scaling.md).",
                            "[1, inf)")
    accelerate_config: str | None = _f(None, "An accelerate config (presets: recipes/accelerate/) to launch "
                                             "through `accelerate launch` instead: FSDP, DeepSpeed, several machines.",
                                       path=True)


@dataclass
class Recipe:
    name: str = _f(None, "Recipe name; the default run folder is runs/<name> (letters, digits, _, - and .).")
    model: ModelSpec = _f(None, "The model every stage starts from.", default_factory=ModelSpec)
    stages: list[StageBase] = _f(None, "Stages, run in order.", default_factory=list)
    data: DataSection = _f(None, "Datasets per kind of stage.", default_factory=DataSection)
    tracking: TrackingSpec = _f(None, "Experiment tracking.", default_factory=TrackingSpec)
    evals: list[EvalSpec] = _f(None, "Evaluation hooks, run on the base model (the baseline row) and after "
                                     "every stage, on the same held-out data.", default_factory=list)
    output_dir: str | None = _f(None, "Run folder (~ is your home); unset = runs/<name>.", path=True)
    seed: int = _f(42, "Random seed for every stage that sets none.", SEED)
    launch: LaunchSpec = _f(None, "Processes to run the stages in (the `align run` flags win).",
                            default_factory=LaunchSpec)
    source: str = field(default="<recipe>", metadata={"internal": True})

    def stage(self, name: str) -> StageBase:
        return next(s for s in self.stages if s.name == name)

    @property
    def run_dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"
