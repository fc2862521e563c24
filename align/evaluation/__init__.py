"""Evaluation: every number measured by sampling or scoring a model between stages, in one place.

    hooks.py     the hook table (name -> function, data kind, rows it measures), the built-in hooks, one row
    compare.py   a policy against another on the same prompts: samples, KL, and the win rate (one definition)
    judges.py    who decides a win: a reward model, or an LLM asked pairwise in both orders
    table.py     the run's rows (baseline, then each stage), their cache, their judges, `align eval`
    gates.py     a stage's `gate:` conditions on its metrics and its row

Pure metric functions are in `align.metrics`; prompt sets and their rates in `align.compliance`, the refusal
rules in `align.refusals`, public benchmarks in `align.benchmarks`. Stages do
not import this package: `align.pipeline` measures each stage's artifact after the stage.
"""
