"""Worker for tests/test_distributed.py: one PPO rollout batch processed and trained on by every rank.

    torchrun --nproc_per_node 2 tests/ppo_ranks.py MODEL_DIR OUT_DIR [DTYPE]   # or plain python: one process

The completions and scores are fixed (no sampling), so 1 and 2 processes see the same rollouts; each rank
takes its share (rows rank::world, as `PPOTrainer.rollout` does), then `process` and one `update` (one
minibatch per rank in micro-batches of 2 rollouts grouped by length, so 1 and 2 processes cut the global
minibatch, the whole batch either way, into different micro-batches: the gradients agree only if every token
weighs the same however the minibatch is cut). Rank 0 writes the gathered statistics, its rows' advantages
and returns, and the gradients (averaged over the ranks by accelerate).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from align import distributed
from align.generation import Completion, prompt_ids
from align.models import load_model, load_tokenizer
from align.schema import GenerationSpec, LoraSpec, ModelSpec, PPOStage
from align.stages import ppo

ROLLOUTS = 8


def fixed_rollouts(tok) -> tuple[list[Completion], torch.Tensor]:
    """Eight completions of different lengths, some cut before EOS, with fixed scores."""
    questions = ["what is two plus two", "how do I bake bread", "please tell me a story", "the cat sat on the mat"]
    prompts = prompt_ids(tok, [[{"role": "user", "content": q}] for q in questions])
    out = []
    for i in range(ROLLOUTS):
        prompt = prompts[i % 4]
        ids = [(7 * i + 3 * j) % 200 + 10 for j in range(2 + i % 5)] + ([tok.eos_token_id] if i % 3 else [])
        out.append(Completion(list(prompt), ids, "", bool(i % 3)))
    return out, torch.tensor([0.5, -1.0, 2.0, 0.25, -0.5, 1.5, 0.0, 3.0])


def main(model_dir: str, out: Path, dtype: str = "auto") -> None:
    world, rank = distributed.world_size(), distributed.rank()
    spec = ModelSpec(name=model_dir, lora=LoraSpec(r=4, alpha=8), dtype=dtype)
    tok = load_tokenizer(spec)
    torch.manual_seed(0)  # the same LoRA initialisation on every rank
    stage = PPOStage(name="ppo", kind="ppo", rollout_batch_size=ROLLOUTS, batch_size=2,
                     grad_accum=ROLLOUTS // world // 2, ppo_epochs=1, whiten_rewards=True,
                     generation=GenerationSpec(temperature=1.0))
    trainer = ppo.PPOTrainer(load_model(spec, "causal_lm"), ppo.value_model(spec, None), tok, stage, ROLLOUTS, 0)
    completions, raw = fixed_rollouts(tok)
    batch, stats = trainer.process(completions[rank::world], raw[rank::world])
    stats |= trainer.update(batch)
    if rank == 0:
        stats.pop("train_seconds")
        rows = {str(i): {"advantages": a[m.bool()].tolist(), "returns": r[m.bool()].tolist()}
                for i, a, r, m in zip(range(0, ROLLOUTS, world), batch["advantages"], batch["returns"],
                                      batch["ro"].mask)}
        grads = {n: p.grad.tolist() for m in (trainer.policy, trainer.value) for n, p in m.named_parameters()
                 if p.requires_grad}
        (out / f"world-{world}.json").write_text(json.dumps({"stats": stats, "rows": rows, "grads": grads,
                                                             "device": trainer.accelerator.device.type}))
    distributed.barrier()  # no rank exits while another still talks to it: gloo aborts a rank left behind


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
