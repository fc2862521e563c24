"""The evaluation hooks: one table from a hook's name to its function, its data and the rows it measures.

A recipe's `evals:` list runs on the base model (the baseline row) and on each stage's artifact, so
every number has a before and after. Built-ins (each runs on the rows it applies to):

    rm_accuracy   reward-model rows: pairwise accuracy, top-1 agreement, ECE on held-out rankings
    perplexity    policy rows: token perplexity on a text or chat set; perplexity_increase vs baseline
    compliance    policy rows: refusal_rate (harmful), over_refusal (benign), ordinary_refusal, each with
                  .lower/.upper (95% Wilson interval) and .n; every answer in evals/<row>.compliance.jsonl
    win_rate      policy rows: against `against`, judged by an rm stage (`judge`), ties half; both mean
                  rewards, both mean answer lengths, the EOS rate
    llm_judge     policy rows: llm_win_rate against `against`, judged by an LLM asked in both orders
    kl            policy rows: KL(policy || the model its stage started from) at the sampling temperature
    samples       policy rows: a side-by-side table of generations (start model vs this row)

A user hook is named `module:function` and called as `function(model, tok, ctx) -> dict[str, float]`,
where `model` is the row's model (frozen), `tok` its tokenizer and `ctx` a `HookContext`. It runs only
when a recipe names it; `user_hooks.py` imports, checks and calls it. `HOOKS` is the only list of
built-ins: `align.recipe` validates against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align import console
from align.errors import AlignError
from align.evaluation.user_hooks import run_user_hook
from align.schema import DataSpec, EvalSpec, ModelSpec


@dataclass
class Row:
    """One row of the evaluation table: the base model ('baseline') or a stage's artifact."""

    name: str
    artifact: Path | None  # None = the recipe's base model
    head: str = "causal_lm"  # causal_lm | reward
    start: Path | None = None  # the model this row's stage started from (None = base): kl, samples, 'start'


@dataclass
class HookContext:
    """What a hook may need besides the model: passed to user hooks as their third argument."""

    row: Row
    spec: EvalSpec
    data: str | DataSpec | None  # a file, or a recipe data section whose held-out part is meant
    model_spec: ModelSpec
    run_dir: Path
    judge: Path | None = None  # the rm artifact that judges this hook's win rates, when it has finished
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 42  # the recipe's seed: it draws the held-out part of a data section (eval_fraction)


@dataclass(frozen=True)
class Hook:
    run: Callable[[Models, HookContext], tuple[dict[str, Any], Any]]
    data: str  # the kind of data it reads: rankings, text, compliance, prompts
    head: str  # the rows it measures: reward (reward models) or causal_lm (policies)
    metrics: tuple[str, ...]  # the metrics it may add to a row: what a stage's `gate:` may name (`align.recipe`)
    judged: tuple[str, ...] = ()  # those of its metrics that a judge decides (the report names the judge)
    extra: str | None = None  # the key its second result goes to in the row (a table for the report)
    work: str = "scoring"  # what takes its time, for the console: scoring, or generation (then judging)


# ---- running the hooks on one row ----------------------------------------------------------------

class Models:
    """Loads each model a row's hooks need once (the row's own, its start, the judges, win-rate rivals)."""

    def __init__(self, spec: ModelSpec, sampled: dict | None = None):
        from align.models import load_tokenizer

        self.spec, self.tok, self._cache = spec, load_tokenizer(spec), {}
        self.sampled = sampled if sampled is not None else {}  # shared by a run's rows: see `completions`

    def get(self, artifact: Path | None, head: str = "causal_lm") -> Any:
        from align.models import load_artifact, load_model

        key = (str(artifact), head)
        if key not in self._cache:
            self._cache[key] = load_artifact(artifact, self.spec, head) if artifact else \
                load_model(self.spec, head, trainable=False)
        return self._cache[key]

    def completions(self, artifact: Path | None, prompts: list[list[dict]], gen: Any) -> list[Any]:
        """A model's answers to distinct prompts (`compare.sample`), each generated once per run for each model
        and settings: the base model's answers serve every row's win rate against base, a policy's win-rate
        answers its KL (same settings) and its sample table (a subset of the prompts). A prompt's answer
        depends only on the model, the prompt and the settings (`generation.prompt_seeds`), so a reused one
        is the answer a new generation would give."""
        from align.evaluation.compare import sample

        settings = (str(artifact), gen.max_new_tokens, gen.temperature, gen.top_p, gen.seed, gen.max_prompt_length)
        keys = [(settings, repr(p)) for p in prompts]
        missing = [p for p, k in zip(prompts, keys) if k not in self.sampled]
        if missing:
            for p, c in zip(missing, sample(self.get(artifact), self.tok, missing, gen)):
                self.sampled[(settings, repr(p))] = c
        return [self.sampled[k] for k in keys]

    def named(self, name: str) -> tuple[Any, Any]:
        """Another model than the recipe's (an LLM judge), with its own tokenizer, loaded frozen."""
        from align.models import load_model, load_tokenizer

        if ("named", name) not in self._cache:
            spec = dataclasses.replace(self.spec, name=name, adapter="full", chat_template=None)
            self._cache[("named", name)] = (load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec))
        return self._cache[("named", name)]


