"""Ranking records: every accepted form, pair expansion, per-field errors, and whole-file checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from align.cli import main
from align.errors import AlignError
from align.metrics import (
    calibration_error,
    expected_calibration_error,
    pairwise_accuracy,
    reward_stats,
    top1_agreement,
    wilson,
)
from align.rankings import Ranking, check_file, expand_pairs, parse_ranking, read_rankings, to_pairs
from tests.conftest import write_jsonl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HH = SHARED / "hh-rlhf-harmless-base" / "test_first80.jsonl"
OASST = SHARED / "oasst-en100-ranked" / "kwise_first80.jsonl"
GOOD = {"prompt": "p", "responses": ["a", "b", "c", "d"], "ranking": [2, [0, 3], 1]}


def parse(rec: dict) -> Ranking:
    return parse_ranking("f.jsonl", 7, rec)


def test_ties_expand_to_the_right_pairs_and_pair_modes():
    r = parse(GOOD)
    assert r.ranking == [[2], [0, 3], [1]] and r.group_of() == [1, 2, 0, 1]
    assert sorted(expand_pairs(r)) == [(0, 1), (2, 0), (2, 1), (2, 3), (3, 1)]  # no (0, 3): tied
    strict = parse({**GOOD, "ranking": [3, 1, 0, 2]})
    assert len(expand_pairs(strict)) == 6 and to_pairs(strict, "all") == expand_pairs(strict)
    assert to_pairs(strict, "best_vs_rest") == [(3, 1), (3, 0), (3, 2)]
    assert to_pairs(strict, "adjacent") == [(3, 1), (1, 0), (0, 2)]
    assert to_pairs(r, "adjacent") == [(2, 0), (2, 3), (0, 1), (3, 1)]


def test_every_accepted_form():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "q"}]
    native = parse({"prompt": msgs, "responses": [{"role": "assistant", "content": "x"}, "y"], "ranking": [1, 0],
                    "annotator": "ann", "scores": [0.5, 1]})
    assert native.prompt == msgs and native.responses == ["x", "y"] and native.ranking == [[1], [0]]
    assert native.annotator == "ann" and native.scores == [0.5, 1]
    pair = parse({"prompt": "p", "chosen": "good", "rejected": "bad", "margin": 2.0})
    assert pair.prompt == [{"role": "user", "content": "p"}] and pair.responses == ["good", "bad"]
    assert pair.ranking == [[0], [1]] and pair.margin == 2.0
    implicit = parse({"chosen": msgs + [{"role": "assistant", "content": "g"}],
                      "rejected": msgs + [{"role": "assistant", "content": "b"}]})
    assert implicit.prompt == msgs and implicit.responses == ["g", "b"]
    explicit = parse({"prompt": msgs, "chosen": [{"role": "assistant", "content": "g"}],
                      "rejected": [{"role": "assistant", "content": "b"}]})
    assert explicit.prompt == msgs and explicit.responses == ["g", "b"]
    ultrafeedback = parse({"prompt": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant",
                           "content": "g"}], "rejected": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "b"}]})
    assert ultrafeedback.prompt == [{"role": "user", "content": "q"}] and ultrafeedback.responses == ["g", "b"]
    hh = parse({"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: q\n\nAssistant: g",
                "rejected": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: q\n\nAssistant: b"})
    assert hh.prompt == msgs and hh.responses == ["g", "b"]
    oasst = parse({"conversation": [{"role": "prompter", "text": "q"}],
                   "replies": [{"text": "mid", "rank": 1}, {"text": "top", "rank": 0}, {"text": "low", "rank": 2}]})
    assert oasst.prompt == [{"role": "user", "content": "q"}] and oasst.ranking == [[1], [0], [2]]


@pytest.mark.parametrize("rec, field, message", [
    ({**GOOD, "ranking": [2, [0, 3], 4, 1]}, "ranking", "index 4 is out of range"),
    ({**GOOD, "ranking": [2, [0, 2], 1, 3]}, "ranking", "index 2 appears twice"),
    ({**GOOD, "ranking": [2, 0, 1]}, "ranking", "missing 3"),
    ({**GOOD, "ranking": [2, "0", 1, 3]}, "ranking", "is not a response index"),
    ({**GOOD, "ranking": "2013"}, "ranking", "expected a list"),
    ({**GOOD, "responses": ["a"], "ranking": [0]}, "responses", "at least two"),
    ({**GOOD, "responses": ["a", " ", "c", "d"]}, "responses[1]", "empty text"),
    ({**GOOD, "responses": ["a", 3, "c", "d"]}, "responses[1]", "expected a string"),
    ({**GOOD, "ranking": [[0, 1, 2, 3]]}, "ranking", "every response is tied"),
    ({**GOOD, "scores": [1, 2]}, "scores", "4 numbers"),
    ({"prompt": "p", "chosen": "g", "rejected": "b", "margin": "big"}, "margin", "expected a number"),
    ({"chosen": "g", "rejected": "b"}, "prompt", "missing"),
    ({"chosen": "\n\nHuman: a\n\nAssistant: g", "rejected": "\n\nHuman: b\n\nAssistant: x"}, "rejected",
     "differs from 'chosen'"),
    ({"conversation": [{"role": "prompter", "text": "q"}], "replies": [{"text": "a", "rank": "0"}]},
     "replies[0].rank", "integer rank"),
])
def test_each_bad_record_names_file_line_and_field(rec, field, message):
    with pytest.raises(AlignError) as e:
        parse(rec)
    assert e.value.message.startswith(f"f.jsonl line 7, field '{field}'") and message in e.value.message


def test_check_file_lists_every_bad_line_and_cli(tmp_path, capsys):
    rows = [GOOD, {**GOOD, "ranking": [0, 1]}, GOOD, {"foo": 1}, {**GOOD, "responses": ["", "b", "c", "d"]}]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    path.write_text(path.read_text() + "{not json\n")
    problems = check_file(path)
    assert [p.split(":")[0].split(",")[0] for p in problems] == [f"{path} line {n}" for n in (2, 4, 5, 6)]
    assert main(["data", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "4 bad records (2 good)" in err and f"{path} line 6: invalid JSON" in err
    good = write_jsonl(tmp_path / "g.jsonl", [GOOD, {"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert main(["data", "check", str(good)]) == 0
    assert "2 records, 6 responses, 6 ranked pairs" in capsys.readouterr().out


@pytest.mark.skipif(not HH.exists(), reason="shared hh-rlhf sample not present")
def test_hh_rlhf_reader_on_the_real_file():
    problems = check_file(HH)
    # 4 records have an empty final reply, 2 differ before the last Assistant turn: all named, none fatal
    assert len(problems) == 6 and all("field" in p for p in problems)
    good = [parse_ranking(str(HH), n, json.loads(line)) for n, line in enumerate(HH.read_text().splitlines(), 1)
            if not any(p.startswith(f"{HH} line {n},") for p in problems)]
    assert len(good) == 1849 - 6
    first = good[0]
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt[0]["content"] == "what are some pranks with a pen i can do?"
    assert first.prompt[-1]["content"] == "okay some of these do not have anything to do with pens"
    assert first.responses[0].startswith("No, sorry!  All of these involve a pen")
    assert first.responses[1].startswith("There are lots of funny things you can do with pens")


@pytest.mark.skipif(not OASST.exists(), reason="shared OpenAssistant sample not present")
def test_oasst_reader_on_the_real_file():
    rankings = read_rankings(str(OASST))
    assert len(rankings) == 172
    sizes = [len(r.responses) for r in rankings]
    assert sizes.count(2) == 51 and sizes.count(3) == 92 and max(sizes) == 9
    assert all(r.prompt[-1]["role"] == "user" for r in rankings)


def test_metrics_match_hand_computed_values():
    scores = [[0.0, 2.0, 1.0], [1.0, 1.0]]
    rankings = [[[1], [2], [0]], [[0], [1]]]
    # pairs: (1,2) ok, (1,0) ok, (2,0) ok; prompt 2: (0,1) score tie = half
    assert pairwise_accuracy(scores, rankings) == pytest.approx(3.5 / 4)
    assert top1_agreement(scores, rankings) == pytest.approx(1.0)  # argmax of a tie is the first index
    assert top1_agreement([[3.0, 2.0, 1.0]], [[[1], [2], [0]]]) == 0.0
    assert calibration_error([0.95, 0.05, 0.55, 0.45], [1, 0, 0, 1]) == pytest.approx((0.05 + 0.05 + 0.55 + 0.55) / 4)
    import math

    p = 1 / (1 + math.exp(-1.0))  # one pair, better scored 1 higher: probs p (label 1) and 1-p (label 0)
    assert expected_calibration_error([[1.0, 0.0]], [[[0], [1]]]) == pytest.approx(1 - p)
    assert reward_stats([[1.0, 3.0], [2.0]]) == pytest.approx({"reward_mean": 2.0, "reward_std": math.sqrt(2 / 3)})


def test_wilson_by_hand():
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # never a zero-width interval at 0/n
    assert wilson(15, 30) == (pytest.approx(0.3315, abs=1e-4), pytest.approx(0.6685, abs=1e-4))
    assert wilson(30, 30)[1] == 1.0 and wilson(30, 30)[0] == pytest.approx(0.8865, abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0))
