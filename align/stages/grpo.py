"""GRPO stage: group relative policy optimization (Shao et al. 2024, DeepSeekMath) against an rm stage's
scores, over TRL's `GRPOTrainer`.

    align run recipes/compare-on-policy.yaml

Each prompt gets `num_generations` (k) answers; an answer's advantage is its reward minus its group's mean,
divided by the group's std (`scale_rewards`); a clipped surrogate loss, aggregated over tokens as `loss`
says, plus `beta` times a per-token KL to the reference (the starting policy: the LoRA adapter disabled).
No critic. What it shares with rloo (models, the RM as reward function, step units, evaluation like
ppo's) is in `align.stages.group`.
"""

from __future__ import annotations

from typing import Any

from trl import GRPOConfig, GRPOTrainer

from align.stages.common import StageContext
from align.stages.group import run_group_stage


def run(ctx: StageContext) -> dict[str, Any]:
    s = ctx.stage
    return run_group_stage(ctx, GRPOTrainer, GRPOConfig, beta=s.beta, loss_type=s.loss, scale_rewards=s.scale_rewards)
