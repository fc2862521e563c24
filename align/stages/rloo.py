"""RLOO stage: REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024) against an rm stage's scores,
over TRL's `RLOOTrainer`.

    align run recipes/compare-on-policy.yaml

Each prompt gets `num_generations` (k) answers; an answer's advantage is its reward minus the mean reward
of the other k - 1, and its reward is the RM's score minus `beta` times its summed log-ratio to the
reference (the starting policy: the LoRA adapter disabled). No critic. What it shares with grpo (models,
the RM as reward function, step units, evaluation like ppo's) is in `align.stages.group`.
"""

from __future__ import annotations

from typing import Any

from trl import RLOOConfig, RLOOTrainer

from align.stages.common import StageContext
from align.stages.group import run_group_stage


def run(ctx: StageContext) -> dict[str, Any]:
    s = ctx.stage
    return run_group_stage(ctx, RLOOTrainer, RLOOConfig, beta=s.beta, normalize_advantages=s.normalize_advantages)
