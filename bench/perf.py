"""Performance harness: each align stage against the plain-library script a user would write instead.

    . .venv/bin/activate && python bench/perf.py                  # all four pairs
    python bench/perf.py --stages sft,rm --steps 4                 # a subset, fewer steps
    python bench/perf.py --peer defaults                           # TRL's bf16 default even where bf16 is slow
    python bench/perf.py --profile sft                             # top-15 ops by self CPU time of align's stage

Per stage, one run of align's stage and one of its peer, each in a fresh process (so its peak RSS is
its own), one after the other in this order, on the same model (SmolLM2-135M-Instruct, LoRA r16 alpha 32
on all linear layers), data, steps, batch (4), max length (256) and learning rate:
  sft  align's sft stage vs TRL `SFTTrainer` on reward_data/sft (bench/sft.py)
  rm   align's rm stage vs TRL `RewardTrainer` on hh-rlhf pairs (bench/rm.py)
  dpo  align's dpo stage vs TRL `DPOTrainer` on hh-rlhf pairs, then align with `precompute_ref` (bench/dpo.py)
  ppo  align's ppo stage vs TRL 1.12's `trl.experimental.ppo.PPOTrainer` from the SFT and RM artifacts of
       recipes/quickstart-ppo.yaml (bench/ppo.py); TRL 1.12 goes to /tmp/trl112 (`pip install --no-deps
       --target /tmp/trl112 trl==1.12.0`, run by the harness when missing) and only the peer's process sees it
The peers keep TRL's defaults for everything the comparison does not fix (gradient checkpointing, and on CPU
too bf16 autocast), except the precision of `--peer`: "auto" keeps TRL's bf16 default where a bf16 matmul is
at least as fast as fp32 (GPUs, CPUs with AMX) and sets `bf16=False` where it is slower (on the project's
CPU, without bf16 instructions, about 200x slower: TRL's default there trains at 2-5 tokens/s,
bench/README.md), so the peer is the script a user keeps. align's stages get TRL's learning-rate schedule
(no warm-up, linear decay; align's own default is 3% warm-up, cosine), so both sides take the same optimizer
steps, and the trained peers are evaluated in fp32 like align's models (accelerate's autocast removed after
training). Tokens/s is counted the same way on both sides of a pair: non-padding tokens of the trained
sequences per second of training (`trainer.train()`), from TRL's own counter where TRL trains (sft, dpo),
align's equivalent count for rm; for ppo, generated completion tokens (up to the first EOS) per second of
the whole PPO steps (generation, scoring, updates).

% FLOP limit = tokens/s x FLOPs per token / the fp32 GFLOP/s of a 2048x2048 matmul measured at the start
(bf16 at 1024x1024, for "auto"; best of up to 5, this process's torch threads, which the runs inherit).
FLOPs per token, N = the model's parameters: LoRA training 4N (forward 2N + input gradients 2N; no weight
gradients for frozen weights); dpo adds the reference's 2N forward (6N), except with precompute_ref, whose
reference pass runs before training and is not timed (4N); ppo per position (prompt and completion tokens; the
ratio column still compares completion tokens/s): generation 2N (prefill and decoding) + four scoring forwards
(policy, reference, critic, reward model) 8N + ppo_epochs x (policy and critic updates, 4N each), 26N at 2
epochs. The peers add what TRL's defaults do: gradient checkpointing runs the trained model's forward again
(+2N: sft and rm 6N, dpo 8N); TRL 1.12's PPO trains its whole critic (6N an update, 30N at 2 epochs; a lower
bound, its policy's recomputation not counted). The table's "bound" is the peer's FLOPs per token over
align's: the ratio reached when both run their matmuls at the same rate.
Prints a markdown table for bench/README.md with the date, the machine and the command line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import MODEL, PEERS, ROOT, report, spawn

STAGES = ("sft", "rm", "dpo", "ppo")
# per stage: default steps (--steps overrides), learning rate (the same on both sides), held-out examples
# (few: with `--peer defaults` on a CPU without bf16 instructions these steps took 90 minutes, bench/README.md)
SETTINGS = {"sft": {"steps": 4, "lr": 3e-4, "eval": 0}, "rm": {"steps": 3, "lr": 3e-4, "eval": 40},
            "dpo": {"steps": 3, "lr": 5e-4, "eval": 24}, "ppo": {"steps": 3, "lr": None, "eval": 16}}
RUNS = {"sft": [("align", "align sft"), ("peer", "TRL SFTTrainer")],
        "rm": [("align", "align rm"), ("peer", "TRL RewardTrainer")],
        "dpo": [("align", "align dpo"), ("peer", "TRL DPOTrainer"), ("align-precompute", "align dpo precompute_ref")],
        "ppo": [("align", "align ppo"), ("peer", "TRL 1.12 PPOTrainer")]}
PEER_LINE = {"defaults": "TRL's defaults (bf16 autocast and gradient checkpointing, on CPU too)",
             "fp32": "TRL's defaults with `bf16=False` (gradient checkpointing still on)"}
SELF = str(Path(__file__).resolve())
PPO_RECIPE = "recipes/quickstart-ppo.yaml"
TRL112 = Path("/tmp/trl112")
INSTALL_TRL112 = f"{sys.executable} -m pip install --no-deps --target {TRL112} trl==1.12.0"


def settings(stage: str, steps: int | None, max_eval: int | None = None, peer: str = "fp32") -> argparse.Namespace:
    """The arguments the stage's bench module reads (bench/sft.py, rm.py, dpo.py, ppo.py)."""
    s = SETTINGS[stage]
    n = steps or s["steps"]
    held = s["eval"] if max_eval is None else min(s["eval"], max_eval)
    return argparse.Namespace(steps=n, batch=4, max_length=256, lr=s["lr"], train=n * 4, eval=held,
                              recipe=PPO_RECIPE, peer=peer)


