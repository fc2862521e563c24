"""The `align` command.

    align run recipes/quickstart.yaml [KEY=VALUE ...] [--force STAGE] [--from|--only STAGE] [--dry-run]
    align runs                                     # run folders and their stages
    align validate recipes/quickstart.yaml [overrides ...]
    align data check reward_data/rankings/train.jsonl

User errors print as one short message and exit 2; `--debug` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from align.errors import AlignError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # overrides may follow flags (`run r.yaml --dry-run a.b=1`), which argparse leaves unparsed
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.debug)
    try:
        return args.func(args)
    except AlignError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align", description="Staged RLHF recipes: SFT -> RM -> PPO/DPO.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a recipe's stages (finished, unchanged stages are reused)")
    run.add_argument("recipe")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="override a recipe key by its dotted path, e.g. stages.sft.learning_rate=1e-4")
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="retrain STAGE even if unchanged")
    run.add_argument("--from", dest="start", metavar="STAGE", help="retrain STAGE and every stage after it")
    run.add_argument("--only", metavar="STAGE", help="run only STAGE (the stage it starts from must be finished)")
    run.add_argument("--dry-run", action="store_true", help="print which stages would run, resume or be reused")
    run.set_defaults(func=_run)

    runs = sub.add_parser("runs", help="list run folders and the status of their stages")
    runs.add_argument("root", nargs="?", default="runs", help="folder holding run folders (default: runs)")
    runs.set_defaults(func=_runs)

    validate = sub.add_parser("validate", help="check a recipe (keys, types, stage order, data files) without training")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    validate.set_defaults(func=_validate)

    data = sub.add_parser("data", help="work with data files").add_subparsers(required=True, metavar="ACTION")
    check = data.add_parser("check", help="list every bad line of a rankings file (exit 2 if any), else counts")
    check.add_argument("file")
    check.set_defaults(func=_data_check)
    return parser


def _run(args: argparse.Namespace) -> int:
    from align.pipeline import plan, run_pipeline
    from align.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    unknown = set(args.force) - {s.name for s in recipe.stages}
    if unknown:
        raise AlignError(f"--force names no stage of this recipe: {', '.join(sorted(unknown))}")
    if args.dry_run:
        for step in plan(recipe, tuple(args.force), args.start, args.only):
            print(f"{step.stage.name:<12} {step.action:<7} {step.reason}")
        return 0
    run_pipeline(recipe, tuple(args.force), args.start, args.only)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from align.runs import list_runs

    found = list_runs(Path(args.root))
    if not found:
        print(f"no runs under {args.root}/")
    for run in found:
        print(f"{run['folder']}  (recipe {run.get('recipe')}, updated {run.get('updated_at', '?')})")
        for name, st in run.get("stages", {}).items():
            when = st.get("finished_at") or st.get("started_at") or ""
            print(f"  {name:<12} {st.get('status', 'not run'):<9} {when}  {st.get('error', '')}".rstrip())
    return 0


def _validate(args: argparse.Namespace) -> int:
    from align.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    chain = " -> ".join(f"{s.name} ({s.kind}, from {s.init})" for s in recipe.stages)
    print(f"{args.recipe}: ok. model {recipe.model.name} ({recipe.model.adapter}); stages: {chain}; "
          f"run folder {recipe.run_dir}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from align.rankings import expand_pairs, scan_file

    good, bad = scan_file(args.file)
    if bad:
        n = len(bad)
        raise AlignError(f"{args.file}: {n} bad record{'s' * (n > 1)} ({len(good)} good)", bad)
    print(f"{args.file}: ok. {len(good)} records, {sum(len(r.responses) for r in good)} responses, "
          f"{sum(len(expand_pairs(r)) for r in good)} ranked pairs")
    return 0


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # per-step metrics: the Trainer's progress bar shows them
        handler.addFilter(lambda record: record.name != "align.metrics")
    if not debug:
        # library chatter hides align's own messages; --debug brings it back
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("WANDB_SILENT", "true")
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("transformers", "datasets", "peft", "trl", "httpx", "wandb"):
            logging.getLogger(name).setLevel(logging.ERROR)
