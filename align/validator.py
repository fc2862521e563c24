"""Building typed config objects from plain data (a recipe's YAML), collecting every error at once.

An error names the line (from `yamlsafe.line_map`) or "command-line override", the dotted key path and
what is wrong: a wrong type, an unknown key (with the nearest valid one), a value outside the field's
range (`schema.interval`, declared on the field), a text outside its declared syntax (`schema._f`'s `syntax`)
or a number that is not finite.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any

from align.schema import STAGE_KINDS, Recipe, StageBase

MAX_INT = 2 ** 63 - 1  # torch, numpy and the tokenizers take 64-bit integers; a larger one fails deep inside them

RECIPE_KEYS = {f.name for f in dataclasses.fields(Recipe)}
# The names Hugging Face's TrainingArguments, TRL, OpenRLHF and LLaMA-Factory give to what align calls otherwise.
# A key copied from one of their configs is told its align name: the nearest spelling misleads
# (per_device_train_batch_size is nearest to eval_batch_size). A target is a key of the same section, or a
# path from the recipe's top (model.lora.r) where align sets it elsewhere.
OTHER_NAMES = {
    **dict.fromkeys(["per_device_train_batch_size", "micro_train_batch_size", "micro_batch_size",
                     "train_micro_batch_size_per_gpu"], "batch_size"),
    **dict.fromkeys(["per_device_eval_batch_size", "micro_eval_batch_size"], "eval_batch_size"),
    **dict.fromkeys(["num_train_epochs", "max_epochs", "num_epochs"], "epochs"),
    **dict.fromkeys(["gradient_accumulation_steps", "accumulate_grad_batches"], "grad_accum"),
    **dict.fromkeys(["lr", "actor_learning_rate"], "learning_rate"),
    **dict.fromkeys(["max_seq_length", "max_seq_len", "cutoff_len", "max_len", "seq_length"], "max_length"),
    **dict.fromkeys(["lr_scheduler_type", "scheduler"], "lr_scheduler"),
    **dict.fromkeys(["grad_clip", "gradient_clipping", "clip_grad_norm"], "max_grad_norm"),
    **dict.fromkeys(["loss_type"], "loss"),
    **dict.fromkeys(["num_ppo_epochs"], "ppo_epochs"),
    **dict.fromkeys(["init_kl_coef", "init_kl_coeff"], "kl_coef"),
    **dict.fromkeys(["n_samples_per_prompt", "num_samples_per_prompt"], "num_generations"),
    **dict.fromkeys(["max_new_tokens", "response_length", "generate_max_len"], "generation.max_new_tokens"),
    **dict.fromkeys(["temperature"], "generation.temperature"),
    **dict.fromkeys(["model_name_or_path", "pretrained_model_name_or_path", "pretrain"], "model.name"),
    **dict.fromkeys(["torch_dtype", "bf16", "fp16"], "model.dtype"),
    **dict.fromkeys(["finetuning_type", "use_peft"], "model.adapter"),
    **dict.fromkeys(["lora_r", "lora_rank"], "model.lora.r"),
    **dict.fromkeys(["lora_alpha"], "model.lora.alpha"),
    **dict.fromkeys(["lora_dropout"], "model.lora.dropout"),
    **dict.fromkeys(["lora_target", "lora_target_modules", "target_modules"], "model.lora.target_modules"),
    **dict.fromkeys(["report_to"], "tracking.backend"),
    **dict.fromkeys(["wandb_project"], "tracking.project"),
    **dict.fromkeys(["evaluation", "evaluations", "eval"], "evals"),
    **dict.fromkeys(["dataset", "datasets", "dataset_name", "train_file"], "data"),
}


def out_of_range(value: float, rng: tuple[str, float, float, bool, bool]) -> str | None:
    """Why `value` is outside `rng` ('must be > 0'), or None when it is inside."""
    text, lo, hi, lo_in, hi_in = rng
    if isinstance(value, float) and not math.isfinite(value):  # an int is finite however large (never float()ed)
        return "must be a finite number"
    if (value < lo or (value == lo and not lo_in)) or (value > hi or (value == hi and not hi_in)):
        if math.isinf(hi):
            return f"must be {'>=' if lo_in else '>'} {lo:g}"
        return f"must be in {text}"
    return None


def _nearest(key: str, fields: dict[str, Any], path: str) -> str:
    """What to say of an unknown key: its align name (`OTHER_NAMES`) where this section or the recipe has it,
    else the nearest spelling, else every valid key."""
    target = OTHER_NAMES.get(key.lower(), "")
    if path and target.startswith(path + "."):  # in the section the target is in: its key there
        target = target[len(path) + 1:]
    head = target.partition(".")[0]
    if head in fields:
        return f"align calls it '{target}'"
    if head in RECIPE_KEYS:
        return f"align calls it '{target}' (set in the recipe's {head} section)"
    near = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    return f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(fields)}"


def flag_problems(values: dict[str, Any], cls: type) -> list[str]:
    """'--max-new-tokens 0: must be >= 1' for each command-line number outside the range its namesake field of
    `cls` declares, or past 64 bits: a flag means what the recipe key means, so it is checked alike (a seed of
    25 digits, or -1, failed deep inside torch or numpy). Fields without a range: at least 1 (counts)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for name, value in values.items():
        if value is None:
            continue
        rng = fields[name].metadata.get("range") if name in fields else ("[1, inf)", 1, math.inf, True, False)
        big = isinstance(value, int) and abs(value) > MAX_INT
        if why := (f"larger than any count, size or seed align can use (at most {MAX_INT})" if big else
                   out_of_range(value, rng)):
            out.append(f"--{name.replace('_', '-')} {value}: {why}")
    return out


