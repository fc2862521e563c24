"""The `align` command.

    align run recipes/quickstart.yaml [stages.sft.learning_rate=1e-4 ...] [--force sft]
    align validate recipes/quickstart.yaml [overrides ...]

User errors print as one short message and exit 2; `--debug` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from align.errors import AlignError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
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
    run.set_defaults(func=_run)

    validate = sub.add_parser("validate", help="check a recipe (keys, types, stage order, data files) without training")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    validate.set_defaults(func=_validate)
    return parser


def _run(args: argparse.Namespace) -> int:
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    unknown = set(args.force) - {s.name for s in recipe.stages}
    if unknown:
        raise AlignError(f"--force names no stage of this recipe: {', '.join(sorted(unknown))}")
    run_pipeline(recipe, force=tuple(args.force))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from align.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    chain = " -> ".join(f"{s.name} ({s.kind}, from {s.init})" for s in recipe.stages)
    print(f"{args.recipe}: ok. model {recipe.model.name} ({recipe.model.adapter}); stages: {chain}; "
          f"run folder {recipe.run_dir}")
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
