"""align: staged RLHF and preference-alignment recipes (SFT -> reward model -> PPO or DPO) over TRL."""

__version__ = "0.1.0"
