"""Win rates of several policies against one start policy, judged by one rm artifact, on the first N of a
rankings file's prompts for several N: how the DPO variants of the quickstart were compared (bench/README.md).

    align run recipes/quickstart.yaml                                   # sft, rm, dpo in runs/quickstart
    align run recipes/quickstart.yaml output_dir=runs/qs-lr stages.dpo.learning_rate=5e-4   # a variant (copy
                                                                        # sft/ and rm/ in first to reuse them)
    python bench/win_rates.py --start runs/quickstart/sft --judge runs/quickstart/rm \\
        runs/quickstart/dpo runs/qs-lr/dpo

Every answer is sampled with the hook's settings (`--max-new-tokens`, `--temperature`) and each prompt's own
seeded stream, as the `win_rate` hook does, so the first 24 prompts reproduce the recipe's number; the larger
N show how much of a 24-prompt difference is sampling noise (one seed's standard error there is about 0.1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from align.data import distinct, read_records
from align.evaluation.compare import sample
from align.evaluation.judges import RewardJudge
from align.models import load_artifact, load_tokenizer
from align.rankings import parse_ranking
from align.recipe import load_recipe
from align.schema import GenerationSpec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("policies", nargs="+", help="stage artifacts (folders) to compare with --start")
    p.add_argument("--start", required=True, help="the rival's artifact, e.g. runs/quickstart/sft")
    p.add_argument("--judge", required=True, help="the rm artifact that scores both answers")
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "quickstart.yaml"), help="for the model spec")
    p.add_argument("--rankings", default=str(ROOT / "reward_data" / "rankings" / "test.jsonl"))
    p.add_argument("--sizes", default="24,69", help="the first N prompts to report, comma-separated")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    args = p.parse_args()

    spec = load_recipe(args.recipe).model
    tok = load_tokenizer(spec)
    prompts = distinct(parse_ranking(*r).prompt for r in read_records(args.rankings))
    gen = GenerationSpec(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    sizes = [min(int(n), len(prompts)) for n in args.sizes.split(",")]
    start = [c.text for c in sample(load_artifact(args.start, spec), tok, prompts, gen)]
    judge = RewardJudge(load_artifact(args.judge, spec, "reward"), tok)
    print(f"win rate against {args.start}, judged by {args.judge} (ties half), first N of {len(prompts)} prompts")
    for policy in args.policies:
        ours = [c.text for c in sample(load_artifact(policy, spec), tok, prompts, gen)]
        outcomes, _, _ = judge.judge(prompts, ours, start)
        print(policy, " ".join(f"n={n}: {sum(outcomes[:n]) / n:.3f}" for n in sizes), flush=True)


if __name__ == "__main__":
    main()