def item_key(path: str, i: int, item: Any) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    return f"{path}.{name}" if isinstance(name, str) and name else f"{path}[{i}]"


class Validator:
    """Builds dataclasses from plain data, collecting errors instead of stopping at the first."""

    def __init__(self, source: str, lines: dict[str, int], overridden: set[str]):
        self.source, self.lines, self.overridden, self.errors = source, lines, overridden, []

    def error(self, path: str, message: str) -> None:
        if path in self.overridden:
            where = "command-line override"
        else:
            probe = path
            while probe and probe not in self.lines:
                probe = probe.rpartition(".")[0]
            where = f"line {self.lines[probe]}" if probe else "top level"
        line = f"{where}, {path or '<recipe>'}: {message}"
        if line not in self.errors:  # one data section checked for each stage that reads it is one problem
            self.errors.append(line)

    def build(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            self.error(path, f"expected a mapping of {cls.__name__} keys, got {type(raw).__name__}")
            return None
        fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in raw.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in fields:
                self.error(sub, "unknown key; " + _nearest(str(key), fields, path))
                continue
            kwargs[key] = self.value(hints[key], value, sub)
            if fields[key].metadata.get("path") and isinstance(value, str) and not value.strip():
                self.error(sub, "an empty path, which would mean the current folder; name the file or folder, or "
                                "remove the key")
                kwargs[key] = _BAD
            syntax = fields[key].metadata.get("syntax")  # what a library accepts (W&B project names, tags)
            texts = value if isinstance(value, list) else [value]
            if syntax and (bad := next((t for t in texts if isinstance(t, str) and not re.fullmatch(syntax[0], t)),
                                       None)) is not None:
                self.error(sub, f"{bad[:80]!r} {syntax[1]}")
                kwargs[key] = _BAD
            rng = fields[key].metadata.get("range")
            if rng and isinstance(kwargs[key], (int, float)) and not isinstance(kwargs[key], bool):
                why = out_of_range(kwargs[key], rng)
                if why:
                    self.error(sub, f"{why}, got {kwargs[key]}")
                    kwargs[key] = _BAD
        for name, f in fields.items():
            if name not in raw and f.default is None and f.default_factory is dataclasses.MISSING and \
                    not _optional(hints[name]):
                self.error(f"{path}.{name}" if path else name, "required key is missing")
        try:
            return cls(**{k: v for k, v in kwargs.items() if v is not _BAD})
        except TypeError:
            return None

    def value(self, tp: Any, value: Any, path: str) -> Any:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            options = [a for a in args if a is not type(None)]
            for opt in options:  # first option that accepts the value silently wins
                trial = Validator(self.source, self.lines, self.overridden)
                out = trial.value(opt, value, path)
                if not trial.errors:
                    return out
            return self.value(options[-1], value, path)
        if origin is typing.Literal:
            if value not in args:
                near = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
                self.error(path, f"'{value}' is not one of {', '.join(map(str, args))}" +
                           (f"; did you mean '{near[0]}'?" if near else ""))
                return _BAD
            return value
        if tp is dict or origin is dict:
            if not isinstance(value, dict):
                self.error(path, f"expected a mapping, got {describe(value)}")
                return _BAD
            return value
        if origin is list:
            if not isinstance(value, list):
                self.error(path, f"expected a list, got {describe(value)}")
                return _BAD
            if args and args[0] is StageBase:
                return [self.stage(item, item_key(path, i, item)) for i, item in enumerate(value)]
            items = [self.value(args[0], item, f"{path}[{i}]") for i, item in enumerate(value)]
            return _BAD if any(x is _BAD for x in items) else items  # reported; later checks see no half list
        if dataclasses.is_dataclass(tp):
            if isinstance(value, str) and getattr(tp, "SHORTHAND", None):
                value = {tp.SHORTHAND: value}
            return self.build(tp, value, path) if value is not None else self.build(tp, {}, path)
        return self.scalar(tp, value, path)

    def scalar(self, tp: type, value: Any, path: str) -> Any:
        if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an int past 1.8e308: no float holds it
                self.error(path, f"must be a finite number, got an integer of {len(str(value))} digits")
                return _BAD
        if tp is float and isinstance(value, float) and not math.isfinite(value):
            self.error(path, f"must be a finite number, got {value}")
            return _BAD
        if tp is int and isinstance(value, int) and abs(value) > MAX_INT:
            shown = value if len(str(value)) < 30 else f"an integer of {len(str(value))} digits"
            self.error(path, f"{shown} is larger than any count, size or seed align can use (at most {MAX_INT})")
            return _BAD
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        self.error(path, f"expected {tp.__name__}, got {describe(value)}")
        return _BAD

    def stage(self, raw: Any, path: str) -> StageBase | None:
        if not isinstance(raw, dict):
            self.error(path, f"a stage is a mapping with at least name and kind, got {describe(raw)}")
            return None
        kind = raw.get("kind", raw.get("name"))
        if not isinstance(kind, str) or kind not in STAGE_KINDS:  # a list or mapping: unhashable, no kind
            near = difflib.get_close_matches(str(kind), STAGE_KINDS, n=1)
            self.error(f"{path}.kind", f"unknown stage kind '{kind}'; valid kinds: {', '.join(STAGE_KINDS)}" +
                       (f" (did you mean '{near[0]}'?)" if near else ""))
            return None
        return self.build(STAGE_KINDS[kind], {"kind": kind, **raw}, path)


_BAD = object()


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


def describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"