def flops_per_token(stage: str, side: str, result: dict) -> int:
    """FLOPs per counted token in units of N (see the module docstring). The peers keep TRL's gradient
    checkpointing, which runs the trained model's forward twice (+2N); TRL 1.12's PPO trains its whole critic."""
    peer = 2 if side == "peer" else 0
    if stage == "dpo":
        return 4 if side == "align-precompute" else 6 + peer
    if stage == "ppo":  # per position (prompt + completion token), see flop_fraction; peer: no recompute counted
        return 2 + 8 + (8 + peer) * result.get("ppo_epochs", 2)
    return 4 + peer


def flop_fraction(r: dict, n_params: int, fp32_gflops: float) -> float:
    """% of the fp32 matmul limit: FLOPs done per second of training over the measured matmul rate. PPO's
    work is per position (prompt and completion tokens) rather than per counted completion token."""
    done = r.get("positions", r["tokens"]) * flops_per_token(r["stage"], r["side"], r) * n_params
    return 100 * done / r["train_seconds"] / (fp32_gflops * 1e9)


def machine() -> list[str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0.0)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
            f"- machine: nproc {len(os.sched_getaffinity(0))}, CPU {cpu}, {mem:.0f} GB RAM, GPU {gpu}; "
            f"load average at start {load}",
            f"- torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}); Python {platform.python_version()}"]


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5, budget_s: float = 5.0) -> float:
    """Best-of-`reps` GFLOP/s of an n x n matmul (2 n^3 FLOPs) with this process's torch threads; fewer
    repetitions once `budget_s` is spent (bf16 can be slow on CPUs without bf16 instructions)."""
    x, y = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    best, spent = float("inf"), 0.0
    for i in range(reps + 1):  # the first is a warm-up, unless it alone used the budget (bf16 here: ~1 min)
        start = time.perf_counter()
        x @ y
        took = time.perf_counter() - start
        spent += took
        if i > 0 or spent > budget_s:
            best = min(best, took)
        if spent > budget_s:
            break
    return 2 * n**3 / best / 1e9


