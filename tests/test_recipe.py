"""Recipe loading: typed config, overrides, and errors that name file, line, key and a fix."""

from __future__ import annotations

import pytest

from align.errors import AlignError
from align.recipe import load_recipe
from align.schema import SFTStage

BASE = """name: r
model:
  name: some/model
data:
  sft: {{train: {train}}}
stages:
  - name: sft
    kind: sft
{extra}"""


@pytest.fixture
def train_file(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    return f


def recipe(tmp_path, train_file, extra="", body=None):
    path = tmp_path / "recipe.yaml"
    path.write_text(body if body is not None else BASE.format(train=train_file, extra=extra))
    return path


def problems(path, overrides=None) -> str:
    with pytest.raises(AlignError) as e:
        load_recipe(path, overrides)
    return str(e.value)


def test_valid_recipe_becomes_typed_config(tmp_path, train_file):
    r = load_recipe(recipe(tmp_path, train_file, "    learning_rate: 1e-4\n    epochs: 2\n"))
    stage = r.stage("sft")
    assert isinstance(stage, SFTStage)
    assert stage.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as a string; a float field accepts it
    assert stage.epochs == 2.0 and isinstance(stage.epochs, float)
    assert r.model.adapter == "lora" and r.model.lora.r == 16
    assert r.run_dir == "runs/r"


def test_unknown_key_names_line_and_suggests_nearest(tmp_path, train_file):
    msg = problems(recipe(tmp_path, train_file, "    learning_rte: 1.0e-4\n"))
    assert "recipe.yaml" in msg
    assert "line 9, stages.sft.learning_rte: unknown key; did you mean 'learning_rate'?" in msg


def test_wrong_type_names_key_and_value(tmp_path, train_file):
    msg = problems(recipe(tmp_path, train_file, "    batch_size: four\n"))
    assert "line 9, stages.sft.batch_size: expected int, got str 'four'" in msg


def test_all_errors_reported_at_once(tmp_path, train_file):
    msg = problems(recipe(tmp_path, train_file, "    batch_size: 2.5\n    packin: true\n    max_length: -3\n"))
    assert "stages.sft.batch_size" in msg and "stages.sft.packin" in msg and "did you mean 'packing'" in msg
    assert "3 problems" in msg and "stages.sft.max_length: must be >= 1, got -3" in msg  # ranges checked per field


def test_unknown_stage_kind(tmp_path, train_file):
    body = BASE.format(train=train_file, extra="").replace("kind: sft", "kind: sfy")
    msg = problems(recipe(tmp_path, train_file, body=body))
    assert "stages.sft.kind: unknown stage kind 'sfy'" in msg and "did you mean 'sft'" in msg


def test_missing_data_file(tmp_path, train_file):
    msg = problems(recipe(tmp_path, train_file, body=BASE.format(train=tmp_path / "nope.jsonl", extra="")))
    assert "line 5, data.sft.train: data file" in msg and "nope.jsonl' does not exist" in msg


def test_a_data_file_two_stages_read_is_one_problem(tmp_path):
    body = """name: r
model: {name: some/model}
data:
  rankings: {train: missing.jsonl}
stages:
  - {name: rm, kind: rm}
  - {name: dpo, kind: dpo}
"""
    msg = problems(recipe(tmp_path, None, body=body))
    assert msg.count("data.rankings.train: data file 'missing.jsonl' does not exist") == 1, msg
    assert "1 problem" in msg, msg


def test_init_must_name_an_earlier_stage(tmp_path, train_file):
    body = BASE.format(train=train_file, extra="    init: second\n") + "  - name: second\n    kind: sft\n"
    msg = problems(recipe(tmp_path, train_file, body=body))
    assert "stages.sft.init: 'second' is a later stage" in msg
    body = BASE.format(train=train_file, extra="    init: nothing\n")
    assert "'nothing' is not a stage" in problems(recipe(tmp_path, train_file, body=body))


def test_wrong_literal_suggests(tmp_path, train_file):
    body = BASE.format(train=train_file, extra="").replace("  name: some/model", "  name: m\n  adapter: lroa")
    assert "model.adapter: 'lroa' is not one of lora, full, qlora; did you mean 'lora'?" in \
        problems(recipe(tmp_path, train_file, body=body))


def test_yaml_syntax_error_names_line(tmp_path, train_file):
    path = recipe(tmp_path, train_file, body="name: r\nmodel: [unclosed\n")
    assert "recipe.yaml line" in problems(path) and "YAML syntax error" in problems(path)


def test_overrides_use_the_same_dotted_paths(tmp_path, train_file):
    path = recipe(tmp_path, train_file)
    r = load_recipe(path, ["stages.sft.learning_rate=1e-5", "model.lora.r=4", "tracking.backend=none"])
    assert r.stage("sft").learning_rate == 1e-5 and r.model.lora.r == 4 and r.tracking.backend == "none"
    assert load_recipe(path, ["tracking=tensorboard"]).tracking.backend == "tensorboard"  # shorthand
    assert "'tensorbord' is not one of" in problems(path, ["tracking=tensorbord"])
    msg = problems(path, ["stages.sft.learnin_rate=1"])
    assert "command-line override, stages.sft.learnin_rate: unknown key; did you mean 'learning_rate'?" in msg
    assert "no stage named 'rm'" in problems(path, ["stages.rm.beta=0.1"])
    assert "not of the form" in problems(path, ["stages.sft.learning_rate"])


def test_keys_named_as_other_trainers_name_them_are_told_their_align_name(tmp_path, train_file):
    """per_device_train_batch_size is nearest in spelling to eval_batch_size: the table, not the spelling, answers."""
    msg = problems(recipe(tmp_path, train_file), [
        "stages.sft.per_device_train_batch_size=4", "stages.sft.num_train_epochs=2", "stages.sft.lora_r=8",
        "model.model_name_or_path=x", "model.lora.lora_alpha=4", "report_to=wandb", "stages.sft.max_new_tokens=8"])
    for key, said in [("stages.sft.per_device_train_batch_size", "align calls it 'batch_size'"),
                      ("stages.sft.num_train_epochs", "align calls it 'epochs'"),
                      ("stages.sft.lora_r", "align calls it 'model.lora.r' (set in the recipe's model section)"),
                      ("model.model_name_or_path", "align calls it 'name'"),
                      ("model.lora.lora_alpha", "align calls it 'alpha'"),
                      ("report_to", "align calls it 'tracking.backend'")]:
        assert f"command-line override, {key}: unknown key; {said}" in msg, msg
    # an sft stage samples nothing: generation.max_new_tokens is no key of it, so the valid ones are listed
    assert "stages.sft.max_new_tokens: unknown key; valid keys: name, kind" in msg


def test_every_numeric_field_declares_its_range():
    import dataclasses
    import typing

    from align import schema

    for cls in [c for c in vars(schema).values() if dataclasses.is_dataclass(c)]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            numeric = {int, float} & {hints[f.name], *typing.get_args(hints[f.name])}
            assert not numeric or "range" in f.metadata, f"{cls.__name__}.{f.name} has no range"
            if "range" in f.metadata and f.default is not None and not isinstance(f.default, dataclasses.Field):
                from align.validator import out_of_range
                assert out_of_range(f.default, f.metadata["range"]) is None, (cls.__name__, f.name)  # defaults valid


def test_gates_may_name_every_metric_the_hook_table_declares_for_the_row(tmp_path, train_file):
    """Gate validation reads each built-in hook's metrics from the one hook table (`HOOKS`), so new hooks
    (llm_judge, a win rate with a named judge, kl, samples) and their named variants are known at once;
    rm_accuracy measures only rm rows, so a policy stage's gate on it is refused before training."""
    from align.evaluation.hooks import HOOKS

    rankings = tmp_path / "rankings.jsonl"
    rankings.write_text('{"prompt": "hi", "responses": ["a", "b"], "ranking": [0, 1]}\n')
    policy = [m for h in HOOKS.values() if h.head == "causal_lm" for m in h.metrics]
    gates = [f"{m} >= 0" for m in policy] + ["perplexity_increase <= 1", "win_rate_judged >= 0.5"]
    body = f"""name: r
model: {{name: some/model}}
data: {{sft: {{train: {train_file}}}, rankings: {{train: {rankings}}}}}
evals:
  - {{hook: rm_accuracy}}
  - {{hook: perplexity}}
  - {{hook: compliance}}
  - {{hook: win_rate, against: start}}
  - {{hook: win_rate, judge: rm, name: judged}}
  - {{hook: llm_judge, judge: some/judge, against: base}}
  - {{hook: kl}}
  - {{hook: samples}}
stages:
  - {{name: rm, kind: rm, gate: [{', '.join(f"'{m} > 0.5'" for m in HOOKS['rm_accuracy'].metrics)}]}}
  - {{name: sft, kind: sft, gate: [{', '.join(repr(g) for g in gates)}]}}
"""
    assert {"llm_win_rate", "win_rate", "kl", "eos_rate"} <= set(policy)
    assert all(set(h.judged) <= set(h.metrics) for h in HOOKS.values())  # the report's judged metrics are declared
    load_recipe(recipe(tmp_path, train_file, body=body))
    msg = problems(recipe(tmp_path, train_file, body=body.replace("'win_rate_judged >= 0.5'", "'rm_accuracy > 0'")))
    assert "stages.sft.gate[" in msg and "no metric 'rm_accuracy'" in msg
    msg = problems(recipe(tmp_path, train_file, body=body.replace("'rm_ece > 0.5'", "'win_rate > 0.5'")))
    assert "stages.rm.gate[" in msg and "no metric 'win_rate'" in msg


def test_enumerations_match_the_installed_transformers():
    import torch
    from transformers import SchedulerType, get_scheduler
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from align.schema import ATTN_IMPLEMENTATIONS, LR_SCHEDULERS

    assert set(ATTN_IMPLEMENTATIONS) <= {"eager", *ALL_ATTENTION_FUNCTIONS.keys()}
    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}
    for name in LR_SCHEDULERS:  # each works without scheduler arguments, as the stages call it
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        get_scheduler(name, opt, num_warmup_steps=1, num_training_steps=4).step()


