"""Tokens/s and model FLOPs utilisation (MFU) of align's sft, dpo and ppo stages on one GPU, on a
random-initialised model of Qwen2.5-0.5B's shape (no weights to carry), full fine-tuning in bf16.

    python3 bench/gpu_throughput.py --out table.md          # on the GPU (bench/gpu_check.sh runs it)
    python3 bench/gpu_throughput.py --tiny --out table.md   # a 2-layer model of the same family, 1-2 steps,
                                                            # on whatever device there is: checks the script

Each stage runs through align's pipeline (one recipe: sft, dpo from sft, and ppo from sft against an rm stage
that is run first and not measured) and its own metrics give the tokens and seconds. FLOPs per token follow
Kaplan et al. / PaLM's accounting: a forward pass is 2 N + 2 L s d (N parameters without the embedding
matrix, L layers, s sequence length, d width; the attention term uses the mean sequence length), a backward
pass twice that. Per stage:
  sft   forward + backward of the policy on every trained token
  dpo   forward + backward of the policy and a forward of the reference on every chosen and rejected token
  ppo   rollouts: 1 forward per generated token (prompt prefill counted as forward on its tokens);
        scoring: forwards of policy, reference, critic and reward model on every token;
        training: ppo_epochs x (forward + backward of policy and critic)
MFU = model FLOPs / seconds / the GPU's peak dense bf16 rate (its datasheet's, and the rate of an 8192^3 bf16
matmul measured at the start, both in the table).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

# datasheet dense bf16 peaks (TFLOP/s), by a substring of torch.cuda.get_device_name()
PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  tie_word_embeddings=True, rope_theta=1000000.0)
TINY = dict(QWEN25_05B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "park", "what", "is", "two", "plus", "four",
         "answer", "please", "tell", "me", "story", "once", "upon", "time", "fox", "bake", "bread", "water"]


def build_model(out: Path, tiny: bool) -> Path:
    """A random-initialised Qwen2 model of the chosen shape with the tests' small BPE tokenizer (ids < 300 are
    used; the full vocabulary still costs its LM-head FLOPs)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.conftest import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(**(TINY if tiny else QWEN25_05B), pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_data(root: Path, n: int, words: int) -> dict[str, Path]:
    """Chats, pairwise rankings and prompts of random words (`words` per answer), seeded."""
    import random

    rng = random.Random(0)
    say = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    files = {"sft": [{"messages": [{"role": "user", "content": say(16)}, {"role": "assistant", "content": say(words)}]}
                     for _ in range(n)],
             "rankings": [{"prompt": say(16), "responses": [say(words), say(words)], "ranking": [0, 1]}
                          for _ in range(n)],
             "prompts": [{"prompt": say(16)} for _ in range(n)]}
    out = {}
    for name, rows in files.items():
        out[name] = root / f"{name}.jsonl"
        out[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def recipe(root: Path, model: Path, data: dict[str, Path], tiny: bool) -> Path:
    steps, batch, length, new = (2, 2, 64, 8) if tiny else (30, 16, 512, 128)
    common = f"max_steps: {steps}, batch_size: {batch}, max_length: {length}, logging_steps: 1, save_steps: 0"
    path = root / "bench.yaml"
    path.write_text(f"""name: gpu-throughput
model: {{name: {model}, adapter: full}}
data:
  sft: {{train: {data["sft"]}}}
  rankings: {{train: {data["rankings"]}}}
  prompts: {{train: {data["prompts"]}}}
tracking: none
output_dir: {root / "run"}
stages:
  - {{name: sft, kind: sft, learning_rate: 1.0e-5, {common}}}
  - {{name: rm, kind: rm, init: sft, learning_rate: 1.0e-5, eval_before: false, max_steps: 1, batch_size: {batch},
      max_length: {length}, save_steps: 0}}
  - {{name: dpo, kind: dpo, init: sft, learning_rate: 1.0e-6, eval_prompts: 0, {common}}}
  - {{name: ppo, kind: ppo, init: sft, learning_rate: 1.0e-6, max_steps: {max(1, steps // 10)},
      rollout_batch_size: {batch * 4}, batch_size: {batch}, grad_accum: 1, ppo_epochs: 2, max_length: {length},
      eval_prompts: 0, save_steps: 0, generation: {{max_new_tokens: {new}, temperature: 1.0, batch_size: {batch * 4}}}}}
""")
    return path


def forward_flops(config: dict, seq: float) -> float:
    """FLOPs of one forward pass per token: 2 N (without the embedding, with the LM head) + attention."""
    d, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    kv = d * config["num_key_value_heads"] // config["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * inter  # q, o; k, v; gate, up, down
    n = layers * per_layer + d * config["vocab_size"]
    return 2 * n + 2 * layers * seq * d


def measured_peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    return 10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12


def rows(metrics: dict, config: dict, length: int, rollout_batch: int, ppo_epochs: int = 2) -> list[dict]:
    """(stage, tokens/s, model TFLOP/s) from the stages' metrics (sft, dpo: trained tokens; ppo: generated
    tokens per second of the whole stage, rollouts and updates)."""
    out = []
    for stage, passes in (("sft", 3), ("dpo", 4)):  # fwd+bwd = 3 forwards; dpo adds the reference forward
        m = metrics[stage]
        tokens, seconds = m.get("train_tokens", 0), m["train_seconds"]
        flops = tokens * passes * forward_flops(config, length / 2)
        out.append({"stage": stage, "tokens_per_s": tokens / seconds, "tflops": flops / seconds / 1e12})
    m = metrics["ppo"]
    seq = m["rollout_tokens"] + m["rollout_prompt_tokens"]
    per = forward_flops(config, seq / (m["ppo_steps"] * rollout_batch) / 2)  # mean causal context
    flops = (m["rollout_tokens"] * per + m["rollout_prompt_tokens"] * per  # sampling and prefill
             + seq * 4 * per + seq * ppo_epochs * 2 * 3 * per)  # scoring; training policy and critic
    seconds = m["gen_seconds"] + m["train_seconds"]
    out.append({"stage": "ppo", "tokens_per_s": m["rollout_tokens"] / seconds, "tflops": flops / seconds / 1e12,
                "gen_tokens_per_s": m["rollout_tokens_per_second"]})
    return out


def table(found: list[dict], peak: float | None, measured: float | None, device: str) -> str:
    lines = [f"device: {device}; peak dense bf16: {peak or 'unknown'} TFLOP/s (datasheet), "
             f"{measured and round(measured)} TFLOP/s (8192^3 bf16 matmul measured here)", "",
             "| stage | tokens/s | model TFLOP/s | MFU (datasheet peak) | MFU (measured peak) |",
             "|---|---|---|---|---|"]
    for r in found:
        mfu = [f"{100 * r['tflops'] / p:.1f}%" if p else "n/a" for p in (peak, measured)]
        lines.append(f"| {r['stage']} | {r['tokens_per_s']:.0f} | {r['tflops']:.3g} | {mfu[0]} | {mfu[1]} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, 2 steps: checks the script anywhere")
    parser.add_argument("--out", type=Path, required=True, help="where the Markdown table is written")
    args = parser.parse_args()
    from align.pipeline import run_pipeline
    from align.recipe import load_recipe

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_model(root / "model", args.tiny)
        data = write_data(root, 64 if args.tiny else 2048, 8 if args.tiny else 200)
        metrics = run_pipeline(load_recipe(recipe(root, model, data, args.tiny)))
    config = TINY if args.tiny else QWEN25_05B
    found = rows(metrics, config, 64 if args.tiny else 512, 8 if args.tiny else 64)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAKS.items() if k in device), None)
    args.out.write_text(table(found, peak, measured_peak(), device))
    (args.out.with_suffix(".json")).write_text(json.dumps({"rows": found, "metrics": metrics}, indent=2, default=str))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
