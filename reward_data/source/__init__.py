"""Hand-written source material for reward_data/build.py."""
