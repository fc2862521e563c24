"""The stages, one module each (`sft.py`, ...). Each exposes `run(ctx: StageContext) -> dict` of metrics.

Stages never import each other: a stage finds its starting model through `ctx.init`, the artifact
folder of the stage its recipe names, and writes its own artifact into `ctx.out`.
"""
