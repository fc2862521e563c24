"""What align reaches into: the private parts of TRL (and one of wandb) that align overrides or relies on, and
the TRL range pyproject.toml pins. An upgrade that renames or removes one fails here, naming it and the align
code that needs it, instead of deep inside a training run."""

from __future__ import annotations

import importlib
import inspect
import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

_PREPARE = ["self", "dataset", "processing_class", "args", "dataset_name"]
# (dotted path, the parameters align calls it with or None, a text its source must hold or None, who needs it)
INTERNALS = [
    ("trl.DPOTrainer._prepare_dataset", _PREPARE, None,
     "align/stages/dpo.py: CachedDPOTrainer overrides it to cache DPO tokenization"),
    ("trl.RewardTrainer._prepare_dataset", _PREPARE, None,
     "align/stages/rm.py: RankingRewardTrainer overrides it (its rows are tokenized per prompt already)"),
    ("trl.RewardTrainer.__init__", None, 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}',
     "align/stages/rm.py: compute_loss appends accuracy and mean_reward to self._metrics[mode]"),
    ("trl.RewardTrainer.log", None, "self._metrics[mode]",
     "align/stages/rm.py: TRL's log() must average and report what compute_loss put into self._metrics"),
    ("trl.DPOTrainer._compute_loss", ["self", "model", "inputs", "return_outputs"], 'self._metrics[mode]["rewards/',
     "align/stages/dpo.py: CachedDPOTrainer counts each batch's pairs there to weigh TRL's pair metrics"),
    ("trl.DPOTrainer.log", None, "sum(val) / len(val) for key, val in self._metrics[mode]",
     "align/stages/dpo.py: CachedDPOTrainer.log replaces the per-batch means before TRL averages them"),
    ("trl.DPOTrainer.__init__", None, 'model.add_adapter("ref"',
     "align/stages/common.py: drop_reference_adapter deletes TRL's 'ref' adapter copy"),
    ("trl.GRPOTrainer.__init__", None, '"ref"',
     "align/stages/common.py: drop_reference_adapter deletes TRL's 'ref' adapter copy (grpo, rloo)"),
    ("trl.trainer.utils.pad", ["tensors", "padding_value", "padding_side"], None,
     "align/generation.py, stages/ppo.py, stages/rm.py import this TRL utility"),
    ("wandb.sdk.wandb_run.Run._log_artifact", ["self", "artifact_or_path", "is_user_created", "use_after_commit"],
     None, "align/tracking.py: declares a stage's input artifact offline (W&B lineage)"),
]


def internal_problem(path: str, params: list[str] | None, source_has: str | None, needed_by: str) -> str | None:
    """None if `path` exists as align expects, else a message naming the internal and the align code it breaks."""
    module, _, rest = path.partition(".")
    obj = importlib.import_module(module)
    parts = rest.split(".")
    for i, name in enumerate(parts):
        if not hasattr(obj, name):
            try:  # a submodule not imported by its package
                obj = importlib.import_module(".".join([module, *parts[: i + 1]]))
                continue
            except ImportError:
                return f"{path} no longer exists (removed or renamed); needed by {needed_by}"
        obj = getattr(obj, name)
    if params is not None:
        have = list(inspect.signature(obj).parameters)
        missing = [p for p in params if p not in have]
        if missing:
            return f"{path} lost its parameter(s) {', '.join(missing)} (now {have}); needed by {needed_by}"
    if source_has is not None and source_has not in inspect.getsource(obj):
        return f"{path} no longer contains `{source_has}`; needed by {needed_by}"
    return None


@pytest.mark.parametrize("path,params,source_has,needed_by", INTERNALS, ids=[i[0] for i in INTERNALS])
def test_private_internals_align_relies_on_are_still_there(path, params, source_has, needed_by):
    problem = internal_problem(path, params, source_has, needed_by)
    assert problem is None, f"{problem}. Update that code for the new version, or pin the old one in pyproject.toml"


def test_a_renamed_internal_fails_with_its_name(monkeypatch):
    import trl

    monkeypatch.delattr(trl.DPOTrainer, "_prepare_dataset")
    assert internal_problem(*INTERNALS[0]) == ("trl.DPOTrainer._prepare_dataset no longer exists (removed or "
                                               f"renamed); needed by {INTERNALS[0][3]}")
    monkeypatch.setattr(trl.RewardTrainer, "_prepare_dataset", lambda self, dataset: dataset)
    assert "lost its parameter(s) processing_class, args, dataset_name" in internal_problem(*INTERNALS[1])


def test_installed_trl_is_in_the_pinned_range():
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    trl = Requirement(re.search(r'^\s*"(trl[^"]*)"', pyproject, re.M).group(1))
    assert trl.specifier.contains(metadata.version("trl")), (
        f"trl {metadata.version('trl')} is installed, pyproject.toml pins {trl}: test the new version "
        "(tests/test_pins.py first), then widen the pin")
    assert trl.specifier.contains("1.16.0") and not trl.specifier.contains("1.17.0")  # tested: 1.16 only