def test_a_failed_wandb_login_logs_offline_without_printing_the_key(tmp_path, monkeypatch, caplog):
    from align.schema import TrackingSpec
    from align.tracking import Tracker

    monkeypatch.setenv("WANDB_API_KEY", "sekrit-garbage")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker = Tracker(TrackingSpec(), tmp_path, "g", {})
    tracker.start("sft")
    tracker.log({"loss": 1.0}, 1)
    tracker.finish()
    assert "logging offline" in caplog.text and "sekrit-garbage" not in caplog.text
    assert list((tmp_path / "wandb").glob("offline-run-*"))


IGNORED = """name: r
model: {{name: some/model}}
data: {{rankings: {{train: {rankings}}}, prompts: {{train: {prompts}}}}}
stages:
  - {{name: rm, kind: rm, loss: plackett_luce, margin: true}}
  - {{name: dpo, kind: dpo, loss: sigmoid, label_smoothing: 0.1}}
  - {{name: dpo_robust, kind: dpo, loss: robust, label_smoothing: 0.1}}
  - {{name: ppo, kind: ppo, generation: {{top_p: 0.9}}}}
  - {{name: grpo, kind: grpo, generation: {{top_p: 0.95}}}}
"""


def test_settings_a_loss_ignores_are_errors_naming_the_losses_that_use_them(tmp_path):
    """Issue 17.8 (and 17.5's refusal): label_smoothing with a dpo loss that ignores it, margin with
    plackett_luce, and top_p < 1 for on-policy sampling are validation errors naming the key, its line and
    the settings that do use it; through the `align` console script: exit 2, no traceback."""
    import subprocess
    import sys

    rankings = tmp_path / "rankings.jsonl"
    rankings.write_text('{"prompt": "hi", "chosen": "hello", "rejected": "go away"}\n')
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    path = tmp_path / "recipe.yaml"
    path.write_text(IGNORED.format(rankings=rankings, prompts=prompts))
    out = subprocess.run([sys.executable, "-m", "align", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    err = out.stderr
    assert "line 5, stages.rm.margin: loss 'plackett_luce' ignores margins (only bradley_terry" in err, err
    assert "line 6, stages.dpo.label_smoothing: loss 'sigmoid' ignores label_smoothing (only cdpo, robust" in err
    assert "stages.dpo_robust" not in err  # robust reads label_smoothing
    assert "line 8, stages.ppo.generation.top_p: ppo trains on the log-probs of the full tempered" in err
    assert "stages.grpo.generation.top_p: grpo trains" in err
    # the defaults are fine: margin unset with plackett_luce (nothing asked for), label_smoothing 0 with sigmoid
    path.write_text(IGNORED.format(rankings=rankings, prompts=prompts).replace(", margin: true", "")
                    .replace("loss: sigmoid, label_smoothing: 0.1", "loss: sigmoid").split("  - {name: ppo")[0])
    assert load_recipe(path).stage("rm").loss == "plackett_luce"
