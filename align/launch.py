"""`align run --num-processes N [--accelerate-config FILE]`: run the same command as N data-parallel processes.

    align run recipes/quickstart.yaml --num-processes 8
        -> python -m torch.distributed.run --standalone --nproc_per_node 8 -m align run recipes/quickstart.yaml
    align run recipes/quickstart.yaml --accelerate-config recipes/accelerate/fsdp.yaml
        -> accelerate launch --config_file recipes/accelerate/fsdp.yaml -m align run recipes/quickstart.yaml

A recipe can ask for the same with `launch: {num_processes: 8, accelerate_config: ...}`; the flags win.
torchrun is the plain path (one machine, DDP; it also runs on CPUs, with gloo, where `accelerate launch
--cpu` starts a single process). An accelerate config adds FSDP, DeepSpeed and several machines
(`recipes/accelerate/`, `docs/scaling.md`).

The launched processes are the ones that train (`align.distributed`); this one waits for them. When one
fails, torchrun stops the others, and this process prints the error of the rank that failed FIRST, the
cause: its peers fail after it, on a lost connection, and their noise scrolls by above.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from align.distributed import ERROR_DIR_ENV, first_error
from align.errors import AlignError
from align.schema import LaunchSpec, Recipe
from align.validator import flag_problems

LAUNCH_FLAGS = ("--num-processes", "--accelerate-config")


def wanted(args: argparse.Namespace, recipe: Recipe) -> tuple[int, str | None] | None:
    """(processes, accelerate config) when this `align run` should start other processes, else None:
    never from inside a launched process, for a dry run, or for one process without a config."""
    if "LOCAL_RANK" in os.environ or args.dry_run:
        return None
    spec = getattr(recipe, "launch", None)
    # an explicit --num-processes 0 is a mistake to say, not a flag left unset
    n = args.num_processes if args.num_processes is not None else (spec.num_processes if spec else 1)
    config = args.accelerate_config or (spec.accelerate_config if spec else None)
    if problems := flag_problems({"num_processes": args.num_processes}, LaunchSpec):  # as the recipe key's range
        raise AlignError("bad launch settings", problems)
    if config and not Path(config).is_file():
        raise AlignError(f"accelerate config {config}: no such file",
                         hint="presets are in recipes/accelerate/ (see docs/scaling.md)")
    if config:
        refuse_sharded_ppo_checkpoints(recipe, config)
    return (n, config) if n > 1 or config else None


def refuse_sharded_ppo_checkpoints(recipe: Recipe, config: str) -> None:
    """PPO writes its checkpoints (`save_steps`) from rank 0's whole weights, which FSDP and DeepSpeed ZeRO-3
    shard: refused before any process starts, naming the stage and the fix (align/stages/ppo.py)."""
    preset = read_config(config)
    kind = str(preset.get("distributed_type", ""))
    deepspeed = preset.get("deepspeed_config")
    stage3 = kind == "DEEPSPEED" and isinstance(deepspeed, dict) and deepspeed.get("zero_stage") == 3
    for stage in recipe.stages:
        if stage.kind == "ppo" and stage.save_steps and (kind == "FSDP" or stage3):
            raise AlignError(f"stage {stage.name}: PPO checkpoints (save_steps: {stage.save_steps}) cannot be written "
                             f"under {config}, which shards the weights (FSDP / ZeRO-3)",
                             hint=f"set stages.{stage.name}.save_steps=0, or use recipes/accelerate/ddp.yaml or "
                                  "deepspeed-zero2.yaml")


def read_config(config: str) -> dict:
    """An accelerate config file as a mapping (as `accelerate launch` reads it), read safely; anything else is
    refused here, before any process starts, naming the file."""
    from align.yamlsafe import load_yaml

    try:
        text = Path(config).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not UTF-8 text"
        raise AlignError(f"accelerate config {config}: cannot read it ({why})",
                         hint="presets are in recipes/accelerate/ (see docs/scaling.md)") from None
    preset = load_yaml(text, f"accelerate config {config}")[0]
    if not isinstance(preset, dict):
        raise AlignError(f"accelerate config {config}: expected a mapping of accelerate settings, got "
                         f"{type(preset).__name__}", hint="presets are in recipes/accelerate/ (see docs/scaling.md)")
    return preset


def command(argv: list[str], num_processes: int, config: str | None) -> list[str]:
    """The launcher command line that runs `align` with `argv` (minus the launch flags) in every process."""
    rest = strip_launch_flags(argv)
    if config:
        # an explicit --num-processes overrides the config's num_processes (e.g. fewer GPUs on this machine)
        count = ["--num_processes", str(num_processes)] if num_processes > 1 else []
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, *count,
                "-m", "align", *rest]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(num_processes),
            "-m", "align", *rest]


def strip_launch_flags(argv: list[str]) -> list[str]:
    """`argv` without `--num-processes N` / `--accelerate-config FILE` (either `--flag value` or `--flag=value`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f + "=" for f in LAUNCH_FLAGS)):
            out.append(arg)
    return out


def relaunch(argv: list[str], num_processes: int, config: str | None) -> int:
    """Run `align` with `argv` in `num_processes` processes; their exit status, with the failing rank's error."""
    cmd = command(argv, num_processes, config)
    with tempfile.TemporaryDirectory(prefix="align-ranks-") as errors:
        env = {**os.environ, ERROR_DIR_ENV: errors, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to the launcher and the ranks alike
            rc = proc.wait()
            print("interrupted", file=sys.stderr)
            return 130
        if rc == 0:
            return 0
        cause = first_error(Path(errors))
    if cause is None:
        print(f"error: the launched processes failed (exit {rc}); see the output above and runs/<name>/logs/",
              file=sys.stderr)
        return rc
    print(f"error: rank {cause['rank']} failed (the other ranks were stopped): {cause['error']}", file=sys.stderr)
    return 2 if cause.get("user_error") else rc
