"""Generation benchmark: align's `generate` vs plain `model.generate`, side by side in one process (not a test).

    python bench/generation.py                          # greedy, 32 prompts, batch 16, 128 new tokens, 2 rounds
    python bench/generation.py --temperature 0.7 --prompts 64 --max-new-tokens 64 --rounds 3
    python bench/generation.py --compiled          # a third side: plain with a static cache and torch.compile
    python bench/generation.py --step-costs        # one decode step's time at 1-64 rows (what bounds the ratio)

Same model (the embedded SmolLM2-135M-Instruct, fp32), same prompts (self-instruct seed tasks from
../shared/data, rendered with the chat template and a generation prompt), same batch size and token
budget. The rounds alternate plain, align, plain, align, ... so that both sides see the same machine load;
the ratio is taken per round (over wall time and over CPU time), then its median reported.
  plain  what a user writes: the prompts in their order, `batch_size` at a time, left-padded, then
         `model.generate(input_ids, attention_mask, max_new_tokens)` with the model's defaults (greedy:
         SmolLM2's generation_config sets no sampling; with --temperature: do_sample, that temperature and
         top_k=0, so that both sides sample the same distribution)
  align  `align.generation.generate(model, tok, prompts, max_new_tokens, temperature, batch_size=...)`
  compiled (--compiled)  plain with `cache_implementation="static"` and transformers' automatic
         `torch.compile` of the forward (CompileConfig, forced on for the CPU); its first round includes the
         compilation
Tokens/s counts each completion's tokens up to and including its first stop token (the same count on both
sides), over the wall time of the whole call; the ratio is also given over the process's CPU time, which
other jobs on a shared machine disturb far less than the wall time (with --threads 1 the two agree on an
idle machine). Greedy: the script asserts that both sides produce identical
tokens. Sampling: it checks that align's reported log-probs of its sampled tokens equal an independent
forward's log-probs of the tempered distribution (the distribution sampled is the one PPO trains on).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from common import MODEL, SHARED
from trl.trainer.utils import pad

SEED_TASKS = SHARED / "self-instruct-seed" / "seed_tasks.jsonl"


def prompts(path: str, n: int) -> list[list[dict]]:
    with open(path) as f:
        rows = [json.loads(line) for line in f.read().splitlines()[:n]]
    return [[{"role": "user", "content": r["instruction"] + (f"\n{r['instances'][0]['input']}"
                                                              if r["instances"][0]["input"] else "")}] for r in rows]


def plain(model, tok, ids: list[list[int]], a: argparse.Namespace, **extra) -> list[list[int]]:
    """A user's batched `model.generate` loop (`extra`: more `generate` arguments); each row's new tokens up
    to its first stop token."""
    stop = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
               else [model.generation_config.eos_token_id])
    sampling = {"do_sample": True, "temperature": a.temperature, "top_k": 0} if a.temperature > 0 else {}
    out = []
    for start in range(0, len(ids), a.batch_size):
        rows = [torch.tensor(r) for r in ids[start:start + a.batch_size]]
        x = pad(rows, padding_value=tok.pad_token_id, padding_side="left")
        mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left")
        new = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=a.max_new_tokens, **sampling,
                             **extra)
        for row in new[:, x.shape[1]:].tolist():
            cut = next((j for j, t in enumerate(row) if t in stop), None)
            out.append(row[:cut + 1] if cut is not None else row)
    return out


def step_costs(model, rows: list[int], context: int = 128, steps: int = 8) -> None:
    """One decode step's wall time at each batch size: a `context`-token cache (one prefill, repeated over
    the rows), then `steps` single-token forwards, the LM head's product timed apart. What scheduling can save
    (dropping padding and finished rows) depends on how the step's cost falls with fewer rows."""
    head = model.get_output_embeddings().weight
    for m in rows:
        out = model(input_ids=torch.randint(100, 20000, (1, context)), use_cache=True, logits_to_keep=1)
        cache, token = out.cache, out.logits[:, -1:].argmax(-1).repeat(m, 1)
        cache.batch_repeat_interleave(m)
        start = time.perf_counter()
        for _ in range(steps):
            token = model(input_ids=token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
        step = (time.perf_counter() - start) / steps
        x = torch.randn(m, head.shape[1])
        start = time.perf_counter()
        for _ in range(steps):
            torch.nn.functional.linear(x, head)
        lm = (time.perf_counter() - start) / steps
        print(f"rows {m:3d}: step {step * 1e3:6.1f} ms = {step / m * 1e3:5.2f} ms/row "
              f"(LM head product {lm * 1e3:5.1f} ms)", flush=True)


def tempered_logprobs(model, c, temperature: float) -> torch.Tensor:
    """A completion's token log-probs under softmax(logits / temperature), from one forward of prompt + completion."""
    logits = model(input_ids=torch.tensor([c.prompt_ids + c.ids])).logits[0, len(c.prompt_ids) - 1:-1].float()
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(c.ids)[:, None]).squeeze(-1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, one per core); on a "
                   "machine shared with other jobs 1 avoids the 2-thread barrier stalls that swamp both sides")
    p.add_argument("--compiled", action="store_true", help="also time plain with a static cache and torch.compile")
    p.add_argument("--step-costs", action="store_true", help="only time one decode step at 1-64 rows")
    p.add_argument("--data", default=str(SEED_TASKS), help="self-instruct seed tasks (from a worktree: "
                   "../../shared/data/...)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    from align.generation import generate, prompt_ids
    from align.models import load_model, load_tokenizer
    from align.schema import ModelSpec

    spec = ModelSpec(name=MODEL, adapter="full")
    tok, model = load_tokenizer(spec), load_model(spec, "causal_lm", trainable=False).eval()
    ids = prompt_ids(tok, prompts(a.data, a.prompts))
    print(f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{len(ids)} prompts of {min(map(len, ids))}-{max(map(len, ids))} tokens, batch {a.batch_size}, "
          f"{a.max_new_tokens} new tokens, temperature {a.temperature}", flush=True)
    if a.step_costs:
        with torch.no_grad():
            step_costs(model, [1, 4, 8, 12, 16, 24, 32, 48, 64])
        return
    compiled = {}
    if a.compiled:
        from transformers import CompileConfig

        config = CompileConfig(mode="default")
        config._compile_all_devices = True  # transformers compiles only on accelerators unless told
        compiled = {"cache_implementation": "static", "compile_config": config}
    ratios = []
    with torch.no_grad():
        for r in range(a.rounds):
            torch.manual_seed(r)
            theirs, t_plain, c_plain = timed(plain, model, tok, ids, a)
            ours, t_align, c_align = timed(generate, model, tok, ids, a.max_new_tokens, a.temperature,
                                           batch_size=a.batch_size, seed=r)
            n_plain, n_align = sum(map(len, theirs)), sum(len(c.ids) for c in ours)
            check(model, ids, theirs, ours, a.temperature)
            ratio, cpu_ratio = (n_align / t_align) / (n_plain / t_plain), (n_align / c_align) / (n_plain / c_plain)
            ratios.append((ratio, cpu_ratio))
            if r == 0:
                print("completion lengths (align):", sorted(len(c.ids) for c in ours), flush=True)
            print(f"round {r + 1}: plain {n_plain} tokens in {t_plain:.1f} s ({c_plain:.1f} s CPU) = "
                  f"{n_plain / t_plain:.1f} tokens/s; align {n_align} tokens in {t_align:.1f} s ({c_align:.1f} s CPU) "
                  f"= {n_align / t_align:.1f} tokens/s; ratio {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU", flush=True)
            if compiled:
                torch.manual_seed(r)
                theirs_c, t_c, c_c = timed(plain, model, tok, ids, a, **compiled)
                same = "same tokens as plain" if theirs_c == theirs else "OTHER tokens than plain"
                print(f"         compiled {sum(map(len, theirs_c))} tokens in {t_c:.1f} s ({c_c:.1f} s CPU), {same}; "
                      f"plain / compiled time {t_plain / t_c:.2f}x wall", flush=True)
    print(f"median ratio over {a.rounds} rounds: {statistics.median(x for x, _ in ratios):.2f}x wall, "
          f"{statistics.median(x for _, x in ratios):.2f}x CPU time")


def timed(fn, *args, **kwargs):
    """fn's result, wall time and this process's CPU time."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start, time.process_time() - cpu


def check(model, ids: list[list[int]], theirs: list[list[int]], ours: list, temperature: float) -> None:
    """Greedy: both sides' tokens identical. Sampling: align's log-probs are those of the tempered distribution."""
    if temperature <= 0:
        same = sum(t == c.ids for t, c in zip(theirs, ours))
        assert same == len(ids), f"greedy outputs differ in {len(ids) - same} of {len(ids)} rows"
    else:
        err = max(float((tempered_logprobs(model, c, temperature) - torch.tensor(c.logprobs)).abs().max())
                  for c in ours if c.ids)
        assert err < 1e-3, f"sampled tokens' log-probs differ from an independent forward's by {err}"

if __name__ == "__main__":
    main()
