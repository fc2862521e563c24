"""`align chat` (streamed, /reset, /exit) and `align generate` (prompt files in the hooks' formats, records with
the settings and the artifact's fingerprint), on the shared tiny run; bad input exits 2 through the real console
script."""

from __future__ import annotations

import argparse
import io
import json

import pytest
import torch

from align import chat
from align.cli import main
from align.generation import stop_token_ids
from align.inference import open_artifact
from tests.conftest import write_jsonl
from tests.test_export import align_cli


def test_reply_streams_in_pieces_that_make_the_greedy_answer(tiny_run):
    loaded = open_artifact(str(tiny_run / "sft"))
    messages = [{"role": "user", "content": "what is two plus two"}]
    pieces = list(chat.stream_reply(loaded, messages, max_new_tokens=12, temperature=0, top_p=1.0))
    ids = loaded.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        whole = loaded.model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=loaded.tok.pad_token_id,
                                      eos_token_id=stop_token_ids(loaded.tok, loaded.model))
    expected = loaded.tok.decode(whole[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(pieces) > 1 and "".join(pieces) == expected


def test_chat_keeps_the_conversation_until_reset(tiny_run, monkeypatch, capsys):
    seen = []

    def fake_reply(loaded, messages, *args, **kw):
        seen.append([m["content"] for m in messages])
        yield "fine"

    monkeypatch.setattr(chat, "stream_reply", fake_reply)
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nand then?\n/reset\nagain\n/bogus\n/exit\nnever read\n"))
    args = argparse.Namespace(artifact=str(tiny_run / "sft"), model=None, system="be brief", max_new_tokens=8,
                              temperature=0.7, top_p=1.0, seed=1)
    assert chat._chat(args) == 0
    assert seen == [["be brief", "hello"], ["be brief", "hello", "fine", "and then?"], ["be brief", "again"]]
    out = capsys.readouterr().out
    assert out.count("assistant> fine") == 3 and "(new conversation)" in out and "unknown command /bogus" in out


def test_chat_command_streams_answers_and_leaves_on_exit(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("what is two plus two\n/reset\nhow do I bake bread\n/exit\n"))
    assert main(["chat", str(tiny_run / "dpo"), "--max-new-tokens", "6", "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 2 and "(new conversation)" in out


def test_generate_answers_every_prompt_with_settings_and_fingerprint(tiny_run, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "prompt": "what is two plus two"},
        {"id": "b", "messages": [{"role": "user", "content": "how do I bake bread"}]},
        {"id": "c", "prompt": "please tell me a story", "label": "ordinary"}])
    csv = tmp_path / "p.csv"
    csv.write_text("id,prompt\nx,what is two plus two\ny,how do I bake bread\n")
    out = tmp_path / "answers.jsonl"
    fingerprint = json.loads((tiny_run / "dpo" / "artifact.json").read_text())["fingerprint"]
    for source, ids in ((prompts, ["a", "b", "c"]), (csv, ["x", "y"])):
        assert main(["generate", str(tiny_run / "dpo"), "--prompts", str(source), "--out", str(out),
                     "--max-new-tokens", "5", "--batch-size", "2", "--temperature", "0"]) == 0
        done = capsys.readouterr()
        assert "generating" in done.err and fingerprint in done.out  # the progress bar, the summary line
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["id"] for r in rows] == ids
        assert all(isinstance(r["response"], str) and 1 <= r["tokens"] <= 5 for r in rows)
        assert rows[0]["generation"] == {"artifact": str((tiny_run / "dpo").resolve()), "fingerprint": fingerprint,
                                         "model": rows[0]["generation"]["model"], "max_new_tokens": 5,
                                         "temperature": 0.0, "top_p": 1.0, "seed": 42}
    assert rows[0]["prompt"] == [{"role": "user", "content": "what is two plus two"}]


@pytest.mark.parametrize("args,message", [
    ("chat {run}/rm", "is a reward artifact"),
    ("generate {run}/dpo --prompts {bad} --out {out}", "bad.jsonl line 2"),
    ("generate {run}/dpo --prompts {missing} --out {out}", "no such file"),
    ("generate {run}/dpo --prompts {bad} --out {bad}", "is the prompt file itself"),
    ("generate {run}/dpo --prompts {bad} --out {out} --top-p 0", "--top-p 0.0: must be in (0, 1]"),
    ("chat base", "needs --model"),
])
def test_bad_chat_and_generate_requests_exit_2(tiny_run, tmp_path, args, message):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "fine"}, {"question": "no prompt here"}])
    paths = {"run": tiny_run, "bad": bad, "out": tmp_path / "out.jsonl", "missing": tmp_path / "missing.jsonl"}
    done = align_cli(*args.format(**paths).split(), input="/exit\n")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_chat_on_the_embedded_model_offline():
    done = align_cli("chat", "base", "--model", "smollm2-135m-instruct", "--max-new-tokens", "24",
                     "--temperature", "0", input="What is the capital of France?\n/exit\n",
                     env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout.split("assistant> ", 1)[1]
