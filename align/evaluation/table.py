"""The evaluation table of a run: the baseline row, then one row per stage, each cached; and `align eval`.

During `align run`, `RunEvaluations` measures the base model before the first stage and every stage's
artifact after it with the recipe's `evals:` hooks (`hooks.HOOKS`), caches each row under
`evals/<row>.json` (keyed by what the row depends on, so a reused stage is not re-measured; the compliance
hook's answers also in `evals/<row>.compliance.jsonl`), writes
`evals.json` for the report, and checks each stage's `gate:` conditions (`gates`).

Every judged number names its judge (`judges` in the row). A row whose policy was trained, itself or
through its `init` chain, by ppo, rloo or grpo on the reward model that also judges it is marked
`own_reward`: the report and W&B say "judged by its own reward (optimistic)".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from align import records
from align.errors import AlignError
from align.evaluation.gates import GateFailed, check_gates
from align.evaluation.hooks import HOOKS, Row, evaluate_row
from align.models import artifact_head
from align.recipe import reward_stage
from align.runs import content_hash, finished, write_json
from align.schema import EvalSpec, ModelSpec, OnPolicyStage, Recipe, StageBase


def evaluate_cached(evals: Sequence[EvalSpec], row: Row, model_spec: ModelSpec, run_dir: Path, key: str,
                    judges: Sequence[Path | None], defaults: dict[str, Any], seed: int,
                    cache: str | None = None, sampled: dict | None = None) -> dict[str, Any]:
    """`evaluate_row`, reusing `evals/<cache or row>.json` when it was computed with the same key (the row's
    model fingerprint, the hooks, their data and judges): a rerun that reuses a stage does not re-measure it."""
    path = run_dir / "evals" / f"{cache or row.name}.json"
    cached = records.read_or_none(path, records.CACHED_ROW)  # missing or damaged: measured again
    if cached is not None and cached["key"] == key:
        return cached
    result = evaluate_row(evals, row, model_spec, run_dir, judges, defaults, seed, sampled) | {"key": key}
    path.parent.mkdir(exist_ok=True)
    write_json(path, result)
    if result.get("compliance"):  # every answer of the compliance hook, one JSON line each, for a reviewer
        from align.compliance import write_answers

        write_answers(path.with_name(f"{cache or row.name}.compliance.jsonl"), result["compliance"]["responses"])
    return result


def write_evals(run_dir: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """`evals.json`, the table the report reads: rows in order (baseline first) with their judges,
    compliance, samples."""
    out = {"rows": [{"row": r["row"], "metrics": r["metrics"], "gates": r.get("gates", []),
                     "judges": r.get("judges", {}), "own_reward": r.get("own_reward", [])} for r in rows],
           "compliance": {r["row"]: r["compliance"] for r in rows if r.get("compliance")},
           "samples": {r["row"]: r["samples"] for r in rows if r.get("samples")}}
    path = run_dir / "evals.json"
    write_json(path, out)
    return path


class RunEvaluations:
    """The evaluation rows of one pipeline run, in recipe order, baseline first."""

    def __init__(self, recipe: Recipe, run_dir: Path):
        self.recipe, self.run_dir = recipe, Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.defaults = _default_data(recipe)
        self._measured: dict[str, tuple[Row, str]] = {}  # row name -> (its model, its fingerprint)
        self._sampled: dict = {}  # every model's answers so far, reused across rows (`hooks.Models.completions`)
        self._passed: set[str] = set()  # the stages this run has reached, in recipe order (`_judge`)

    def baseline(self) -> None:
        if self.recipe.evals:
            self._add(Row("baseline", None), content_hash([dataclasses.asdict(self.recipe.model), "base"]))

    def after(self, stage: StageBase, fingerprint: str, metrics: dict[str, Any]) -> None:
        """Measure the stage's artifact, then check its gates (an AlignError stops the pipeline)."""
        row: dict[str, Any] = {"row": stage.name, "metrics": {}}
        self._passed.add(stage.name)
        if self.recipe.evals:
            art = self.run_dir / stage.name
            start = self.run_dir / stage.init if stage.init != "base" else None
            row = self._add(Row(stage.name, art, artifact_head(art), start), fingerprint)
            if stage.kind == "rm":
                self._judge_earlier_rows(stage.name)
        elif stage.gate:
            self.rows.append(row)
        if stage.gate:
            self._gate(stage, metrics, row)

    def _gate(self, stage: StageBase, metrics: dict[str, Any], row: dict[str, Any]) -> None:
        both = {k for k in metrics.keys() & row["metrics"].keys() if metrics[k] != row["metrics"][k]}
        results = check_gates(stage.gate, {**metrics, **row["metrics"]})
        for g in results:
            if g["metric"] in both:  # never let one silently stand for the other
                name = g["metric"]
                raise AlignError(f"stage {stage.name}: gate '{g['gate']}' names {name}, which the stage "
                                 f"({metrics[name]:.4g}) and its evaluation row ({row['metrics'][name]:.4g}) both "
                                 "report", hint="give the evaluation hook a name (its metrics get it as suffix)")
        row["gates"] = results
        failed = [g for g in results if not g["passed"]]
        (self.run_dir / stage.name / "gate.json").write_text(json.dumps({"passed": not failed, "gates": results},
                                                                        indent=2))
        if failed:
            self.write()
            lines = [f"{g['metric']} = {g['value']:.4g}, bound {g['op']} {g['bound']:g}" for g in failed]
            raise GateFailed(f"stage {stage.name} failed its gate: " + "; ".join(lines), failed,
                             hint=f"the artifact is kept in {self.run_dir / stage.name} (marked in gate.json); "
                                  "later stages did not run. Change the recipe and rerun: finished stages "
                                  "are reused")

    def _judge_earlier_rows(self, rm: str) -> None:
        """Win rates of the rows measured before their judge existed (e.g. SFT before the RM), judged now by
        the rm stage that just finished, so every policy row gets its number."""
        for result in self.rows:
            row, fingerprint = self._measured.get(result["row"], (None, ""))
            if row is None or row.head != "causal_lm":
                continue
            hooks = [e for e in self.recipe.evals if HOOKS.get(e.hook) and HOOKS[e.hook].judged
                     and e.hook != "llm_judge" and (e.judge or rm) == rm
                     and not any(m in result["metrics"] for m in _names(e))]
            if not hooks:
                continue
            judges = [self._judge(e) for e in hooks]
            late = evaluate_cached(hooks, row, self.recipe.model, self.run_dir,
                                   self._key(hooks, fingerprint, judges), judges, self.defaults, self.recipe.seed,
                                   cache=f"{row.name}.judged-{rm}", sampled=self._sampled)
            result["metrics"] |= late["metrics"]
            result["judges"] = result.get("judges", {}) | late["judges"]
            self._mark_own_reward(result)

    def _add(self, row: Row, fingerprint: str) -> dict[str, Any]:
        self._measured[row.name] = (row, fingerprint)
        judges = [self._judge(e) for e in self.recipe.evals]
        key = self._key(self.recipe.evals, fingerprint, judges)
        result = evaluate_cached(self.recipe.evals, row, self.recipe.model, self.run_dir, key, judges, self.defaults,
                                 self.recipe.seed, sampled=self._sampled)
        base = self.rows[0]["metrics"] if self.rows and self.rows[0]["row"] == "baseline" else {}
        ppl = [k for k in result["metrics"] if k.split("_")[0] == "perplexity" and not k.endswith("_increase")]
        for key in ppl if row.name != "baseline" else []:  # perplexity, and perplexity_<name> of a named hook
            if base.get(key):
                result["metrics"][f"{key}_increase"] = result["metrics"][key] / base[key] - 1
        self._mark_own_reward(result)
        self.rows.append(result)
        return result

    def _judge(self, spec: EvalSpec) -> Path | None:
        """The rm artifact that judges `spec`'s win rates: the rm stage it names, else the latest finished one;
        None until the run has reached it (the row is judged when it has). Reached, not merely on disk: a
        rerun then measures every row with the judges of its first run, under the same keys, and reuses it."""
        names = [spec.judge] if spec.judge and spec.hook != "llm_judge" else \
            [s.name for s in reversed(self.recipe.stages) if s.kind == "rm"]
        return next((self.run_dir / n for n in names
                     if n in self._passed and (self.run_dir / n / "artifact.json").is_file()), None)

    def _mark_own_reward(self, result: dict[str, Any]) -> None:
        """Mark the judged metrics of a row whose policy optimized its judge (see the module docstring)."""
        trained_on = set()
        stage = next((s for s in self.recipe.stages if s.name == result["row"]), None)
        while stage is not None:
            if isinstance(stage, OnPolicyStage):
                trained_on.add(reward_stage(self.recipe, stage))
            stage = next((s for s in self.recipe.stages if s.name == stage.init), None)
        result["own_reward"] = sorted(m for m, label in result.get("judges", {}).items()
                                      if label.removeprefix("rm stage ") in trained_on)

    def _key(self, hooks: Sequence[EvalSpec], fingerprint: str, judges: Sequence[Path | None]) -> str:
        """What a row's measurements depend on: the hooks, their default data, the row's model and each judge
        (its stage name and finished record, not its path: a copied or moved run folder keeps its rows)."""
        return content_hash([[dataclasses.asdict(e) for e in hooks], {k: str(v) for k, v in self.defaults.items()},
                             fingerprint, [[j and j.name, j and (j / "artifact.json").read_text()] for j in judges]])

    def write(self) -> Path | None:
        return write_evals(self.run_dir, self.rows) if self.rows else None


