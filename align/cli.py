"""The `align` command.

    align run recipes/quickstart.yaml [KEY=VALUE ...] [--force STAGE] [--from|--only STAGE] [--dry-run]
              [--num-processes N] [--accelerate-config FILE]      # data-parallel: docs/scaling.md
    align runs                                     # run folders and their stages
    align validate recipes/quickstart.yaml [overrides ...]
    align data check reward_data/rankings/train.jsonl
    align report runs/quickstart                   # rebuild report.md and report.html from the run folder
    align eval runs/quickstart/dpo --hook compliance --data prompts.csv [--json out.json]
    align chat runs/quickstart/dpo                 # talk to an artifact in the terminal (align/chat.py)
    align generate runs/quickstart/dpo --prompts prompts.jsonl --out answers.jsonl
    align export runs/quickstart/dpo --out exported/dpo --merge [--push-to-hub REPO_ID]   (align/export.py)

The commands that load models (run, eval, chat, generate, export) take `--verbose` / `-v`: the libraries'
own progress bars, warnings and the Trainer's metric dicts, off by default (`align.console`).

User errors (`AlignError`: bad recipes, data, paths, arguments) print as one short message with its hint
and exit 2. Anything else is a bug in align: one line saying so, exit 1, and `--debug` shows the traceback
to report. Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from align.errors import AlignError
from align.paths import cache_root, looks_local, output_file


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # what `align.launch` hands each process
    # overrides may follow flags (`run r.yaml --dry-run a.b=1`), which argparse leaves unparsed
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.debug, args.debug or getattr(args, "verbose", False))
    try:
        _refuse_empty(args)
        if getattr(args, "loads_models", False):
            check_cache_folder()
        return args.func(args)
    except AlignError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `align runs | head`: the reader left; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug, not the user's input: say so in one line; --debug gives the traceback
        if args.debug:
            raise
        print(f"internal error: {type(e).__name__}: {str(e)[:300]}\n  hint: this is a bug in align, not in your "
              "input; rerun with --debug for the traceback and report it", file=sys.stderr)
        return 1


WANDB_MODES = ("online", "offline", "disabled", "dryrun", "shared", "run")  # what wandb.init accepts as its mode
POSITIONAL = ("recipe", "file", "run_dir", "artifact", "root")
NAMED = ("prompts", "out", "json", "data", "model", "judge", "against", "accelerate_config", "hook")


def _refuse_empty(args: argparse.Namespace) -> None:
    """An empty argument ('' from an unset shell variable) is refused: as a path it would mean the current folder
    (`align data check ""` read every file there)."""
    for name in POSITIONAL + NAMED:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            flag = name.upper() if name in POSITIONAL else "--" + name.replace("_", "-")
            raise AlignError(f"{flag} is empty", hint="give a value (an unset shell variable?)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align", description="Staged RLHF recipes: SFT -> RM -> PPO/DPO.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library logs (implies --verbose)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a recipe's stages (finished, unchanged stages are reused)")
    run.add_argument("recipe")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="override a recipe key by its dotted path, e.g. stages.sft.learning_rate=1e-4")
    run.add_argument("--force", action="append", default=[], metavar="STAGE", help="retrain STAGE even if unchanged")
    which = run.add_mutually_exclusive_group()  # --from retrains later stages, which --only would skip
    which.add_argument("--from", dest="start", metavar="STAGE", help="retrain STAGE and every stage after it")
    which.add_argument("--only", metavar="STAGE", help="run only STAGE (the stage it starts from must be finished)")
    run.add_argument("--dry-run", action="store_true", help="print which stages would run, resume or be reused")
    run.add_argument("--num-processes", type=int, metavar="N",
                     help="run data-parallel in N processes (torchrun; GPUs or CPUs); see docs/scaling.md")
    run.add_argument("--accelerate-config", metavar="FILE",
                     help="launch through `accelerate launch` with this config (recipes/accelerate/: DDP, FSDP, "
                          "DeepSpeed, several machines)")
    run.set_defaults(func=_run)

    runs = sub.add_parser("runs", help="list run folders and the status of their stages")
    runs.add_argument("root", nargs="?", help="folder holding run folders (default: runs)")
    runs.set_defaults(func=_runs)

    validate = sub.add_parser("validate", help="check a recipe (keys, types, stage order, data files) without training")
    validate.add_argument("recipe")
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    validate.set_defaults(func=_validate)

    report = sub.add_parser("report", help="rebuild a run folder's report.md and report.html from the folder alone")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/quickstart")
    report.set_defaults(func=_report)

    ev = sub.add_parser("eval", help="run one evaluation hook on a stage artifact (or the base model)")
    ev.add_argument("artifact", metavar="ARTIFACT", help="a stage folder (runs/quickstart/dpo), or 'base' with --model")
    ev.add_argument("--hook", required=True, help="rm_accuracy, win_rate, llm_judge, kl, perplexity, compliance, "
                                                  "samples, or module:function")
    ev.add_argument("--data", help="the hook's data file (rankings, prompts, labelled prompts, text); compliance also "
                                   "takes a benchmark: xstest, advbench, harmbench, strongreject")
    ev.add_argument("--model", help="base model name (for 'base', or to override the artifact's)")
    ev.add_argument("--against", default="base", help="win_rate, llm_judge: the other artifact folder, 'base' or "
                                                      "'start' (the model the artifact's stage started from)")
    ev.add_argument("--judge", help="win_rate / samples: the rm artifact that scores both; llm_judge: the judging "
                                    "model (hub id or folder)")
    ev.add_argument("--max-examples", type=int, help="use at most this many records")
    ev.add_argument("--classifier", choices=["rules", "judge"], default="rules", help="compliance: refusal detector")
    ev.add_argument("--max-new-tokens", type=int, default=96, help="generation length for generating hooks")
    ev.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0 = greedy)")
    ev.add_argument("--json", metavar="FILE", help="also write the full result (metrics, tables) as JSON")
    ev.set_defaults(func=_eval)

    data = sub.add_parser("data", help="work with data files").add_subparsers(required=True, metavar="ACTION")
    check = data.add_parser("check", help="list every bad line of a rankings file (exit 2 if any), else counts")
    check.add_argument("file")
    check.set_defaults(func=_data_check)

    from align import chat, export  # each command's parser and handler live in its own module

    chat.register(sub)  # chat, generate
    export.register(sub)
    for name in ("run", "eval", "chat", "generate", "export"):  # the commands that load models
        sub.choices[name].set_defaults(loads_models=True)
        sub.choices[name].add_argument("-v", "--verbose", action="store_true",
                                       help="show the libraries' own output: their progress bars (weights, "
                                            "datasets), the Trainer's metric dicts, warnings")
    return parser


def _run(args: argparse.Namespace) -> int:
    from align import launch
    from align.recipe import load_recipe
    from align.runs import check_stage_flags

    start = time.perf_counter()  # the wall time the final block reports: imports and loading count too
    recipe = load_recipe(args.recipe, args.overrides)
    check_stage_flags(recipe, args.force, args.start, args.only)
    if recipe.tracking.backend == "wandb" and os.environ.get("WANDB_MODE", "online") not in WANDB_MODES:
        raise AlignError(f"WANDB_MODE={os.environ['WANDB_MODE']} is not one of {', '.join(WANDB_MODES)}",
                         hint="fix or unset WANDB_MODE, or set tracking: none")
    if processes := launch.wanted(args, recipe):  # N processes each rerun this command (align/launch.py)
        return launch.relaunch(args.argv, *processes)
    from align.console import final_block, plan_line
    from align.distributed import is_main
    from align.evaluation.gates import GateFailed
    from align.pipeline import plan, run_pipeline  # not before: a launcher process never trains (imports cost ~5 s)

    if args.dry_run:
        for step in plan(recipe, tuple(args.force), args.start, args.only):
            print(plan_line(step.stage.name, step.action, step.reason))
        return 0
    try:
        run_pipeline(recipe, tuple(args.force), args.start, args.only)
    except GateFailed:  # the report was written: say where, and which gate failed, before the error
        if is_main():
            print(final_block(recipe.run_dir, time.perf_counter() - start), flush=True)
        raise
    if is_main():
        print(final_block(recipe.run_dir, time.perf_counter() - start))
    return 0


def _runs(args: argparse.Namespace) -> int:
    from align.runs import list_runs

    if args.root is not None and not Path(args.root).expanduser().is_dir():  # the default may not exist yet
        what = "is not a folder" if Path(args.root).expanduser().exists() else "does not exist"
        raise AlignError(f"{args.root} {what}", hint="give the folder holding run folders (default: runs)")
    root = args.root or "runs"
    found = list_runs(Path(root).expanduser())
    if not found:
        print(f"no runs under {root}/")
    for run in found:
        if run.get("unreadable"):
            print(f"{run['folder']}  unreadable: {run['unreadable']}")
            continue
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


def _report(args: argparse.Namespace) -> int:
    from align.report import write_report

    md, html = write_report(args.run_dir)
    print(f"wrote {html} and {md}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    _check_eval_args(args)  # before importing torch (seconds): a mistake is reported at once
    from align.evaluation.table import evaluate_artifact
    from align.schema import EvalSpec, GenerationSpec

    against = args.against if args.against in ("base", "start") else str(Path(args.against).expanduser().resolve())
    spec = EvalSpec(hook=args.hook, data=args.data, max_examples=args.max_examples, against=against,
                    classifier=args.classifier,
                    generation=GenerationSpec(max_new_tokens=args.max_new_tokens, temperature=args.temperature))
    result = evaluate_artifact(args.artifact, spec, args.model, args.judge)
    metrics = result["metrics"]
    for name, value in metrics.items():
        if "." in name and name.rsplit(".", 1)[0] in metrics:
            continue  # an interval bound or count, printed with its rate
        lo, hi, n = (metrics.get(f"{name}.{k}") for k in ("lower", "upper", "n"))
        text = f"{value:.4g}" if isinstance(value, float) else f"{value}"
        print(f"{name:<24} {text}" + (f"  95% CI [{lo:.3f}, {hi:.3f}]  n={n}" if lo is not None else ""))
    for row in (result.get("compliance") or {}).get("categories", []):
        print(f"  {row['label']:<9} {row['category']:<20} n={row['n']:<4} refused {row['refusal_rate']:.0%} "
              f"[{row['lower']:.0%}-{row['upper']:.0%}]")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2))
        except OSError as e:
            raise AlignError(f"cannot write {args.json}: {e.strerror}", hint="the results are printed above") from None
        print(f"wrote {args.json}")
    return 0


def _check_eval_args(args: argparse.Namespace) -> None:
    """Everything `align eval` can refuse before loading a model, so a mistake costs no evaluation."""
    import difflib

    from align.evaluation.hooks import HOOKS
    from align.evaluation.user_hooks import import_user_hook
    from align.schema import GenerationSpec
    from align.validator import flag_problems

    if ":" in args.hook:
        import_user_hook(args.hook)
    elif args.hook not in HOOKS:
        near = difflib.get_close_matches(args.hook, HOOKS, n=1)
        raise AlignError(f"--hook {args.hook}: not a built-in hook ({', '.join(HOOKS)}) nor 'module:function'",
                         hint=f"did you mean {near[0]}?" if near else None)
    flags = {n: getattr(args, n) for n in ("max_examples", "max_new_tokens", "temperature")}
    if problems := flag_problems(flags, GenerationSpec):
        raise AlignError("bad evaluation settings", problems)
    if args.data and looks_local(args.data) and not Path(args.data).expanduser().exists():
        raise AlignError(f"--data {args.data}: no such file", hint="paths are relative to the current folder")
    if args.json:
        args.json = str(output_file("--json", args.json, inputs={"the --data file": args.data}))


def check_cache_folder() -> None:
    """The cache folder (`paths.cache_root`: $ALIGN_CACHE, else ~/.cache/align) must be a folder align can write
    (converted models and tokenized data go there): checked before any command that loads a model works, so a
    bad setting or an unwritable home does not fail after a model conversion or halfway through a run."""
    import tempfile

    folder = cache_root()
    value = os.environ.get("ALIGN_CACHE")
    what = f"ALIGN_CACHE={value}" if value else f"the cache folder {folder} (ALIGN_CACHE is not set)"
    hint = "point ALIGN_CACHE at a writable folder" + (", or unset it (default ~/.cache/align)" if value else "")
    if folder.exists() and not folder.is_dir():
        raise AlignError(f"{what} is not a folder", hint=hint)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise AlignError(f"{what}: cannot write there ({e.strerror})", hint=hint) from None


def _data_check(args: argparse.Namespace) -> int:
    from align.rankings import expand_pairs, scan_file

    good, bad = scan_file(args.file)
    if bad:
        n = len(bad)
        raise AlignError(f"{args.file}: {n} bad record{'s' * (n > 1)} ({len(good)} good)", bad)
    print(f"{args.file}: ok. {len(good)} records, {sum(len(r.responses) for r in good)} responses, "
          f"{sum(len(expand_pairs(r)) for r in good)} ranked pairs")
    return 0


def _setup_logging(debug: bool, verbose: bool) -> None:
    from align.console import quiet_libraries

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # per-step metrics: the training bar shows them
        handler.addFilter(lambda record: record.name != "align.metrics")
    quiet_libraries(verbose)
    if not verbose:
        # library chatter hides align's own messages; --verbose (and --debug) bring it back
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        for name in ("transformers", "datasets", "peft", "trl", "httpx", "wandb"):
            logging.getLogger(name).setLevel(logging.ERROR)
