"""The dpo stage on a tiny model: every loss by hand, the reference, pairs from rankings, and learning."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from trl import DPOConfig

from align.generation import adapters_disabled
from align.models import load_model, load_tokenizer
from align.pipeline import run_pipeline
from align.rankings import Ranking
from align.recipe import load_recipe
from align.schema import DPO_LOSSES, STAGE_METRICS, ModelSpec
from align.stages.common import drop_reference_adapter
from align.stages.dpo import DPOTrainer, _loss_args, preference_pairs
from tests.conftest import write_jsonl
from tests.stages.test_rm import marker_rankings

BETA, EPS = 0.5, 0.2


def _trainer(tiny_model_dir, tmp_path, loss: str = "sigmoid", sft_weight: float = 0.0, prompts: int = 4,
             held_out: int = 0, trainer_class=DPOTrainer, **kw):
    """A DPO trainer on `prompts` marker rankings (its first `held_out` pairs also the eval set) whose policy
    differs from its reference, and its first training batch."""
    spec = ModelSpec(name=str(tiny_model_dir))
    tok = load_tokenizer(spec)
    model = load_model(spec, "causal_lm")
    torch.manual_seed(1)
    for name, p in model.named_parameters():  # a policy that differs from its reference
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    rankings = [Ranking([{"role": "user", "content": r["prompt"]}], r["responses"],
                        [[r["ranking"][0]], r["ranking"][1]]) for r in marker_rankings(prompts, 0)]
    pairs = preference_pairs(rankings, "best_vs_rest")
    args = DPOConfig(output_dir=str(tmp_path / "out"), beta=BETA, report_to=[], use_cpu=True, bf16=False,
                     per_device_train_batch_size=8, max_length=64, save_strategy="no",
                     **_loss_args(loss, EPS, sft_weight), **kw)
    held = pairs.select(range(held_out)) if held_out else None
    trainer = trainer_class(model=model, args=args, train_dataset=pairs, eval_dataset=held, processing_class=tok)
    drop_reference_adapter(trainer.model)
    return trainer, next(iter(trainer.get_train_dataloader()))


def _logps(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the completion tokens' log-probs, by a plain forward pass: (chosen, rejected)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (lp * batch["completion_mask"][:, 1:]).sum(1).chunk(2)


def _policy_and_reference(model, batch) -> tuple[torch.Tensor, ...]:
    """(policy chosen, policy rejected, reference chosen, reference rejected) summed completion log-probs."""
    with torch.no_grad():
        pc, pr = _logps(model, batch)
        with adapters_disabled(model):
            rc, rr = _logps(model, batch)
    return pc, pr, rc, rr


def _by_hand(loss: str, pc, pr, rc, rr, lengths) -> torch.Tensor:
    c, r = pc - rc, pr - rr  # log-ratios of chosen and rejected
    d, ls = BETA * (c - r), F.logsigmoid
    if loss == "sigmoid":
        return -ls(d).mean()
    if loss == "cdpo":
        return (-(1 - EPS) * ls(d) - EPS * ls(-d)).mean()
    if loss == "robust":
        return ((-(1 - EPS) * ls(d) + EPS * ls(-d)) / (1 - 2 * EPS)).mean()
    if loss == "ipo":
        return ((c / lengths[0] - r / lengths[1] - 1 / (2 * BETA)) ** 2).mean()
    if loss == "hinge":
        return torch.relu(1 - d).mean()
    if loss == "sigmoid_norm":
        return -ls(BETA * (c / lengths[0] - r / lengths[1])).mean()
    if loss == "nca_pair":
        return (-ls(BETA * c) - 0.5 * ls(-BETA * c) - 0.5 * ls(-BETA * r)).mean()
    if loss == "sppo_hard":
        return ((c - 0.5 / BETA) ** 2 + (r + 0.5 / BETA) ** 2).mean()
    if loss == "apo_zero":
        return (1 - torch.sigmoid(BETA * c) + torch.sigmoid(BETA * r)).mean()
    if loss == "apo_down":
        return (torch.sigmoid(BETA * c) + 1 - torch.sigmoid(BETA * (c - r))).mean()
    raise AssertionError(f"no hand formula for {loss}")


@pytest.mark.parametrize("loss", DPO_LOSSES)
def test_every_offered_loss_equals_a_hand_computation(loss, tiny_model_dir, tmp_path):
    trainer, batch = _trainer(tiny_model_dir, tmp_path, loss)
    pc, pr, rc, rr = _policy_and_reference(trainer.model, batch)
    with torch.no_grad():
        got = trainer._compute_loss(trainer.model, dict(batch), False)
    lengths = batch["completion_mask"].sum(1).float().chunk(2)
    assert float(got) == pytest.approx(float(_by_hand(loss, pc, pr, rc, rr, lengths)), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("loss", ["sigmoid", "cdpo"])
def test_sft_weight_adds_the_chosen_answers_mean_token_nll(loss, tiny_model_dir, tmp_path):
    """RPO: the loss plus sft_weight times the mean NLL over the chosen answers' tokens (all pairs pooled)."""
    trainer, batch = _trainer(tiny_model_dir, tmp_path, loss, sft_weight=0.7)
    pc, pr, rc, rr = _policy_and_reference(trainer.model, batch)
    with torch.no_grad():
        got = trainer._compute_loss(trainer.model, dict(batch), False)
    lengths = batch["completion_mask"][:, 1:].sum(1).float().chunk(2)
    nll = -pc.sum() / lengths[0].sum()
    assert float(got) == pytest.approx(float(_by_hand(loss, pc, pr, rc, rr, lengths) + 0.7 * nll), rel=1e-4)


