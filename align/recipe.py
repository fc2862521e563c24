"""Loading a recipe: YAML -> command-line overrides -> typed `schema.Recipe`, with every error at once.

Errors name the file, the line, the dotted key path (`stages.sft.learning_rate`, stages addressed by
name, the same paths overrides use) and, for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path
from typing import Any

from align import schema
from align.benchmarks import is_benchmark, missing
from align.errors import AlignError
from align.evaluation.hooks import HOOKS, named
from align.evaluation.user_hooks import import_user_hook
from align.overrides import apply_overrides
from align.paths import looks_local, path_error
from align.schema import GroupStage, ModelSpec, OnPolicyStage, Recipe, StageBase
from align.validator import Validator
from align.yamlsafe import line_map, load_yaml

MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of YAML; a megabyte is generous and bounds parsing time


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; raise one AlignError listing every problem."""
    path = Path(path).expanduser()
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise AlignError(f"{path}: {path.stat().st_size} bytes; a recipe is at most {MAX_RECIPE_BYTES} bytes",
                             hint="is this the recipe file? data goes in its own files, named under data:")
        if not path.is_file():
            raise AlignError(f"{path}: not a regular file", hint="name the recipe's .yaml file")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AlignError(f"cannot read recipe {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise AlignError(f"{path}: not UTF-8 text (byte {e.start})") from None
    raw, root = load_yaml(text, str(path))
    if not isinstance(raw, dict):
        raise AlignError(f"{path}: a recipe is a mapping with keys name, model, data, tracking, stages",
                         hint="see recipes/quickstart.yaml for the layout")
    overridden = apply_overrides(raw, overrides or [])
    v = Validator(str(path), line_map(root), overridden)
    recipe = v.build(Recipe, raw, "")
    if recipe is not None and None not in (recipe.model, recipe.data):  # rules across fields, also when some
        _check_recipe(recipe, v)                                          # field was wrong: every error at once
    if v.errors:
        n = len(v.errors)
        raise AlignError(f"{path}: {n} problem{'s' * (n > 1)} in the recipe", v.errors)
    recipe.source = str(path)
    _expand_home(recipe)
    return recipe


def _expand_home(recipe: Recipe) -> None:
    """`~` in every path a recipe may hold means the home folder, as in a shell (never a folder named ~)."""
    def home(ref: str | None) -> str | None:
        return str(Path(ref).expanduser()) if isinstance(ref, str) and ref.startswith("~") else ref

    m = recipe.model
    m.name, m.chat_template, recipe.output_dir = home(m.name), home(m.chat_template), home(recipe.output_dir)
    specs = [getattr(recipe.data, f.name) for f in dataclasses.fields(recipe.data)] + [s.data for s in recipe.stages]
    for spec in specs:
        if spec is not None:
            spec.train, spec.eval = home(spec.train), home(spec.eval)
    for stage in recipe.stages:
        if getattr(stage, "mix", None) is not None:
            stage.mix.data = home(stage.mix.data)
    for e in recipe.evals:
        e.data = home(e.data)
        if e.hook == "llm_judge":  # its judge is a model (an rm stage's name otherwise)
            e.judge = home(e.judge)


def build_model_spec(raw: dict[str, Any]) -> ModelSpec:
    """A `ModelSpec` from a mapping (an artifact's config.yaml), validated like a recipe's `model`."""
    v = Validator("<model>", {}, set())
    spec = v.build(ModelSpec, raw, "model")
    if v.errors:
        raise AlignError("invalid model settings", v.errors)
    return spec


def _check_recipe(recipe: Recipe, v: Validator) -> None:
    """Rules that span fields: names, init order, numbers in range, data present and readable."""
    if not recipe.stages:
        v.error("stages", "a recipe needs at least one stage")
    if recipe.output_dir is None:  # the name is then a folder under runs/
        _check_name(recipe.name, "name", "recipe", v, schema.RECIPE_NAME)
    elif why := path_error(recipe.output_dir):
        v.error("output_dir", why)
    accelerate = recipe.launch.accelerate_config if recipe.launch else None
    if accelerate and not Path(accelerate).expanduser().is_file():
        v.error("launch.accelerate_config", f"accelerate config '{accelerate}' is not a file (presets are in "
                                            "recipes/accelerate/)")
    _check_model(recipe.model, v)
    seen: list[str] = []
    for i, stage in enumerate(recipe.stages):
        if stage is None:
            continue
        p = f"stages.{stage.name}" if stage.name else f"stages[{i}]"
        twin = next((n for n in seen if isinstance(stage.name, str) and n.casefold() == stage.name.casefold()), None)
        if twin:  # on macOS and Windows file systems, 'sft' and 'SFT' are one folder
            v.error(p, f"two stages are named '{stage.name}'" + (f" and '{twin}', one folder where case is not told "
                       "apart (macOS, Windows)" if twin != stage.name else "") + "; names must be unique")
        if stage.init == stage.name:
            v.error(f"{p}.init", "a stage cannot start from itself; use 'base' or an earlier stage")
        elif stage.init != "base" and stage.init not in seen:
            later = any(s and s.name == stage.init for s in recipe.stages)
            v.error(f"{p}.init", f"'{stage.init}' is " + ("a later stage; a stage can only start from an earlier one"
                    if later else f"not a stage; use 'base' or one of: {', '.join(seen) or '(no earlier stage)'}"))
        _check_name(stage.name, f"{p}.name", "stage", v)
        if stage.max_steps == 0:
            v.error(f"{p}.max_steps", "0 steps would train nothing; use -1 (run for `epochs`) or a number >= 1")
        rm = getattr(stage, "reward_model", None)
        earlier = [s.name for s in recipe.stages if s and s.name in seen and s.kind == "rm"]
        if rm is not None and rm not in earlier:
            v.error(f"{p}.reward_model", f"'{rm}' is not an earlier rm stage; use one of: "
                    f"{', '.join(earlier) or '(none: add an rm stage before this one)'}")
        if isinstance(stage, OnPolicyStage):
            _check_on_policy(stage, p, rm is None and not earlier, v)
        _check_ignored_settings(stage, p, v)
        data = stage.data or getattr(recipe.data, data_kind(stage.kind))
        if data is None:
            v.error(f"{p}.data", f"no data: set data.{data_kind(stage.kind)} or this stage's data" +
                    _DATA_HINTS.get(data_kind(stage.kind), ""))
        else:
            _check_data(data, f"{p}.data" if stage.data else f"data.{data_kind(stage.kind)}", v)
        mix = getattr(stage, "mix", None)
        if mix is not None and mix.data and looks_local(mix.data):
            _check_local(mix.data, f"{p}.mix.data", v)
        if getattr(stage, "part", None) is not None:
            try:
                parse_part(stage.part)
            except ValueError as e:
                v.error(f"{p}.part", str(e))
        _check_gates(recipe, stage, p, v)
        seen.append(stage.name)
    _check_evals(recipe, v)


def _check_name(name: str, path: str, what: str, v: Validator, pattern: re.Pattern = schema.STAGE_NAME) -> None:
    """A stage's name is its artifact folder (and a recipe's its run folder): a plain folder name, not one
    of the run folder's own entries, so no recipe can write or delete outside its run folder."""
    if not isinstance(name, str):
        return  # missing: already reported
    if not pattern.fullmatch(name):
        chars = "letters, digits, _, - and ." if "." in pattern.pattern else "letters, digits, _ and -"
        v.error(path, f"{what} name {name!r} may hold only {chars}, starting with a letter or digit (it names "
                      "a folder)")
    elif len(name) > schema.MAX_NAME:  # the folder's name, and its work folders' (.<name>.partial), must fit
        v.error(path, f"{what} name '{name[:20]}...' is {len(name)} characters; at most {schema.MAX_NAME} (it names "
                      "a folder)")
    elif schema.DEVICE_NAME.fullmatch(name) or name.endswith("."):
        v.error(path, f"{what} name '{name}' names no folder on Windows (a device name, or a trailing dot); "
                      "choose another")
    elif name.lower() in schema.RESERVED_NAMES:
        v.error(path, f"{what} name '{name}' is reserved (the run folder or `init` uses it); reserved: "
                      f"{', '.join(sorted(schema.RESERVED_NAMES))}")


def _check_model(model: ModelSpec, v: Validator) -> None:
    """What can be checked about the model without loading it: a local model folder or file, its template file,
    attention kernel and LoRA targets."""
    _check_model_path(model.name, v)
    template = model.chat_template
    if template and template != "chatml" and not Path(template).expanduser().is_file():
        v.error("model.chat_template", f"'{template}' is neither 'chatml' nor an existing template file")
    attn, known = model.attn_implementation, schema.ATTN_IMPLEMENTATIONS
    if attn is not None and attn not in known and not re.fullmatch(r"[\w.-]+/[\w.-]+(:\w+)?", attn):
        near = difflib.get_close_matches(attn, known, n=1)
        v.error("model.attn_implementation", f"'{attn}' is not one of {', '.join(known)} nor a hub kernel "
                "'org/repo'" + (f"; did you mean '{near[0]}'?" if near else ""))
    modules = model.lora.target_modules if model.lora else "all-linear"
    if isinstance(modules, list) and (not modules or not all(m.strip() for m in modules)):
        v.error("model.lora.target_modules", "a list of module names needs at least one non-empty name")
    elif isinstance(modules, str) and modules != "all-linear":  # peft reads a string as one regular expression
        try:
            re.compile(modules)
        except re.error as e:
            v.error("model.lora.target_modules", f"'{modules}' is neither 'all-linear' nor a regular expression "
                                                 f"({e}); list module names instead, e.g. [q_proj, v_proj]")


def _check_model_path(name: str | None, v: Validator) -> None:
    """A model named by a local path (./, /, ~ or .gguf) is what `models.resolve_model` loads: a .gguf file or a
    folder with config.json and weights; a mistake here would otherwise surface only when the run loads it."""
    if not isinstance(name, str) or not (name.startswith((".", "/", "~")) or name.endswith(".gguf")):
        return  # a hub id or the embedded model
    path = Path(name).expanduser()
    if why := path_error(name):
        v.error("model.name", why)
    elif name.endswith(".gguf"):
        if not path.is_file():
            v.error("model.name", f"model file '{name}' does not exist")
    elif not (path / "config.json").is_file():
        v.error("model.name", f"'{name}' is not a model folder (no config.json) nor a .gguf file")
    elif not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        v.error("model.name", f"model folder {name} has no weights (*.safetensors)")


def _check_on_policy(stage: OnPolicyStage, p: str, no_reward: bool, v: Validator) -> None:
    """ppo, rloo and grpo learn from an earlier rm stage's scores, and split each rollout batch into whole
    minibatches (rloo and grpo: into whole groups of num_generations answers to one prompt)."""
    if no_reward:
        v.error(p, f"a {stage.kind} stage learns from a reward model's scores, and no rm stage comes before it; "
                   "add one (see recipes/quickstart-ppo.yaml)")
    minibatch = stage.batch_size * stage.grad_accum
    if minibatch > 0 and stage.rollout_batch_size % minibatch:
        v.error(f"{p}.rollout_batch_size", f"{stage.rollout_batch_size} is not a multiple of batch_size * "
                                           f"grad_accum = {minibatch}")
    if isinstance(stage, GroupStage):
        if stage.num_generations < 2:
            v.error(f"{p}.num_generations", f"must be >= 2 (each answer is compared with the others of its "
                                            f"group), got {stage.num_generations}")
        elif stage.rollout_batch_size % stage.num_generations:
            v.error(f"{p}.rollout_batch_size", f"{stage.rollout_batch_size} is not a multiple of num_generations = "
                                               f"{stage.num_generations} (a step samples whole groups)")


# ---- settings a stage would ignore, or that would make it sample another distribution (issue 17.5, 17.8) ----

SMOOTHED_DPO_LOSSES = ("cdpo", "robust")
"""The dpo losses that read label_smoothing (TRL 1.16's DPOTrainer reads it in robust, exo_pair, aot and
aot_unpaired; align's cdpo is built on robust); the others would silently train as if it were 0."""


def _check_ignored_settings(stage: StageBase, p: str, v: Validator) -> None:
    """A key set to a value its stage's loss or sampler never reads is an error naming the settings that do,
    not a silent no-op; so is on-policy sampling from another distribution than the one trained on."""
    kind, loss = stage.kind, getattr(stage, "loss", None)
    if kind == "dpo" and stage.label_smoothing != 0 and loss not in SMOOTHED_DPO_LOSSES:
        v.error(f"{p}.label_smoothing", f"loss '{loss}' ignores label_smoothing (only {', '.join(SMOOTHED_DPO_LOSSES)} "
                                        "use it); set loss: cdpo or robust, or remove label_smoothing")
    if kind == "rm" and loss == "plackett_luce" and stage.margin and \
            (f"{p}.margin" in v.lines or f"{p}.margin" in v.overridden):
        v.error(f"{p}.margin", "loss 'plackett_luce' ignores margins (only bradley_terry subtracts them); set loss: "
                               "bradley_terry, or remove margin")
    if isinstance(stage, OnPolicyStage) and stage.generation is not None and stage.generation.top_p != 1.0:
        v.error(f"{p}.generation.top_p", f"{kind} trains on the log-probs of the full tempered distribution, so it "
                                         f"samples from it: top_p must be 1, got {stage.generation.top_p}")


_GATE = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_gate(text: str) -> tuple[str, str, float]:
    """'over_refusal <= 0.2' -> ('over_refusal', '<=', 0.2); a ValueError says what is wrong."""
    m = _GATE.match(str(text))
    if not m:
        raise ValueError(f"'{text}' is not a gate; write 'metric OP number', OP one of >=, <=, >, <, ==, !=")
    return m.group(1), m.group(2), float(m.group(3))


def parse_part(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): part i of n disjoint parts (rm stages' `part`); a ValueError says what is wrong."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"'{text}' is not a part; write 'i/n' with 1 <= i <= n, e.g. 1/2")
    return int(m.group(1)), int(m.group(2))


def _check_gates(recipe: Recipe, stage: StageBase, p: str, v: Validator) -> None:
    """Each gate parses and names a metric the stage or the recipe's hooks produce on its row (each built-in
    hook declares its metrics in `HOOKS`; a user hook's are known only when it runs, so with one any name
    passes here)."""
    known = set(schema.STAGE_METRICS.get(stage.kind, ()))
    head = "reward" if stage.kind == "rm" else "causal_lm"  # the row's model: rm_accuracy measures only rm rows
    for e in recipe.evals:
        if e is not None and e.hook in HOOKS and HOOKS[e.hook].head == head:
            names = list(named(dict.fromkeys(HOOKS[e.hook].metrics), e))
            known |= set(names) | {f"{m}_increase" for m in names if m.split("_")[0] == "perplexity"}
    user_hook = any(e is not None and e.hook and ":" in e.hook for e in recipe.evals)
    for j, gate in enumerate(stage.gate):
        try:
            name = parse_gate(gate)[0]
        except ValueError as err:
            v.error(f"{p}.gate[{j}]", str(err))
            continue
        if name not in known and not user_hook:
            near = difflib.get_close_matches(name, known, n=1)
            v.error(f"{p}.gate[{j}]", f"no metric '{name}': a {stage.kind} stage and the recipe's evals measure "
                    f"{', '.join(sorted(known))}" + (f"; did you mean '{near[0]}'?" if near else ""))


def _check_evals(recipe: Recipe, v: Validator) -> None:
    names = [s.name for s in recipe.stages if s]
    rms = [s.name for s in recipe.stages if s and s.kind == "rm"]
    for i, e in enumerate(recipe.evals):
        if e is None or e.hook is None:
            continue
        p = f"evals[{i}]"
        if ":" in e.hook:
            try:
                import_user_hook(e.hook)
            except AlignError as err:
                v.error(f"{p}.hook", err.message + (f" ({err.hint})" if err.hint else ""))
        elif e.hook not in HOOKS:
            near = difflib.get_close_matches(e.hook, HOOKS, n=1)
            v.error(f"{p}.hook", f"unknown hook '{e.hook}'; built-ins: {', '.join(HOOKS)}, or your own "
                    "'module:function'" + (f"; did you mean '{near[0]}'?" if near else ""))
        if e.against not in ("base", "start") and e.against not in names:
            v.error(f"{p}.against", f"'{e.against}' is not a stage; use 'base', 'start' or one of: {', '.join(names)}")
        if e.hook == "llm_judge" and not e.judge:
            v.error(f"{p}.judge", "llm_judge needs the judging model: a hub id, a local folder or a .gguf file")
        elif e.judge is not None and e.hook != "llm_judge" and e.judge not in rms:
            v.error(f"{p}.judge", f"'{e.judge}' is not an rm stage; rm stages: {', '.join(rms) or 'none'}")
        elif e.hook == "llm_judge" and (e.judge.startswith((".", "/", "~")) or e.judge.endswith(".gguf")) \
                and not Path(e.judge).expanduser().exists():
            v.error(f"{p}.judge", f"judging model '{e.judge}' does not exist (a local folder or .gguf file; "
                                  "paths are relative to the current folder)")
        if e.data and looks_local(e.data):
            _check_local(e.data, f"{p}.data", v)
        elif e.data and e.hook == "compliance" and is_benchmark(e.data) and (why := missing(e.data)):
            v.error(f"{p}.data", why)
        if e.name is not None and not re.fullmatch(r"\w+", e.name):
            v.error(f"{p}.name", f"'{e.name}' is not a metric-name suffix; use letters, digits and _")
        same = [j for j, o in enumerate(recipe.evals[:i]) if o and (o.hook, o.name) == (e.hook, e.name)]
        if same:  # the later hook's metrics would silently replace the earlier one's in every row
            v.error(f"{p}.name", f"evals[{same[0]}] is also hook {e.hook}" + (f" named '{e.name}'" if e.name else "") +
                    "; give each a distinct name (e.g. name: domain), which suffixes its metric names")


def reward_stage(recipe: Recipe, stage: StageBase) -> str | None:
    """The rm stage that scores and judges `stage`: the one its `reward_model` field names, else the last
    rm stage before it; None when there is none."""
    if not hasattr(stage, "reward_model"):
        return None  # sft and rm stages use no reward model
    name = stage.reward_model
    if name is None:
        earlier = recipe.stages[:recipe.stages.index(stage)]
        name = next((s.name for s in reversed(earlier) if s.kind == "rm"), None)
    return name


def data_kind(stage_kind: str) -> str:
    """Which section of the recipe's `data` a stage kind reads."""
    return {"pretrain": "text", "sft": "sft", "rm": "rankings", "dpo": "rankings"}.get(stage_kind, "prompts")


_DATA_HINTS = {"text": " (raw text to continue pretraining on: data.text: {train: corpus.jsonl with {\"text\": ...} "
                       "records or a .txt file of blank-line-separated paragraphs, eval: held-out text})"}


def _check_data(data: Any, path: str, v: Validator) -> None:
    for key in ("train", "eval"):
        ref = getattr(data, key)
        if ref and looks_local(ref):
            _check_local(ref, f"{path}.{key}", v)


def _check_local(ref: str, path: str, v: Validator) -> None:
    """A local data reference exists and is a regular file or a folder (never a FIFO or device: reading one
    would block or never end)."""
    p = Path(ref).expanduser()
    if why := path_error(ref):
        v.error(path, why)
    elif not p.exists():
        v.error(path, f"data file '{ref}' does not exist (paths are relative to the current folder)")
    elif not (p.is_file() or p.is_dir()):
        v.error(path, f"'{ref}' is not a regular file or a folder (a pipe or device?)")