def _names(spec: EvalSpec) -> list[str]:
    return [f"{m}_{spec.name}" if spec.name else m for m in HOOKS[spec.hook].judged]


def _default_data(recipe: Recipe) -> dict[str, Any]:
    """Each kind of hook data defaults to the recipe's held-out set of that kind: its eval file, or the data
    section itself when it holds out an `eval_fraction` (the hook then takes that held-out part)."""
    def held(kind: str) -> Any:
        spec = getattr(recipe.data, kind)
        return None if spec is None else spec.eval or (spec if spec.eval_fraction > 0 else None)

    return {"rankings": held("rankings"), "prompts": held("prompts") or held("rankings") or held("sft"),
            "text": held("text"), "compliance": None}


def evaluate_artifact(artifact: str, spec: EvalSpec, model: str | None = None,
                      judge: str | None = None) -> dict[str, Any]:
    """One hook on one stage artifact (or 'base' with `model`), outside a pipeline: `align eval`. A hook that
    cannot measure this artifact, or a win rate without its judge, is an error saying what is missing."""
    from align.recipe import build_model_spec

    if artifact == "base":
        if not model:
            raise AlignError("align eval base needs --model NAME (a hub id, folder, .gguf or the embedded model)")
        row, model_spec, run_dir = Row("base", None), build_model_spec({"name": model}), Path.cwd()
    else:
        path = Path(artifact).resolve()
        config = records.read_or_none(path / "config.yaml", records.CONFIG)
        if config is None:
            raise AlignError(f"{artifact} is not a finished stage artifact (no readable config.yaml)",
                             hint="give a stage folder of a run, e.g. runs/quickstart/dpo, or 'base' with "
                                  "--model")
        model_spec = build_model_spec(config["model"] | ({"name": model} if model else {}))
        init = config["stage"].get("init", "base")
        run_dir = path.parent
        row = Row(path.name, path, artifact_head(path), run_dir / init if init != "base" else None)
    _check_applies(spec, row, judge)
    if spec.hook == "llm_judge":
        spec, judge = dataclasses.replace(spec, judge=judge), None
    return evaluate_row([spec], row, model_spec, run_dir, [Path(judge).resolve() if judge else None])