def evaluate_row(evals: Sequence[EvalSpec], row: Row, model_spec: ModelSpec, run_dir: Path,
                 judges: Sequence[Path | None] | None = None, defaults: dict[str, Any] | None = None,
                 seed: int = 42, sampled: dict | None = None) -> dict[str, Any]:
    """Run every hook that applies to `row` ({"metrics", "judges", "compliance"?, "samples"?}); `judges[i]` is
    the rm artifact judging `evals[i]`'s win rates (None: not yet); `sampled` the run's answers so far
    (`Models.completions`)."""
    models = Models(model_spec, sampled)
    out: dict[str, Any] = {"row": row.name, "metrics": {}, "judges": {}}
    for i, spec in enumerate(evals):
        hook = HOOKS.get(spec.hook)
        data = spec.data or (defaults or {}).get(hook.data if hook else "")
        ctx = HookContext(row, spec, data, model_spec, run_dir, judges[i] if judges else None, dict(spec.args), seed)
        if hook is None:
            with console.step(_step_label(row, spec, data, "user hook")):
                result = run_user_hook(spec.hook, models.get(row.artifact, row.head), models.tok, ctx)
            out["metrics"] |= named(result, spec)
            continue
        if row.head != hook.head:
            continue  # rm_accuracy measures reward models, every other built-in measures policies
        if data is None and spec.hook != "win_rate":  # a win rate waits, like for its judge: no number yet
            raise AlignError(f"evals: hook {spec.hook} has no data", hint=f"set its data (a {hook.data} file) or "
                             "the recipe's held-out data of that kind")
        with console.step(_step_label(row, spec, data, hook.work)) as note:
            metrics, extra = hook.run(models, ctx)
            if not metrics and extra is None:
                note.append("nothing to measure for this row (yet: a judge or rival may come later)")
        out["metrics"] |= named(metrics, spec)
        out["judges"] |= {m: judge_label(spec, ctx.judge) for m in named(dict.fromkeys(hook.judged), spec)
                          if m in out["metrics"]}
        if extra is not None:
            out[hook.extra] = extra
    return out


def _step_label(row: Row, spec: EvalSpec, data: str | DataSpec | None, work: str) -> str:
    """'baseline: compliance on compliance.csv, at most 36 (generation)': the line the console shows."""
    if isinstance(data, DataSpec):
        where = f" on held-out {Path(data.eval).name}" if data.eval else \
            f" on held-out {data.eval_fraction:.0%} of {Path(data.train).name}"
    else:
        where = f" on {Path(data).name}" if data else ""
    most = f", at most {spec.max_examples}" if spec.max_examples else ""
    return f"{row.name}: {spec.hook}{'_' + spec.name if spec.name else ''}{where}{most} ({work})"


def named(metrics: dict[str, Any], spec: EvalSpec) -> dict[str, Any]:
    """The hook's metrics with its `name` as a suffix, so one hook on two data sets keeps both numbers."""
    if not spec.name:
        return metrics
    # an interval's suffix stays last: over_refusal_<name>.upper, as gates write it
    return {(f"{k.split('.', 1)[0]}_{spec.name}." + k.split(".", 1)[1]) if "." in k else f"{k}_{spec.name}": v
            for k, v in metrics.items()}


