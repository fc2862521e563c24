"""Evaluation hooks and gates: the same measurements on the base model and after every stage.

A recipe's `evals:` list runs on the base model (the baseline row) and on each stage's artifact, so
every number has a before and after. Built-ins (each runs on the rows it applies to):

    rm_accuracy   reward-model rows: pairwise accuracy, top-1 agreement, ECE on held-out rankings
    perplexity    policy rows: token perplexity on a text or chat set; perplexity_increase vs baseline
    compliance    policy rows: refusal_rate (harmful), over_refusal (benign), ordinary_refusal
    win_rate      policy rows: judged by the recipe's RM against `against` (base or a stage), ties half
    kl            policy rows: KL(policy || the model the stage started from), from the policy's samples
    samples       policy rows: a side-by-side table of generations (start model vs this row)

A user hook is named `module:function` and called as `function(model, tok, ctx) -> dict[str, float]`,
where `model` is the row's model (frozen, adapters merged), `tok` its tokenizer and `ctx` a
`HookContext` (row name, artifact, data path, args from the recipe). It runs only when named.

`align.gates` runs these rows during a pipeline, caches them, and checks the stages' gates.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.errors import AlignError
from align.evaluation import kl_from_samples, ranking_metrics, win_rate
from align.generation import (
    adapters_disabled,
    completion_logprobs,
    generate,
    prompt_ids,
    score_completions,
    score_rankings,
    token_nll,
)
from align.schema import EvalSpec, GenerationSpec, ModelSpec


@dataclass
class Row:
    """One row of the evaluation table: the base model ('baseline') or a stage's artifact."""

    name: str
    artifact: Path | None  # None = the recipe's base model
    head: str = "causal_lm"  # causal_lm | reward
    start: Path | None = None  # the model this row's stage started from (None = base): kl and samples
    start_name: str = "base"


@dataclass
class HookContext:
    """What a hook may need besides the model: passed to user hooks as their third argument."""

    row: Row
    spec: EvalSpec
    data: str | None
    model_spec: ModelSpec
    run_dir: Path
    judge: Path | None = None  # the rm artifact that judges win rates, when one has finished
    args: dict[str, Any] = field(default_factory=dict)


# ---- running the hooks on one row ----------------------------------------------------------------

class _Models:
    """Loads each model a row's hooks need once (the row's own, its start, the judge, win-rate rivals)."""

    def __init__(self, spec: ModelSpec):
        from align.models import load_tokenizer

        self.spec, self.tok, self._cache = spec, load_tokenizer(spec), {}

    def get(self, artifact: Path | None, head: str = "causal_lm") -> Any:
        from align.models import load_artifact, load_model

        key = (str(artifact), head)
        if key not in self._cache:
            self._cache[key] = load_artifact(artifact, self.spec, head) if artifact else \
                load_model(self.spec, head, trainable=False)
        return self._cache[key]