def parameter_count() -> int:
    """N: the model's parameters (tied input and output embeddings once), counted without loading weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from align.models import resolve_model

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model(MODEL)))
    return sum(p.numel() for p in model.parameters())


def ppo_env() -> tuple[dict[str, str] | None, str]:
    """The peer's environment (trl 1.12 first on PYTHONPATH), installing trl 1.12 if missing; or None and why."""
    run_dir = ROOT / "runs" / "quickstart-ppo"
    if not all((run_dir / s / "artifact.json").exists() for s in ("sft", "rm")):
        return None, (f"PPO skipped: the SFT and RM artifacts of {PPO_RECIPE} are missing; build them with "
                      f"`align run {PPO_RECIPE} --only sft && align run {PPO_RECIPE} --only rm`")
    if not (TRL112 / "trl" / "experimental" / "ppo").is_dir():
        print(f"installing trl 1.12 for the PPO peer: {INSTALL_TRL112}", file=sys.stderr, flush=True)
        done = subprocess.run(shlex.split(INSTALL_TRL112), capture_output=True, text=True)
        if done.returncode != 0:
            return None, (f"PPO skipped: trl 1.12 is not in {TRL112} and installing it failed "
                          f"({done.stderr.strip().splitlines()[-1:]}); run `{INSTALL_TRL112}`")
    path = os.pathsep.join(filter(None, [str(TRL112), os.environ.get("PYTHONPATH")]))
    return os.environ | {"PYTHONPATH": path}, ""


def run_pairs(stages: list[str], steps: int | None, peer: str) -> tuple[list[dict], list[str]]:
    """Every run of every stage, in order, each in its own process; failures are rows too."""
    rows, notes = [], []
    for stage in stages:
        env = None
        if stage == "ppo":
            env, why = ppo_env()
            if env is None:
                print(why, file=sys.stderr, flush=True)
                notes.append(why)
                continue
        for side, label in RUNS[stage]:
            argv = [SELF, "--child", f"{stage}:{side}", "--peer", peer] + (["--steps", str(steps)] if steps else [])
            start = time.perf_counter()
            try:
                r = spawn(argv, env if side == "peer" else None)
            except RuntimeError as e:
                r = {"error": str(e)}
            r |= {"stage": stage, "side": side, "label": label, "wall_seconds": time.perf_counter() - start}
            rows.append(r)
            done = f"{r['tokens'] / r['train_seconds']:.0f} tokens/s" if "error" not in r else "FAILED"
            print(f"[{stage} {label}] {r['wall_seconds']:.0f} s, {done}", file=sys.stderr, flush=True)
            if "error" in r:
                print(r["error"], file=sys.stderr, flush=True)
    return rows, notes


def table(rows: list[dict], n_params: int, fp32_gflops: float) -> list[str]:
    """One line per run. "bound": the peer's FLOPs per token over the run's, the ratio reached if both ran their
    matmuls at the same rate on equally padded batches (where both are matmul-bound, the work a run skips,
    padding included, is its lever)."""
    out = ["| stage | run | tokens/s | ratio to peer | bound | FLOPs/token | peak RSS GB | key metric | % FLOP limit |",
           "|---|---|---|---|---|---|---|---|---|"]
    ok = [r for r in rows if "error" not in r]
    peer = {r["stage"]: r for r in ok if r["side"] == "peer"}
    for r in rows:
        if "error" in r:
            out.append(f"| {r['stage']} | {r['label']} | failed | | | | | | |")
            continue
        tps, p, own = r["tokens"] / r["train_seconds"], peer.get(r["stage"]), flops_per_token(r["stage"], r["side"], r)
        ratio = f"{tps * p['train_seconds'] / p['tokens']:.2f}" if p else "n/a"
        bound = f"{flops_per_token(r['stage'], 'peer', p) / own:.2f}" if p and r["side"] != "peer" else ""
        unit = "position" if "positions" in r else "token"
        out.append(f"| {r['stage']} | {r['label']} | {tps:.1f} | {ratio} | {bound} | {own}N/{unit} | "
                   f"{r['peak_rss_gb']:.2f} | {r['metric']}={r['value']:.4f} | "
                   f"{flop_fraction(r, n_params, fp32_gflops):.1f}% |")
    return out


