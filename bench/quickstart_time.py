"""Where the quickstart's time goes: `align run` on a recipe with a timer around every stage, every evaluation
hook of every row, every model load, the one-time conversion and the report (not a test).

    python bench/quickstart_time.py                                   # recipes/quickstart.yaml, empty cache
    python bench/quickstart_time.py recipes/quickstart-ppo.yaml --keep-cache

The run goes into a fresh temporary output folder, and (unless --keep-cache) into an empty temporary
$ALIGN_CACHE, so the embedded model's conversion is counted as a new user meets it. The timers wrap the
functions the pipeline calls (in this process: the same code path as the `align` console script), so
a hook's time includes the model loads it triggers; those loads are also listed on their own. The last
lines are the table for bench/README.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMES: dict[str, float] = collections.defaultdict(float)
COUNTS: collections.Counter = collections.Counter()


def timed(label, f):
    """`f` with its wall time added to TIMES[label(*args)]."""
    @functools.wraps(f)
    def wrapper(*a, **k):
        start = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            key = label(*a, **k)
            TIMES[key] += time.perf_counter() - start
            COUNTS[key] += 1
    return wrapper


def instrument() -> None:
    import align.evaluation.hooks as hooks
    import align.models as models
    import align.pipeline as pipeline

    for name, hook in list(hooks.HOOKS.items()):
        hooks.HOOKS[name] = dataclasses.replace(
            hook, run=timed(lambda m, ctx, name=name: f"eval {ctx.row.name}: {name}", hook.run))
    pipeline._run_stage = timed(lambda recipe, step, tracker: f"stage {step.stage.name}", pipeline._run_stage)
    pipeline._report = timed(lambda *a, **k: "report", pipeline._report)
    models._converted = timed(lambda *a, **k: "one-time conversion (GGUF -> safetensors)", models._converted)
    for fn in ("load_model", "load_artifact"):
        setattr(models, fn, timed(lambda *a, fn=fn, **k: f"  of which model loads ({fn})", getattr(models, fn)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "quickstart.yaml"))
    p.add_argument("overrides", nargs="*", help="recipe overrides, as for align run")
    p.add_argument("--keep-cache", action="store_true", help="use the existing $ALIGN_CACHE (no conversion)")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quickstart-time-"))
    if not a.keep_cache:
        os.environ["ALIGN_CACHE"] = str(work / "cache")
    import torch

    instrument()
    from align.cli import main as align_main

    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    start = time.perf_counter()
    code = align_main(["run", a.recipe, f"output_dir={work / 'run'}", *a.overrides])
    total = time.perf_counter() - start
    print(f"\nexit {code}; load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| step | seconds | share |\n|---|---|---|")
    for key, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"| {key}{f' (x{COUNTS[key]})' if COUNTS[key] > 1 else ''} | {seconds:.1f} | {seconds / total:.0%} |")
    print(f"| **total** (`align run`, in process) | {total:.1f} | 100% |")
    sys.exit(code)


if __name__ == "__main__":
    main()