def test_held_out_reward_accuracy_weighs_every_pair_alike_in_uneven_batches(tiny_model_dir, tmp_path, monkeypatch):
    """15 pairs in batches of 4, 4, 4, 3: TRL alone reports the mean of the four batch means; align's trainer
    reports the share of all 15 pairs whose chosen answer gets the higher implicit reward, as by hand."""
    from align.stages.dpo import CachedDPOTrainer

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    trainer, _ = _trainer(tiny_model_dir, tmp_path, prompts=8, held_out=15, trainer_class=CachedDPOTrainer,
                          per_device_eval_batch_size=4)
    trainer.model.eval()
    wins = []
    for batch in trainer.get_eval_dataloader():
        pc, pr, rc, rr = _policy_and_reference(trainer.model, batch)
        wins += ((pc - rc) > (pr - rr)).tolist()
    assert len(wins) == 15
    got = trainer.evaluate()["eval_rewards/accuracies"]
    assert got == pytest.approx(sum(wins) / 15, abs=1e-6)
    assert round(got * 15, 6) == round(got * 15)  # k of 15, which a mean of batch means need not be


def test_lora_reference_is_the_model_with_adapters_disabled(tiny_model_dir, tmp_path):
    trainer, batch = _trainer(tiny_model_dir, tmp_path, "sigmoid")
    ref_c, ref_r = trainer.compute_ref_log_probs(trainer.model, dict(batch))
    with torch.no_grad(), adapters_disabled(trainer.model):
        rc, rr = _logps(trainer.model, batch)
    pc, _ = _logps(trainer.model, batch)
    assert torch.allclose(ref_c, rc, atol=1e-4) and torch.allclose(ref_r, rr, atol=1e-4)
    assert not torch.allclose(pc, rc, atol=1e-2)  # the adapters do change the policy