def _check_applies(spec: EvalSpec, row: Row, judge: str | None) -> None:
    hook = HOOKS.get(spec.hook)
    if hook is None:
        return  # a user hook measures what it chooses to
    what = {"reward": "a reward model (an rm stage's artifact)", "causal_lm": "a policy (the base model or a "
            "policy stage's artifact)"}
    if row.head != hook.head:
        raise AlignError(f"hook {spec.hook} measures {what[hook.head]}; {row.name} is {what[row.head].split(' (')[0]}",
                         hint="rm_accuracy runs on rm artifacts; every other built-in on policies")
    if spec.hook in ("win_rate", "llm_judge") and not judge:
        need = "an rm stage's artifact folder" if spec.hook == "win_rate" else "a judging model (hub id or folder)"
        raise AlignError(f"hook {spec.hook} needs a judge: nothing decides which answer wins",
                         hint=f"pass --judge with {need}")
    if spec.hook == "kl" and row.artifact is None:
        raise AlignError("hook kl measures a stage's policy against the model it started from; the base model "
                         "started from nothing", hint="give a policy stage's artifact folder")
    if spec.hook in ("win_rate", "llm_judge") and row.artifact is None and spec.against in ("base", "start"):
        raise AlignError(f"hook {spec.hook} compares a policy with another, and the base model against 'base' "
                         "is itself", hint="give a stage artifact, or --against another artifact folder")
    if spec.against not in ("base", "start"):
        _check_artifact("--against", spec.against, "causal_lm")
    if judge and spec.hook in ("win_rate", "samples"):
        _check_artifact("--judge", judge, "reward")


_ROLES = {"reward": ("the judge is a reward model", "an rm stage's folder, e.g. runs/quickstart/rm"),
          "causal_lm": ("the answers compared come from a policy", "a policy stage's folder, e.g. runs/quickstart/"
                                                                   "sft, or 'base' or 'start'")}


def _check_artifact(flag: str, value: str, head: str) -> None:
    """--against names a finished policy artifact, --judge (win_rate, samples) an rm stage's: else the hook would
    measure nothing, sample answers from a reward model's weights, or judge with a policy's weights under a new,
    random score head."""
    role, example = _ROLES[head]
    meta = records.read_or_none(Path(value) / "model.json", records.MODEL)
    if not finished(Path(value)) or meta is None:
        raise AlignError(f"{flag} {value}: not a finished stage artifact", hint=f"give {example} (`align runs` "
                                                                                 "lists the run folders)")
    if meta["head"] != head:
        raise AlignError(f"{flag} {value}: a {meta['head'].replace('_', ' ')} artifact; {role}", hint=f"give {example}")
