"""What the benchmark scripts share (imported by them, not run): the model and data they use, one align
stage run through a recipe as a user runs it, and one benchmark run per child process so that each
run's peak RSS is its own (`report` in the child, `spawn` in the parent).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HH = SHARED / "hh-rlhf-harmless-base" / "test_first80.jsonl"
MODEL = "smollm2-135m-instruct"
RESULT = "RESULT "
# TRL's (transformers') default schedule, given to align's stages where the harness compares them with a plain
# TRL script, so that both sides step the same learning rates (align's own default: 3% warm-up, cosine)
TRL_SCHEDULE = {"warmup_ratio": 0.0, "lr_scheduler": "linear"}
PEERS = ("defaults", "fp32")


def peer_precision(peer: str) -> dict[str, bool]:
    """The TRL config fields of a peer's precision: "defaults" keeps TRL's (bf16 autocast unless fp16, on CPU
    too); "fp32" is TRL's defaults with `bf16=False`, the one change a user makes where bf16 is slower."""
    return {} if peer == "defaults" else {"bf16": False}


def run_stage(work: Path, name: str, data: dict[str, Any], stage: dict[str, Any]) -> dict:
    """One align stage (`stage`: its recipe fields, `kind` included) on `data` (the recipe's data section),
    written as a recipe under `work` and run by `run_pipeline`; returns the stage's metrics."""
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    stage = {"name": stage["kind"], **stage}
    recipe = work / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({"name": name, "model": {"name": MODEL}, "data": data, "tracking": "none",
                                      "output_dir": str(work / name), "stages": [stage]}, sort_keys=False))
    return run_pipeline(load_recipe(recipe))[stage["name"]]


def fp32_model(trainer: Any) -> Any:
    """A trained TRL trainer's model without accelerate's autocast (the forward wrapper and the trainer's own
    autocast contexts), so that a peer trained under TRL's default bf16 autocast is evaluated in fp32, as
    align's models are: the same precision on both sides, and no slow bf16 on CPUs without bf16 instructions."""
    trainer.accelerator.native_amp = False
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def report(out: dict) -> None:
    """In a child: print the run's result for `spawn`, with the process's peak RSS unless already taken, and
    its system time and minor page faults (large tensors freed and allocated again each step show there)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    out.setdefault("peak_rss_gb", peak_rss_gb())
    out |= {"sys_seconds": use.ru_stime, "user_seconds": use.ru_utime, "minor_faults": use.ru_minflt}
    print(RESULT + json.dumps(out), flush=True)


def spawn(argv: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `python argv...` in a fresh process and return the dict its `report` printed."""
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        raise RuntimeError(f"`{' '.join(argv)}` failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(line[len(RESULT):])