def test_unknown_loss_lists_the_valid_ones(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndata: {{rankings: {{train: {write_jsonl(tmp_path / 'r.jsonl', marker_rankings(2, 0))}"
                      "}}\nstages:\n  - {name: dpo, kind: dpo, loss: simpo}\n")
    with pytest.raises(Exception, match="'simpo' is not one of sigmoid, cdpo, robust, ipo"):
        load_recipe(recipe)


def test_ranking_to_pairs_modes():
    r = Ranking([{"role": "user", "content": "q"}], ["a", "b", "c", "d"], [[2], [0, 3], [1]])
    pairs = lambda mode: [(x["chosen"][0]["content"], x["rejected"][0]["content"])  # noqa: E731
                          for x in preference_pairs([r], mode)]
    assert pairs("best_vs_rest") == [("c", "a"), ("c", "d"), ("c", "b")]
    assert pairs("adjacent") == [("c", "a"), ("c", "d"), ("a", "b"), ("d", "b")]
    assert sorted(pairs("all")) == sorted([("c", "a"), ("c", "d"), ("c", "b"), ("a", "b"), ("d", "b")])
    pairwise = Ranking([{"role": "user", "content": "q"}], ["yes", "no"], [[0], [1]])
    assert all(pairs_ == [("yes", "no")] for pairs_ in
               ([(x["chosen"][0]["content"], x["rejected"][0]["content"]) for x in preference_pairs([pairwise], m)]
                for m in ("best_vs_rest", "adjacent", "all")))


def _recipe(tmp_path, model, stages: str, adapter: str = "lora", hooks: str = "") -> dict:
    tmp_path.mkdir(exist_ok=True)
    train = write_jsonl(tmp_path / "train.jsonl", marker_rankings(48, 1))
    evals = write_jsonl(tmp_path / "eval.jsonl", marker_rankings(16, 2))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: dpo-test
model: {{name: {model}, adapter: {adapter}, lora: {{r: 8, alpha: 16}}}}
data: {{rankings: {{train: {train}, eval: {evals}}}}}
tracking: {{backend: none}}
output_dir: {tmp_path / "run"}
{hooks}stages:
{stages}""")
    return run_pipeline(load_recipe(recipe))


def test_tiny_policy_learns_the_preference_and_is_judged_by_the_rm(tiny_model_dir, tmp_path):
    metrics = _recipe(tmp_path, tiny_model_dir, """
  - {name: rm, kind: rm, learning_rate: 3.0e-3, max_steps: 12, batch_size: 4, max_length: 64, eval_before: false}
  - {name: dpo, kind: dpo, learning_rate: 2.0e-2, max_steps: 12, batch_size: 8, max_length: 64, beta: 0.5,
     logging_steps: 1, warmup_ratio: 0.0, lr_scheduler: constant, eval_prompts: 4}
""", hooks="""evals:
  - {hook: win_rate, against: start, max_examples: 4, generation: {max_new_tokens: 8, batch_size: 4}}
  - {hook: samples, max_examples: 4, generation: {max_new_tokens: 8}}
""")["dpo"]
    assert set(metrics) <= set(STAGE_METRICS["dpo"]), set(metrics) - set(STAGE_METRICS["dpo"])  # what gates may name
    assert metrics["reward_accuracy_after"] > 0.9 and metrics["reward_margin_after"] > 0, metrics  # held-out pairs
    history = [json.loads(line) for line in (tmp_path / "run" / "dpo" / "history.jsonl").read_text().splitlines()]
    margins = [h["train/rewards/margins"] for h in history if "train/rewards/margins" in h]
    assert margins[-1] > margins[0] + 0.5  # the log-ratio of chosen over rejected rose on the training pairs
    assert metrics["eval_prompts"] == 4 and "win_rate" not in metrics  # the stage samples nothing
    evals = json.loads((tmp_path / "run" / "evals.json").read_text())
    row = next(r for r in evals["rows"] if r["row"] == "dpo")
    assert 0.0 <= row["metrics"]["win_rate"] <= 1.0 and {"reward", "reward_against"} <= row["metrics"].keys()
    assert row["judges"]["win_rate"] == "rm stage rm" and row["own_reward"] == []  # DPO never optimized the rm
    rows = evals["samples"]["dpo"]
    assert 1 <= len(rows) <= 4 and {"prompt", "start", "policy", "reward_start", "reward_policy"} <= set(rows[0])


def test_full_fine_tuning_leaves_the_reference_bit_identical(tiny_model_dir, tmp_path, monkeypatch):
    import align.stages.dpo as dpo

    refs = []
    real = dpo.load_model

    def spy(spec, head, init=None, trainable=True):
        model = real(spec, head, init=init, trainable=trainable)
        if not trainable:
            refs.append((model, {n: p.detach().clone() for n, p in model.named_parameters()}))
        return model

    monkeypatch.setattr(dpo, "load_model", spy)
    metrics = _recipe(tmp_path, tiny_model_dir, """
  - {name: dpo, kind: dpo, learning_rate: 1.0e-3, max_steps: 4, batch_size: 8, max_length: 64, eval_prompts: 16}
""", adapter="full")["dpo"]
    assert refs, "full fine-tuning builds a frozen reference copy"
    model, before = refs[0]
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert metrics["reward_accuracy_after"] > 0.5


def test_precomputed_reference_gives_the_same_training(tiny_model_dir, tmp_path):
    stage = """
  - {name: dpo, kind: dpo, learning_rate: 1.0e-2, max_steps: 3, batch_size: 8, max_length: 64, eval_prompts: 16,
     logging_steps: 1, precompute_ref: PRE}
"""
    live = _recipe(tmp_path / "a", tiny_model_dir, stage.replace("PRE", "false"))["dpo"]
    pre = _recipe(tmp_path / "b", tiny_model_dir, stage.replace("PRE", "true"))["dpo"]
    assert pre["train_loss"] == pytest.approx(live["train_loss"], rel=1e-3)
    assert pre["reward_margin_after"] == pytest.approx(live["reward_margin_after"], rel=1e-3, abs=1e-4)

