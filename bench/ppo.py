"""PPO benchmark: align's ppo stage vs TRL 1.12's experimental PPOTrainer, side by side in one process.

    pip install --no-deps --target /tmp/trl112 trl==1.12.0       # the last TRL with trl.experimental.ppo
    align run recipes/quickstart-ppo.yaml --only sft && align run recipes/quickstart-ppo.yaml --only rm
    PYTHONPATH=/tmp/trl112 python bench/ppo.py --steps 6         # both trainers, same models/prompts/steps

Same SFT policy (LoRA on top), same reward model, same train and held-out prompts (the recipe's split),
same response length, temperature, rollout batch, minibatches, PPO epochs and learning rate. Reported per
trainer: held-out RM reward of the starting policy and after training, RM-judged win rate and KL to the
start (`align.evaluation.compare`, identical for both), and tokens/s of rollout generation and of the
rest of each step (scoring forwards + updates), split by timing the generation calls.
TRL runs in fp32 (`bf16=False`) unless `--peer defaults`.
Differences that remain (each trainer as shipped): align normalises RM scores on the first rollout batch
and trains a LoRA critic; TRL uses raw scores and trains the whole critic.
`perf` is the PPO pair of bench/perf.py (one trainer per process there).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import PEERS, peer_precision

from align.data import load_split, parse_prompt
from align.evaluation.compare import compare_policies, kl_sampling, sample, sampled_kl
from align.evaluation.judges import RewardJudge
from align.generation import adapters_disabled, prompt_ids
from align.models import load_artifact, load_model, load_tokenizer
from align.recipe import load_recipe
from align.stages import ppo
from align.stages.common import rm_reward


def run_align(recipe, stage, run_dir: Path, train: list, steps: int) -> tuple[object, dict]:
    spec = recipe.model
    tok = load_tokenizer(spec)
    policy = load_model(spec, "causal_lm", init=run_dir / "sft")
    value = ppo.value_model(spec, run_dir / "rm")
    rm = load_artifact(run_dir / "rm", spec)
    trainer = ppo.PPOTrainer(policy, value, tok, stage, len(train), recipe.seed)
    start = time.perf_counter()
    summary = trainer.train(train, rm_reward(rm, tok, stage.max_length, stage.eval_batch_size))
    total = time.perf_counter() - start  # the rest of a step, as for TRL below: scoring (RM included) + updates
    return policy, {"gen_seconds": summary["gen_seconds"], "train_seconds": total - summary["gen_seconds"],
                    "tokens": summary["rollout_tokens"], "prompt_tokens": summary["rollout_prompt_tokens"]}


def run_trl(recipe, stage, run_dir: Path, train: list, steps: int, out: Path, peer: str) -> tuple[object, dict]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as module

    spec, gen = recipe.model, stage.generation
    tok = load_tokenizer(spec)
    tok.padding_side = "left"
    policy = load_model(spec, "causal_lm", init=run_dir / "sft", trainable=False).requires_grad_(False)
    value = load_model(spec, "reward", init=run_dir / "rm", trainable=False).requires_grad_(True)
    rm = load_artifact(run_dir / "rm", spec)
    timing = {"gen_seconds": 0.0, "tokens": 0, "prompt_tokens": 0}
    original = module.batch_generation

    def timed(*args, **kwargs):  # generation time and generated tokens, the rest of a step is training
        start = time.perf_counter()
        out_ids, logits = original(*args, **kwargs)
        timing["gen_seconds"] += time.perf_counter() - start
        responses = out_ids[:, args[1].shape[1]:]
        first_eos = (responses == tok.eos_token_id).int().cumsum(1)
        timing["tokens"] += int(((first_eos == 0) | ((first_eos == 1) & (responses == tok.eos_token_id))).sum())
        # queries are left-padded; pad is <|im_end|>, which prompts also contain: count from the first non-pad
        queries = args[1]
        timing["prompt_tokens"] += int((queries.shape[1] - (queries != tok.pad_token_id).int().argmax(1)).sum())
        return out_ids, logits
    module.batch_generation = timed
    ids = prompt_ids(tok, train, gen.max_prompt_length)
    args = PPOConfig(
        output_dir=str(out), per_device_train_batch_size=stage.rollout_batch_size, gradient_accumulation_steps=1,
        num_mini_batches=stage.rollout_batch_size // (stage.batch_size * stage.grad_accum),
        num_ppo_epochs=stage.ppo_epochs, total_episodes=steps * stage.rollout_batch_size,
        local_rollout_forward_batch_size=stage.rollout_batch_size, response_length=gen.max_new_tokens,
        temperature=gen.temperature, stop_token="eos", missing_eos_penalty=stage.missing_eos_penalty,
        kl_coef=stage.kl_coef, learning_rate=stage.learning_rate, lr_scheduler_type="linear", vf_coef=stage.vf_coef,
        cliprange=stage.cliprange, cliprange_value=stage.cliprange_value, gamma=stage.gamma, lam=stage.lam,
        num_sample_generations=0, report_to=[], save_strategy="no", use_cpu=True, seed=recipe.seed,
        logging_steps=1, **peer_precision(peer))
    lora = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                      target_modules=spec.lora.target_modules, task_type="CAUSAL_LM")
    trainer = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=None, reward_model=rm,
                         value_model=value, train_dataset=Dataset.from_dict({"input_ids": ids}), peft_config=lora)
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    module.batch_generation = original
    tok.padding_side = "right"
    recompute = bool(getattr(trainer.model.policy, "is_gradient_checkpointing", False))
    return trainer.model.policy, timing | {"train_seconds": total - timing["gen_seconds"], "recompute": recompute}


def measure(name: str, a: argparse.Namespace, out: Path) -> tuple[dict, dict, object]:
    """Train with one trainer ("align" or "trl") from the recipe's SFT and RM artifacts, then evaluate on
    the held-out prompts: (compare_policies metrics, timing, the recipe's ppo stage)."""
    recipe = load_recipe(a.recipe, [f"stages.ppo.max_steps={a.steps}"])
    stage, run_dir = recipe.stage("ppo"), Path(recipe.run_dir)
    train, evals = load_split(recipe.data.prompts, parse_prompt, recipe.seed)
    train, evals = [r["prompt"] for r in train], [r["prompt"] for r in evals[:a.eval]]
    torch.manual_seed(recipe.seed)
    if name == "align":
        policy, t = run_align(recipe, stage, run_dir, train, a.steps)
    else:
        policy, t = run_trl(recipe, stage, run_dir, train, a.steps, out, a.peer)
    rm, tok = load_artifact(run_dir / "rm", recipe.model), load_tokenizer(recipe.model)
    gen = stage.generation
    ours = sample(policy, tok, evals, gen)
    with adapters_disabled(policy) as reference:  # the start: the same weights, adapters off
        m, _ = compare_policies(evals, ours, sample(reference, tok, evals, gen),
                                judge=RewardJudge(rm, tok, stage.max_length))
        m["kl"] = sampled_kl(policy, reference, tok, sample(policy, tok, evals, kl_sampling(gen)), gen)
    return m | {"heldout_prompts": len(evals)}, t, stage


def perf(side: str, a: argparse.Namespace, work: Path) -> dict:
    """bench/perf.py's PPO pair: align's ppo stage ("align") or TRL 1.12's PPOTrainer ("peer", which needs
    trl 1.12 first on PYTHONPATH). Tokens: generated completion tokens up to and including the first EOS;
    seconds: the whole PPO steps (generation, scoring and updates); positions: prompt + completion tokens, what
    the scoring forwards and the updates process."""
    m, t, stage = measure("align" if side == "align" else "trl", a, work / "trl")
    return {"tokens": t["tokens"], "train_seconds": t["gen_seconds"] + t["train_seconds"],
            "metric": "heldout_reward_gain", "value": m["reward"] - m["reward_start"],
            "detail": f"reward {m['reward_start']:.3f} -> {m['reward']:.3f}, win rate {m['win_rate']:.3f}, "
                      f"KL {m['kl']:.2f}, rollout tok/s {t['tokens'] / t['gen_seconds']:.1f}"
                      + (f", policy gradient checkpointing {'on' if t['recompute'] else 'off'}" if "recompute" in t
                         else ""),
            "ppo_epochs": stage.ppo_epochs, "positions": t["tokens"] + t["prompt_tokens"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/quickstart-ppo.yaml")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval", type=int, default=35, help="held-out prompts")
    parser.add_argument("--only", choices=["align", "trl"])
    parser.add_argument("--peer", choices=PEERS, default="fp32", help="TRL's precision (defaults: bf16 autocast)")
    a = parser.parse_args()
    rows = []
    for name in (["align", "trl"] if a.only is None else [a.only]):
        m, t, stage = measure(name, a, Path("/tmp/bench-ppo-trl"))
        rows.append((name, m, t))
        print(name, m, t, flush=True)
    print(f"\n{a.steps} PPO steps x {stage.rollout_batch_size} rollouts, {stage.ppo_epochs} epochs, "
          f"{stage.generation.max_new_tokens} new tokens, {rows[-1][1]['heldout_prompts']} held-out prompts\n")
    print("| trainer | held-out reward start -> after | win rate | KL | rollout tokens/s | train tokens/s |")
    print("|---|---|---|---|---|---|")
    for name, m, t in rows:
        print(f"| {name} | {m['reward_start']:.3f} -> {m['reward']:.3f} | {m['win_rate']:.3f} | {m['kl']:.2f} | "
              f"{t['tokens'] / t['gen_seconds']:.1f} | "
              f"{t['tokens'] * stage.ppo_epochs / t['train_seconds']:.1f} |")


if __name__ == "__main__":
    main()
