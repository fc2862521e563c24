"""The model card (README.md) of an exported artifact, written from its run folder alone.

It says what the model is (base model and its license, the stage chain, merged weights or an adapter,
how to load it), how it was trained (every stage of the run with its key metrics; the data files with
their content hashes), how it measured (the evaluation table, baseline first, and which reward model
judged each win rate), the limitations the run itself measured, and how to reproduce it (align's and the
libraries' versions, the command, the resolved recipe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from align import records
from align.paths import read_regular
from align.report_data import OWN_REWARD, evaluation_rows, fmt, judged_by, load_run, metric_text, shown_metrics

# licenses of the embedded models (their GGUF's upstream repository); other models: read from a local card
_KNOWN = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}


def write_card(artifact: Path, out: Path, weights: str, spec: Any) -> Path:
    """README.md in `out` for the stage folder `artifact`; `weights` is 'merged' or 'adapter'."""
    run = load_run(artifact.parent)
    recipe = _recipe(artifact.parent, run)
    stage = artifact.name
    meta = records.read(artifact / "model.json", records.MODEL, hint="retrain the stage that wrote it")
    hub_id, license_ = _base_info(spec.name)
    reward = meta["head"] == "reward"
    front = {"license": license_ or "other", "library_name": "peft" if weights == "adapter" else "transformers",
             "pipeline_tag": "text-classification" if reward else "text-generation",
             "tags": ["align", "rlhf", recipe_kind(recipe, stage)]} | ({"base_model": hub_id} if hub_id else {})
    parts = [f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n",
             f"# {recipe.get('name') or artifact.parent.name} / {stage}\n",
             _about(artifact, recipe, stage, meta, weights, spec, hub_id, license_),
             _stages(run, recipe), _data(run, recipe), _evaluation(run, recipe), _limitations(run, recipe, stage),
             _reproduce(run, recipe)]
    path = out / "README.md"
    path.write_text("\n".join(parts))
    return path


def recipe_kind(recipe: dict[str, Any], stage: str) -> str:
    return next((s.get("kind", "") for s in recipe.get("stages", []) if s.get("name") == stage), "")


def _recipe(run_dir: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The resolved recipe the pipeline saved (recipe.yaml), else one rebuilt from the manifest's stages."""
    try:
        return yaml.safe_load(read_regular(run_dir / "recipe.yaml")) or {}
    except (OSError, yaml.YAMLError):
        stages = [dict(info.get("config") or {}, name=name) for name, info in run["stages"].items()]
        return {"name": run["manifest"].get("name"), "stages": stages, "rebuilt": True}


def _base_info(name: str) -> tuple[str | None, str | None]:
    """The base model's hub id and license, as far as this machine knows them offline."""
    if name in _KNOWN:
        return _KNOWN[name]
    card = Path(name).expanduser() / "README.md"
    if card.is_file():
        text = card.read_text(errors="replace")
        if text.startswith("---"):
            try:
                front = yaml.safe_load(text.split("---")[1]) or {}
            except yaml.YAMLError:
                front = {}
            return front.get("base_model") if isinstance(front.get("base_model"), str) else None, front.get("license")
        return None, None
    return (None, None) if Path(name).expanduser().exists() or name.endswith(".gguf") else (name, None)


def _chain(artifact: Path) -> list[str]:
    names, folder = [], artifact
    while folder is not None:
        names.append(folder.name)
        config = records.read(folder / "config.yaml", records.CONFIG, hint="retrain the stage that wrote it")
        init = config["stage"].get("init", "base")
        folder = folder.parent / init if init != "base" else None
    return ["base", *names[::-1]]