def evaluate_row(evals: Sequence[EvalSpec], row: Row, model_spec: ModelSpec, run_dir: Path,
                 judge: Path | None = None, defaults: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Run every hook that applies to `row`: {"metrics": {...}, "compliance": {...}?, "samples": [...]?}."""
    models = _Models(model_spec)
    out: dict[str, Any] = {"row": row.name, "metrics": {}}
    for spec in evals:
        data = spec.data or (defaults or {}).get(_DATA_KIND.get(spec.hook, ""))
        ctx = HookContext(row, spec, data, model_spec, run_dir, judge, dict(spec.args))
        if ":" in spec.hook:
            result = _user_hook(spec.hook)(models.get(row.artifact, row.head), models.tok, ctx)
            if not isinstance(result, dict):
                raise AlignError(f"hook {spec.hook} returned {type(result).__name__}; a hook returns a dict of "
                                 "metric name -> number")
            out["metrics"] |= _named(result, spec)
            continue
        if (row.head == "reward") != (spec.hook == "rm_accuracy"):
            continue  # rm_accuracy measures reward models, every other built-in measures policies
        if data is None and spec.hook != "win_rate":
            raise AlignError(f"evals: hook {spec.hook} has no data", hint=f"set its data (a {_DATA_KIND[spec.hook]} "
                             "file) or the recipe's held-out data of that kind")
        metrics, extra = BUILTINS[spec.hook](models, ctx)
        out["metrics"] |= _named(metrics, spec)
        if extra is not None:
            out["compliance" if spec.hook == "compliance" else "samples"] = extra
    return out


def _named(metrics: dict[str, Any], spec: EvalSpec) -> dict[str, Any]:
    """The hook's metrics with its `name` as a suffix, so one hook on two data sets keeps both numbers."""
    if not spec.name:
        return metrics
    # an interval's suffix stays last: over_refusal_<name>.upper, as gates write it
    return {(f"{k.split('.', 1)[0]}_{spec.name}." + k.split(".", 1)[1]) if "." in k else f"{k}_{spec.name}": v
            for k, v in metrics.items()}


_DATA_KIND = {"rm_accuracy": "rankings", "perplexity": "text", "compliance": "compliance", "win_rate": "prompts",
              "kl": "prompts", "samples": "prompts"}


def _user_hook(path: str) -> Callable[..., dict[str, float]]:
    module, _, name = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise AlignError(f"evals: cannot load hook {path}: {e}",
                         hint="name it as 'package.module:function', importable from where align runs") from None
    return fn


def _rm_accuracy(models: _Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.rankings import read_rankings, tokenize_rankings

    rankings = read_rankings(ctx.data)[: ctx.spec.max_examples]
    rows, _ = tokenize_rankings(rankings, models.tok, 512)
    scores = score_rankings(models.get(ctx.row.artifact, "reward"), rows, 16, models.tok.pad_token_id)
    m = ranking_metrics(scores, [r.ranking for r in rankings])
    return {"rm_accuracy": m["pairwise_accuracy"], "rm_top1": m["top1_agreement"], "rm_ece": m["ece"]}, None


def _perplexity(models: _Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.data import read_records, render_chat

    rows = []
    for src, line, rec in read_records(ctx.data):
        if isinstance(rec.get("text"), str):
            rows.append(models.tok(rec["text"])["input_ids"])
        elif "messages" in rec:
            rows.append(render_chat(models.tok, rec["messages"], add_generation_prompt=False))
        else:
            raise AlignError(f"{src} line {line}: a perplexity record needs 'text' or chat 'messages'")
    rows = [r[:512] for r in rows[: ctx.spec.max_examples]]
    total, count = token_nll(models.get(ctx.row.artifact), rows, models.tok.pad_token_id)
    return {"perplexity": math.exp(total / count)}, None


def _compliance(models: _Models, ctx: HookContext) -> tuple[dict[str, float], dict]:
    from align.compliance import evaluate_compliance, hook_metrics, read_prompt_set

    records = _balanced(read_prompt_set(ctx.data), ctx.spec.max_examples)
    result, table = evaluate_compliance(models.get(ctx.row.artifact), models.tok, records, ctx.spec.generation,
                                        ctx.spec.classifier)
    # every answer with its verdict and rule, for a human to check, and the row this one's stage started from,
    # so the report can show which answers training changed
    return hook_metrics(result["overall"]), result | {"responses": table, "start": ctx.row.start_name}


def _balanced(records: list[dict], n: int | None) -> list[dict]:
    """At most n records, taken in turn from each label so every label keeps its share."""
    if not n or n >= len(records):
        return records
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(r["label"], []).append(r)
    out, i = [], 0
    while len(out) < n:
        for group in by_label.values():
            if i < len(group) and len(out) < n:
                out.append(group[i])
        i += 1
    return out


def _prompts(ctx: HookContext) -> list[list[dict]]:
    from align.data import distinct, parse_prompt, read_records

    prompts = distinct(parse_prompt(src, line, rec)["prompt"] for src, line, rec in read_records(ctx.data))
    return prompts[: ctx.spec.max_examples or 32]


def _win_rate(models: _Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    if ctx.judge is None or ctx.data is None:
        return {}, None  # nothing judges yet (the rm stage comes later): the report shows no number
    against = None if ctx.spec.against == "base" else ctx.run_dir / ctx.spec.against
    if against == ctx.row.artifact:
        return {}, None
    m, _ = compare_policies(models.get(ctx.row.artifact), models.tok, _prompts(ctx), ctx.spec.generation,
                            reference=models.get(against), judge=models.get(ctx.judge, "reward"), n_samples=0)
    return {"win_rate": m["win_rate"], "reward": m["reward"], "reward_against": m["reward_start"]}, None


def _kl(models: _Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    if ctx.row.artifact is None:
        return {}, None  # the base model is its own reference
    m, _ = compare_policies(models.get(ctx.row.artifact), models.tok, _prompts(ctx), ctx.spec.generation,
                            reference=models.get(ctx.row.start), n_samples=0)
    return {"kl": m["kl"]}, None


def _samples(models: _Models, ctx: HookContext) -> tuple[dict[str, float], list[dict]]:
    prompts = _prompts(ctx)[: ctx.spec.max_examples or 8]
    policy = models.get(ctx.row.artifact)
    if ctx.row.artifact is None:
        done = generate(policy, models.tok, prompt_ids(models.tok, prompts), **_sampling(ctx.spec.generation))
        return {}, [{"prompt": p[-1]["content"], "policy": c.text} for p, c in zip(prompts, done)]
    judge = models.get(ctx.judge, "reward") if ctx.judge is not None else None
    _, table = compare_policies(policy, models.tok, prompts, ctx.spec.generation, reference=models.get(ctx.row.start),
                                judge=judge, n_samples=len(prompts))
    return {}, table


BUILTINS = {"rm_accuracy": _rm_accuracy, "perplexity": _perplexity, "compliance": _compliance,
            "win_rate": _win_rate, "kl": _kl, "samples": _samples}


def _sampling(gen: GenerationSpec) -> dict[str, Any]:
    return dict(max_new_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                batch_size=gen.batch_size, seed=gen.seed)


# ---- policy against reference --------------------------------------------------------------------

def compare_policies(policy: Any, tok: Any, prompts: Sequence[list[dict]], gen: GenerationSpec,
                     reference: Any | None = None, judge: Any | None = None, judge_max_length: int | None = None,
                     n_samples: int = 8) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics of `policy` against `reference` (None: the policy with its adapters disabled) and a sample table.

    Both answer the same prompts with the same sampling seed. Metrics: kl (per sequence, from the
    policy's samples), mean response length and EOS rate; with a `judge` reward model, the mean reward
    of each and the policy's win rate (ties half).
    """
    ids = prompt_ids(tok, prompts, gen.max_prompt_length)
    ref_ctx = contextlib.nullcontext(reference) if reference is not None else adapters_disabled(policy)
    ours = generate(policy, tok, ids, **_sampling(gen))
    policy_lp = completion_logprobs(policy, ours, tok.pad_token_id, gen.batch_size)
    with ref_ctx as ref:
        theirs = generate(ref, tok, ids, **_sampling(gen))
        ref_lp = completion_logprobs(ref, ours, tok.pad_token_id, gen.batch_size)
    metrics = {"kl": kl_from_samples([x.tolist() for x in policy_lp], [x.tolist() for x in ref_lp]),
               "response_length": sum(len(c.ids) for c in ours) / len(ours),
               "response_length_start": sum(len(c.ids) for c in theirs) / len(theirs),
               "eos_rate": sum(c.finished for c in ours) / len(ours),
               "eval_prompts": len(prompts)}
    rewards: tuple[list[float], list[float]] | None = None
    if judge is not None:
        rewards = (score_completions(judge, tok, prompts, [c.text for c in ours], judge_max_length, gen.batch_size),
                   score_completions(judge, tok, prompts, [c.text for c in theirs], judge_max_length,
                                     gen.batch_size))
        metrics |= {"win_rate": win_rate(*rewards), "reward": sum(rewards[0]) / len(prompts),
                    "reward_start": sum(rewards[1]) / len(prompts)}
    table = [{"prompt": p[-1]["content"], "start": t.text, "policy": o.text,
              **({"reward_start": rewards[1][i], "reward_policy": rewards[0][i]} if rewards else {})}
             for i, (p, o, t) in enumerate(zip(prompts[:n_samples], ours, theirs))]
    return metrics, table



def evaluate_artifact(artifact: str, spec: EvalSpec, model: str | None = None,
                      judge: str | None = None) -> dict[str, Any]:
    """One hook on one stage artifact (or 'base' with `model`), outside a pipeline: `align eval`."""
    import yaml

    from align.models import artifact_head
    from align.recipe import build_model_spec

    if artifact == "base":
        if not model:
            raise AlignError("align eval base needs --model NAME (a hub id, folder, .gguf or the embedded model)")
        row, model_spec, run_dir = Row("base", None), build_model_spec({"name": model}), Path.cwd()
    else:
        path = Path(artifact).resolve()
        try:
            config = yaml.safe_load((path / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            raise AlignError(f"{artifact} is not a finished stage artifact (no readable config.yaml)",
                             hint="give a stage folder of a run, e.g. runs/quickstart/dpo, or 'base' with "
                                  "--model") from None
        model_spec = build_model_spec(config["model"] | ({"name": model} if model else {}))
        init = config["stage"].get("init", "base")
        run_dir = path.parent
        row = Row(path.name, path, artifact_head(path), run_dir / init if init != "base" else None, init)
    judge_path = Path(judge).resolve() if judge else None
    return evaluate_row([spec], row, model_spec, run_dir, judge_path)
