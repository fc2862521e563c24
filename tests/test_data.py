"""Data reading: formats, assistant-only masks, and errors that name file, line and field."""

from __future__ import annotations

import pytest

from align.data import load_split, parse_chat, read_records, render_chats, tokenize_chat
from align.errors import AlignError
from align.models import load_tokenizer
from align.schema import DataSpec, ModelSpec
from tests.conftest import chat, write_jsonl


def test_prompt_completion_becomes_messages(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "completion": "hello"}, chat("q", "a")])
    recs = [parse_chat(*r) for r in read_records(str(f))]
    assert recs[0]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert recs[1]["messages"][1]["content"] == "a"


@pytest.mark.parametrize("line, expected", [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}',
     "line 2, field 'messages'[1]: expected"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}',
     "line 2, field 'messages'[1]: empty content"),
    ('{"prompt": "hi"}', "line 2: an SFT record needs 'messages' or 'prompt' and 'completion'"),
    ('{"prompt": "hi", "completion": ""}', "line 2, field 'completion': empty text"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "line 2: no assistant message"),
    ('{"messages": [', "line 2: invalid JSON"),
    ('[1, 2]', "line 2: expected a JSON object"),
])
def test_malformed_line_names_file_line_field(tmp_path, line, expected):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "ok", "completion": "fine"}\n' + line + "\n")
    with pytest.raises(AlignError) as e:
        load_split(DataSpec(train=str(f)), parse_chat, seed=0)
    assert str(f) in str(e.value) and expected in str(e.value)


def test_non_utf8_and_empty_files(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"prompt": "ok", "completion": "fine"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(AlignError, match="line 2: not UTF-8"):
        list(read_records(str(bad)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(AlignError, match="the file is empty"):
        list(read_records(str(empty)))


def test_eval_fraction_holds_out_without_overlap(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", f"a{i}") for i in range(20)])
    train, evals = load_split(DataSpec(train=str(f), eval_fraction=0.25), parse_chat, seed=1)
    assert len(train) == 15 and len(evals) == 5
    assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in evals}


def test_max_eval_examples_keeps_the_first_held_out_records_and_all_of_train(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [chat(f"q{i}", f"a{i}") for i in range(10)])
    e = write_jsonl(tmp_path / "e.jsonl", [chat(f"e{i}", f"b{i}") for i in range(6)])
    train, evals = load_split(DataSpec(train=str(f), eval=str(e), max_eval_examples=4), parse_chat, seed=1)
    assert len(train) == 10 and [r["messages"][0]["content"] for r in evals] == ["e0", "e1", "e2", "e3"]
    train, evals = load_split(DataSpec(train=str(f), eval_fraction=0.5, max_eval_examples=2), parse_chat, seed=1)
    assert len(train) == 5 and len(evals) == 2  # held out first, then cut: no held-out record goes back to train


def test_assistant_mask_covers_exactly_the_assistant_turns(tiny_model_dir):
    tok = load_tokenizer(ModelSpec(name=str(tiny_model_dir)))
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is two plus two"},
                {"role": "assistant", "content": "four"}, {"role": "user", "content": "and the cat"},
                {"role": "assistant", "content": "sat on the mat"}]
    row = tokenize_chat(tok, messages)
    ids, mask = row["input_ids"], row["assistant_masks"]
    assert len(ids) == len(mask)
    learned = tok.decode([t for t, m in zip(ids, mask) if m])
    assert learned == "four<|im_end|>\nsat on the mat<|im_end|>\n"
    prompt = tok.decode([t for t, m in zip(ids, mask) if not m])
    assert "what is two plus two" in prompt and "<|im_start|>assistant\n" in prompt and "four" not in prompt


def test_batched_rendering_gives_the_ids_of_one_chat_template_call_each(tiny_model_dir):
    tok = load_tokenizer(ModelSpec(name=str(tiny_model_dir)))
    chats = [[{"role": "user", "content": f"question {i} " * i}, {"role": "assistant", "content": f"answer {i}"}]
             for i in range(1, 6)]
    for generation_prompt in (False, True):
        rows = render_chats(tok, chats, generation_prompt, batch_size=2)  # three batches, the last one short
        expected = [list(tok.apply_chat_template(c, tokenize=True, add_generation_prompt=generation_prompt)
                         ["input_ids"]) for c in chats]
        assert rows == expected and len({len(r) for r in rows}) == 5


def test_mix_in_adds_the_asked_share_of_general_records(tmp_path):
    from align.data import mix_in, parse_chat
    from align.schema import MixSpec

    general = write_jsonl(tmp_path / "general.jsonl", [chat(f"general question {i}", "an answer") for i in range(5)])
    train = [parse_chat("t", i, chat(f"task {i}", "done")) for i in range(18)]
    mixed, added = mix_in(train, MixSpec(data=str(general), ratio=0.1), parse_chat, seed=0)
    assert added == 2 and len(mixed) == 20  # 2 of 20 = the ratio
    assert sum("general" in r["messages"][0]["content"] for r in mixed) == 2
    assert mix_in(train, None, parse_chat, 0) == (train, 0)
    many, added = mix_in(train, MixSpec(data=str(general), ratio=0.5), parse_chat, seed=0)
    firsts = [r["messages"][0]["content"] for r in many]
    assert added == 18 and len({q for q in firsts if "general" in q}) == 5  # every general record, repeated


def test_csv_prompt_sets_and_prompt_records(tmp_path):
    from align.data import parse_prompt

    f = tmp_path / "p.csv"
    f.write_text('prompt,label\n"Hi, there",benign\n"bad, row",harmful,extra\n')
    rows = read_records(str(f))
    first = parse_prompt(*next(rows))
    assert first == {"label": "benign", "prompt": [{"role": "user", "content": "Hi, there"}]}
    with pytest.raises(AlignError, match=r"p.csv line 3: more values than the 2 header columns"):
        next(rows)
    msgs = parse_prompt("f", 1, chat("q", "a"))  # an SFT record: its assistant turn is dropped
    assert msgs["prompt"] == [{"role": "user", "content": "q"}]
    with pytest.raises(AlignError, match="line 4: a prompt record needs a non-empty 'prompt'"):
        parse_prompt("f", 4, {"text": "x"})


def test_tokenization_is_cached_by_records_and_tokenizer_and_never_half_written(tiny_model_dir, tmp_path,
                                                                                  monkeypatch):
    from datasets import Dataset

    from align.data import cached_tokens

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    tok = load_tokenizer(ModelSpec(name=str(tiny_model_dir)))
    built = []

    def build(texts: list[str]):
        def run():
            built.append(texts)
            return Dataset.from_dict({"input_ids": tok(texts)["input_ids"]}), {"truncated": len(texts)}
        return run

    def boom():
        raise RuntimeError("crash while tokenizing")

    with pytest.raises(RuntimeError):  # a crash leaves nothing that a later run would load
        cached_tokens("t", ["a dog"], tok, boom)
    first, counts = cached_tokens("t", ["a dog"], tok, build(["a dog"]))
    again, counts_again = cached_tokens("t", ["a dog"], tok, boom)  # a hit never builds
    assert again.to_list() == first.to_list() and counts_again == counts == {"truncated": 1}
    cached_tokens("t", ["a cat"], tok, build(["a cat"]))  # other records
    tok.chat_template = tok.chat_template + " "
    cached_tokens("t", ["a dog"], tok, build(["a dog"]))  # another chat template
    assert built == [["a dog"], ["a cat"], ["a dog"]]
    assert len(list((tmp_path / "cache" / "tokenized").iterdir())) == 3