def _about(artifact: Path, recipe: dict, stage: str, meta: dict, weights: str, spec: Any, hub_id: str | None,
           license_: str | None) -> str:
    reward = meta["head"] == "reward"
    what = ("a reward model: sequence classification with one label (`reward`), the score of a whole "
            "conversation read at its last token" if reward else "a chat policy")
    base = f"`{spec.name}`" + (f" ([{hub_id}](https://huggingface.co/{hub_id}))" if hub_id and hub_id != spec.name
                               else "")
    lines = [f"The `{stage}` stage ({recipe_kind(recipe, stage)}) of the align recipe `{recipe.get('name')}`: {what}.",
             "", f"- Base model: {base}; license: {license_ or 'not known here: check the base model card'}.",
             f"- Stage chain: {' -> '.join(_chain(artifact))}.",
             f"- Weights: {_weights_text(weights, meta)}."]
    if spec.name in _KNOWN:
        lines.append(f"- The embedded model is the Q4_1 GGUF of {_KNOWN[spec.name][0]}, dequantized: its weights "
                     "differ slightly from the Hub's.")
    cls = "AutoModelForSequenceClassification" if reward else "AutoModelForCausalLM"
    lines += ["", "```python", f"from transformers import AutoTokenizer, {cls}",
              f'model = {cls}.from_pretrained("PATH")', 'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```"]
    if not reward:
        lines += ["", "`generation_config.json` stops generation where an assistant turn ends; the tokenizer "
                      "carries the chat template the model was trained with."]
    return "## Model\n\n" + "\n".join(lines) + "\n"


def _weights_text(weights: str, meta: dict) -> str:
    if weights == "adapter":
        return ("a LoRA adapter (`adapter_config.json` names the base model; loading it needs `peft`), the "
                "stage chain's adapters combined into one")
    if meta["weights"] == "adapter":
        return "full weights in safetensors: the base model with the stage chain's LoRA adapters merged in"
    return "full weights in safetensors (full fine-tuning)"


def _stages(run: dict[str, Any], recipe: dict) -> str:
    from align.pipeline import summary_line

    lines = ["| stage | kind | from | result |", "|---|---|---|---|"]
    kinds = {s.get("name"): s for s in recipe.get("stages", [])}
    for name, st in run["stages"].items():
        info, s = st["info"], kinds.get(name, {})
        line = summary_line(name, st["metrics"], run["dir"] / name)
        result = line.split(": ", 1)[-1].rsplit(", artifact ", 1)[0] if st["metrics"] else info.get("status", "not run")
        lines.append(f"| {name} | {s.get('kind', '')} | {s.get('init', 'base')} | {result} |")
    return "## Training\n\nEvery stage of the run (key metrics: held-out before -> after, and time):\n\n" + \
        "\n".join(lines) + "\n"


def _data(run: dict[str, Any], recipe: dict) -> str:
    from align.recipe import data_kind

    lines = ["| stage | role | file | sha256 (first 16) |", "|---|---|---|---|"]
    for name, st in run["stages"].items():
        s = next((x for x in recipe.get("stages", []) if x.get("name") == name), {})
        section = s.get("data") or (recipe.get("data") or {}).get(data_kind(s.get("kind", "")), {}) or {}
        for role, digest in ((st["info"].get("inputs") or {}).get("data") or {}).items():
            where = section.get(role) if role != "mix" else (s.get("mix") or {}).get("data")
            lines.append(f"| {name} | {role} | `{where or '?'}` | `{digest}` |")
    return "## Data\n\nThe files each stage trained and was evaluated on, with the hash of their contents:\n\n" + \
        "\n".join(lines) + "\n"


def _evaluation(run: dict[str, Any], recipe: dict) -> str:
    rows = evaluation_rows(run)
    if not rows:
        return "## Evaluation\n\nThe recipe has no evaluation hooks: nothing was measured between stages.\n"
    names = shown_metrics(rows)
    lines = ["| row | " + " | ".join(names) + " | failed gates |", "|---" * (len(names) + 2) + "|"]
    for r in rows:
        own = set(r.get("own_reward") or [])
        cells = [metric_text(r["metrics"], m) + (" (own reward: optimistic)" if m in own else "") for m in names]
        failed = "; ".join(g.get("gate", "") for g in r.get("gates", []) if not g.get("passed")) or "none"
        lines.append(f"| {r['row']} | " + " | ".join(cells) + f" | {failed} |")
    # every judged number with its judge, as the run recorded it (`judges` and `own_reward` of each row)
    judged = [f"- {r['row']}: {text}." for r in rows if (text := judged_by(r))]
    hooks = [_hook_text(e) for e in recipe.get("evals", []) or [] if e.get("hook") in ("win_rate", "llm_judge")]
    notes = (["Who judged each row's win rates (a policy judged by the reward model it was trained on is marked "
              f"'{OWN_REWARD}'):", "", *judged] if judged else []) + (["", *hooks] if hooks else [])
    return ("## Evaluation\n\nThe recipe's evaluation hooks on the base model (baseline) and after every stage:\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n")


def _hook_text(e: dict) -> str:
    """What a win-rate hook compares: whose answers against whose, decided how."""
    name = ("win_rate" if e["hook"] == "win_rate" else "llm_win_rate") + (f"_{e['name']}" if e.get("name") else "")
    against = {"base": "the base model's", "start": "those of the model its stage started from"}.get(
        e.get("against", "base"), f"stage `{e.get('against')}`'s")
    how = (f"by the LLM `{e.get('judge')}`, asked in both orders" if e["hook"] == "llm_judge" else
           f"by the reward model of stage `{e['judge']}`" if e.get("judge") else
           "by the reward model of the last rm stage finished (trained in this run)")
    return f"- {name}: each row's answers against {against}, judged {how}; ties count half."


def _limitations(run: dict[str, Any], recipe: dict, stage: str) -> str:
    """What the run measured that a user of this model should know (numbers from the evaluation table)."""
    rows = {r["row"]: r["metrics"] for r in evaluation_rows(run)}
    mine, base = rows.get(stage, {}), rows.get("baseline", {})
    notes = []
    if "over_refusal" in mine:
        notes.append(f"Over-refusal: refuses {mine['over_refusal']:.0%} of benign prompts that only sound risky "
                     f"(base model: {fmt(base.get('over_refusal'))}).")
    if "refusal_rate" in mine:
        notes.append(f"Refuses {mine['refusal_rate']:.0%} of the harmful prompts measured (base model: "
                     f"{fmt(base.get('refusal_rate'))}); it is not a safety filter.")
    if (inc := mine.get("perplexity_increase")) is not None:
        notes.append(f"Forgetting: perplexity on general-domain text changed by {inc:+.1%} against the base model.")
    if mine.get("response_length") and mine.get("response_length_against"):
        a, b = mine["response_length_against"], mine["response_length"]
        notes.append(f"Answer length: {a:.0f} -> {b:.0f} tokens on average against the answers its win rate is "
                     "measured against" + (" (longer answers can win a reward model's favour without being better)."
                                           if b > 1.1 * a else "."))
    row = next((r for r in evaluation_rows(run) if r["row"] == stage), {})
    if any(str(label).startswith("rm stage") for label in (row.get("judges") or {}).values()):
        notes.append("Win rates are judged by a reward model trained in this same run on the same kind of data, "
                     "not by people or an independent judge" + (
                         "; this model was trained on that reward model, so its win rates are optimistic."
                         if row.get("own_reward") else "."))
    if (acc := mine.get("rm_accuracy")) is not None:
        notes.append(f"Held-out ranking accuracy of this reward model: {acc:.0%}.")
    for r in evaluation_rows(run):
        for g in r.get("gates", []):
            if not g.get("passed"):
                notes.append(f"Stage {r['row']} failed its gate {g.get('gate')} (value {fmt(g.get('value'))}).")
    if not notes:
        notes.append("The run measured nothing that bounds this model's behaviour: add evaluation hooks.")
    notes.append("Trained and evaluated on small data sets (see Data); the numbers above come from few examples.")
    return "## Limitations\n\nMeasured by this run:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _reproduce(run: dict[str, Any], recipe: dict) -> str:
    manifest = run["manifest"]
    versions = manifest.get("versions") or {}
    resolved = {k: v for k, v in recipe.items() if k != "rebuilt"}
    note = (" (rebuilt from the manifest's stages: this run folder has no recipe.yaml, so its data and evals "
            "sections are missing)" if recipe.get("rebuilt") else "")
    return ("## Reproduce\n\n"
            f"align {versions.get('align', '?')}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "align") + ".\n\n"
            f"```bash\nalign run {manifest.get('recipe') or 'recipe.yaml'}\n```\n\n"
            f"The resolved recipe (overrides applied){note}; save it as `recipe.yaml` and run "
            "`align run recipe.yaml` to train it again:\n\n"
            f"```yaml\n{yaml.safe_dump(resolved, sort_keys=False)}```\n")