def details(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if "error" in r:
            lines = r["error"].splitlines() or [""]
            out.append(f"- {r['stage']} {r['label']}: FAILED: {lines[0]} ... {lines[-1]}")
            continue
        out.append(f"- {r['stage']} {r['label']}: {r['tokens']:.0f} tokens in {r['train_seconds']:.1f} s of training"
                   + (f" ({r['positions']:.0f} positions, {r['positions'] / r['train_seconds']:.1f}/s)"
                      if "positions" in r else "")
                   + f"; process {r['wall_seconds']:.0f} s (user {r['user_seconds']:.0f} s, system "
                   f"{r['sys_seconds']:.0f} s, {r['minor_faults'] / 1e6:.1f}M minor page faults)"
                   + (f"; {r['detail']}" if r.get("detail") else ""))
    return out


def child(spec: str, steps: int | None, peer: str) -> None:
    stage, side = spec.split(":")
    with tempfile.TemporaryDirectory() as tmp:
        out = importlib.import_module(stage).perf(side, settings(stage, steps, peer=peer), Path(tmp))
    report(out)


def profile(stage: str, steps: int | None) -> None:
    """Align's side of `stage` for a few steps, its training (`train()`) under torch.profiler: top 15 by self CPU."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    if stage == "ppo":
        from align.stages.ppo import PPOTrainer as owner
    else:
        from transformers import Trainer as owner
    original, found = owner.train, []

    def train(self, *args, **kwargs):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            result = original(self, *args, **kwargs)
        found.append(prof)
        return result

    owner.train = train
    a = settings(stage, steps or (2 if stage == "ppo" else 3), max_eval=8)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            importlib.import_module(stage).perf("align", a, Path(tmp))
    finally:
        owner.train = original
    print(f"align {stage}, {a.steps} steps x batch {a.batch}, max_length {a.max_length}, {torch.get_num_threads()} "
          f"threads, {time.strftime('%Y-%m-%d')}: top 15 ops by self CPU time in train()\n")
    print(found[0].key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def command_line() -> str:
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + "python bench/perf.py " + shlex.join(sys.argv[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated, from " + ",".join(STAGES))
    p.add_argument("--steps", type=int, help="training steps of every run (default per stage: "
                   + ", ".join(f"{k} {v['steps']}" for k, v in SETTINGS.items()) + ")")
    p.add_argument("--peer", choices=("auto", *PEERS), default="auto",
                   help="the TRL peers' precision: defaults (TRL's: bf16 autocast, on CPU too) or fp32 (bf16=False); "
                        "auto: defaults where a bf16 matmul is at least as fast as fp32 here, else fp32")
    p.add_argument("--profile", choices=STAGES, help="profile align's stage instead of running the pairs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    os.chdir(ROOT)  # recipes and data paths are relative to the repository root
    if a.child:
        return child(a.child, a.steps, a.peer)
    if a.profile:
        return profile(a.profile, a.steps)
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    if unknown := set(stages) - set(STAGES):
        p.error(f"unknown stages {sorted(unknown)}; choose from {','.join(STAGES)}")
    started, header = time.perf_counter(), machine()
    # bf16 at 1024^2: on a CPU without bf16 instructions one 2048^2 product takes a minute
    gflops = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16, n=1024)}
    peer = a.peer if a.peer != "auto" else "defaults" if gflops["bf16"] >= gflops["fp32"] else "fp32"
    n_params = parameter_count()
    rows, notes = run_pairs(stages, a.steps, peer)
    print("\n".join([f"```bash\n{command_line()}\n```", "", *header,
                     f"- matmul: fp32 {gflops['fp32']:.1f} GFLOP/s at 2048x2048 (the FLOP limit below), bf16 "
                     f"{gflops['bf16']:.1f} GFLOP/s at 1024x1024; N = {n_params / 1e6:.1f}M parameters",
                     f"- TRL peers: {PEER_LINE[peer]} (`--peer {a.peer}`)",
                     "- sft, rm, dpo: batch 4, max_length 256; ppo: the batch sizes and lengths of "
                     f"{PPO_RECIPE}; steps: " + ", ".join(f"{s} {settings(s, a.steps).steps}" for s in stages), "",
                     *table(rows, n_params, gflops["fp32"]), "", *details(rows), *[f"- {x}" for x in notes],
                     f"\nharness wall time {time.perf_counter() - started:.0f} s"]))
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