def judge_label(spec: EvalSpec, judge: Path | None) -> str:
    """Who decided a hook's win rates, as the report prints it."""
    if spec.hook == "llm_judge":
        return f"LLM {spec.judge}"
    return f"rm stage {judge.name}" if judge is not None else "none"


def held_out(ctx: HookContext, parse: Callable[[str, int, dict], Any]) -> list[Any]:
    """The hook's records: its data file, or the held-out part of a recipe data section (its eval file, or the
    `eval_fraction` the stages hold out with the recipe's seed)."""
    from align.data import load_split, read_records

    if isinstance(ctx.data, DataSpec):
        return load_split(ctx.data, parse, ctx.seed)[1]
    return [parse(src, line, rec) for src, line, rec in read_records(ctx.data)]


# ---- the built-ins -------------------------------------------------------------------------------

def _rm_accuracy(models: Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.generation import score_rankings
    from align.metrics import ranking_metrics
    from align.rankings import parse_ranking, tokenize_rankings

    rankings = held_out(ctx, parse_ranking)[: ctx.spec.max_examples]
    rows, _ = tokenize_rankings(rankings, models.tok, 512)
    scores = score_rankings(models.get(ctx.row.artifact, "reward"), rows, 16, models.tok.pad_token_id)
    m = ranking_metrics(scores, [r.ranking for r in rankings])
    return {"rm_accuracy": m["pairwise_accuracy"], "rm_top1": m["top1_agreement"], "rm_ece": m["ece"]}, None


def _perplexity(models: Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.data import render_chat
    from align.generation import token_nll

    rows = []
    for src, line, rec in held_out(ctx, lambda src, line, rec: (src, line, rec)):
        if isinstance(rec.get("text"), str):
            rows.append(models.tok(rec["text"])["input_ids"])
        elif "messages" in rec:
            rows.append(render_chat(models.tok, rec["messages"], add_generation_prompt=False))
        else:
            raise AlignError(f"{src} line {line}: a perplexity record needs 'text' or chat 'messages'")
    rows = [r[:512] for r in rows[: ctx.spec.max_examples]]
    total, count = token_nll(models.get(ctx.row.artifact), rows, models.tok.pad_token_id)
    return {"perplexity": math.exp(total / count)}, None


def _compliance(models: Models, ctx: HookContext) -> tuple[dict[str, float], dict]:
    from align.compliance import evaluate_compliance, hook_metrics, read_prompt_set

    records = _balanced(read_prompt_set(ctx.data), ctx.spec.max_examples)
    result, table = evaluate_compliance(models.get(ctx.row.artifact), models.tok, records, ctx.spec.generation,
                                        ctx.spec.classifier)
    # every answer with its verdict and rule, for a human to check, and the row of the model this row's stage
    # started from (as 'against: start' reads it; None for the base model), so the report can show which
    # answers training changed
    start = None if ctx.row.artifact is None else ctx.row.start.name if ctx.row.start is not None else "baseline"
    return hook_metrics(result["overall"]), result | {"responses": table, "start": start}


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


def prompts_of(ctx: HookContext, default: int = 32) -> list[list[dict]]:
    """The hook's distinct prompts, at most `max_examples` (default 32): a prompts file, or the prompts of
    rankings in any format (the recipe's held-out rankings: OpenAssistant, hh-rlhf, TRL, native)."""
    from align.data import distinct

    prompts = distinct(held_out(ctx, _prompt))
    if not prompts:
        raise AlignError(f"evals: hook {ctx.spec.hook} found no prompts in its data",
                         hint="give it a prompts file (data:), or held-out data (an eval file or eval_fraction)")
    return prompts[: ctx.spec.max_examples or default]


def _prompt(src: str, line: int, rec: dict) -> list[dict]:
    """A prompt record's messages, or a ranking's prompt (a record without `prompt` or `messages`)."""
    from align.data import parse_prompt
    from align.rankings import parse_ranking

    if "prompt" not in rec and "messages" not in rec:
        return parse_ranking(src, line, rec).prompt
    return parse_prompt(src, line, rec)["prompt"]


def _against(ctx: HookContext) -> tuple[bool, Path | None]:
    """(whether there is a rival, its artifact: None = base): `against` of the row, resolved. None when it is
    the row itself (the baseline against base) or a stage that has not finished yet."""
    a = ctx.spec.against
    path = None if a == "base" else ctx.row.start if a == "start" else ctx.run_dir / a
    if path == ctx.row.artifact or (path is not None and not (path / "artifact.json").is_file()):
        return False, None
    return True, path


def _win_rate(models: Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.evaluation.compare import compare_policies
    from align.evaluation.judges import RewardJudge

    rival, against = _against(ctx)
    if ctx.judge is None or ctx.data is None or not rival:
        return {}, None  # nothing judges yet (the rm stage comes later), no prompts, or nothing to compare with
    judge = RewardJudge(models.get(ctx.judge, "reward"), models.tok)
    prompts, gen = prompts_of(ctx), ctx.spec.generation
    m, _ = compare_policies(prompts, models.completions(ctx.row.artifact, prompts, gen),
                            models.completions(against, prompts, gen), judge=judge, n_samples=0)
    return {"win_rate": m["win_rate"], "reward": m["reward"], "reward_against": m["reward_start"],
            "response_length": m["response_length"], "response_length_against": m["response_length_start"],
            "eos_rate": m["eos_rate"]}, None


def _llm_judge(models: Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.evaluation.compare import compare_policies
    from align.evaluation.judges import LLMJudge

    rival, against = _against(ctx)
    if not rival:
        return {}, None
    judge = LLMJudge(*models.named(ctx.spec.judge))
    prompts, gen = prompts_of(ctx), ctx.spec.generation
    m, _ = compare_policies(prompts, models.completions(ctx.row.artifact, prompts, gen),
                            models.completions(against, prompts, gen), judge=judge, n_samples=0)
    return {"llm_win_rate": m["win_rate"], "llm_ties": m["ties"], "llm_first_position": m["first_position"]}, None


def _kl(models: Models, ctx: HookContext) -> tuple[dict[str, float], None]:
    from align.evaluation.compare import kl_sampling, sampled_kl

    if ctx.row.artifact is None:
        return {}, None  # the base model is its own reference
    prompts, gen = prompts_of(ctx), ctx.spec.generation
    kl = sampled_kl(models.get(ctx.row.artifact), models.get(ctx.row.start), models.tok,
                    models.completions(ctx.row.artifact, prompts, kl_sampling(gen)), gen)
    return {"kl": kl}, None


def _samples(models: Models, ctx: HookContext) -> tuple[dict[str, float], list[dict]]:
    from align.evaluation.compare import compare_policies, sample_table
    from align.evaluation.judges import RewardJudge

    prompts, gen = prompts_of(ctx, default=8), ctx.spec.generation
    ours = models.completions(ctx.row.artifact, prompts, gen)
    if ctx.row.artifact is None:
        return {}, sample_table(prompts, ours)
    judge = RewardJudge(models.get(ctx.judge, "reward"), models.tok) if ctx.judge is not None else None
    _, table = compare_policies(prompts, ours, models.completions(ctx.row.start, prompts, gen), judge=judge,
                                n_samples=len(prompts))
    return {}, table


HOOKS: dict[str, Hook] = {
    "rm_accuracy": Hook(_rm_accuracy, "rankings", "reward", ("rm_accuracy", "rm_top1", "rm_ece")),
    "perplexity": Hook(_perplexity, "text", "causal_lm", ("perplexity",)),  # + perplexity_increase (table.py)
    "compliance": Hook(_compliance, "compliance", "causal_lm",  # each rate with its 95% interval and n
                       tuple(f"{rate}{part}" for rate in ("refusal_rate", "over_refusal", "ordinary_refusal")
                             for part in ("", ".lower", ".upper", ".n")), extra="compliance", work="generation"),
    "win_rate": Hook(_win_rate, "prompts", "causal_lm", ("win_rate", "reward", "reward_against", "response_length",
                                                         "response_length_against", "eos_rate"),
                     judged=("win_rate", "reward", "reward_against"), work="generation, judged"),
    "llm_judge": Hook(_llm_judge, "prompts", "causal_lm", ("llm_win_rate", "llm_ties", "llm_first_position"),
                      judged=("llm_win_rate",), work="generation, judged"),
    "kl": Hook(_kl, "prompts", "causal_lm", ("kl",), work="generation"),
    "samples": Hook(_samples, "prompts", "causal_lm", (), extra="samples", work="generation"),
}
"""Every built-in hook; `align.recipe` validates recipes (hook names, gates) against it, the docs list the same."""
