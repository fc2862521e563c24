"""`align chat` (an interactive chat in the terminal) and `align generate` (batched answers to a prompt file).

    align chat runs/quickstart/dpo [--max-new-tokens 256] [--temperature 0.7] [--top-p 0.9] [--system TEXT]
    align chat base --model smollm2-135m-instruct
    align generate runs/quickstart/dpo --prompts prompts.jsonl --out answers.jsonl [--batch-size 16]

Both use the artifact's chat template and `generation.generate`, which stops where an assistant turn ends.
The chat streams tokens as they are sampled (transformers' `TextIteratorStreamer`); `/reset` starts a new
conversation, `/exit` (or end of input) leaves. `generate` reads prompts in the formats the evaluation
hooks read (JSONL or CSV with `prompt` or chat `messages`; other fields are kept) and writes one record per
prompt, each with the settings and the artifact's fingerprint, atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from align.errors import AlignError

if TYPE_CHECKING:  # the command line imports this module to list its commands: torch only when one runs
    from align.inference import Loaded


def register(sub: Any) -> None:
    """Add `chat` and `generate` to the `align` command's subparsers."""
    chat = sub.add_parser("chat", help="chat with a stage artifact (or a base model) in the terminal, streamed")
    _model_args(chat)
    chat.add_argument("--system", help="a system message that opens every conversation")
    _sampling_args(chat, max_new_tokens=256)
    chat.set_defaults(func=_chat)

    gen = sub.add_parser("generate", help="answer every prompt of a file (JSONL/CSV) with a stage artifact, batched")
    _model_args(gen)
    gen.add_argument("--prompts", required=True, metavar="FILE",
                     help="JSONL or CSV records with 'prompt' (text or messages) or chat 'messages'")
    gen.add_argument("--out", required=True, metavar="FILE", help="JSONL file to write, one record per prompt")
    gen.add_argument("--max-examples", type=int, metavar="N", help="answer only the first N prompts")
    gen.add_argument("--batch-size", type=int, default=16, help="prompts generated together (default 16)")
    _sampling_args(gen, max_new_tokens=256)
    gen.set_defaults(func=_generate)


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", metavar="ARTIFACT", help="a stage folder (runs/quickstart/dpo), or 'base' "
                                                             "with --model")
    parser.add_argument("--model", help="base model name (for 'base', or to override the artifact's)")


def _sampling_args(parser: argparse.ArgumentParser, max_new_tokens: int) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                        help=f"longest answer in tokens (default {max_new_tokens})")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature; 0 = greedy (default 0.7)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0: off)")
    parser.add_argument("--seed", type=int, default=42, help="sampling seed (default 42)")


def _check_sampling(args: argparse.Namespace) -> None:
    """The sampling flags, against the ranges of the recipe's `generation` keys they mirror."""
    from align.schema import GenerationSpec
    from align.validator import flag_problems

    names = ("max_new_tokens", "temperature", "top_p", "seed", "batch_size", "max_examples")
    if problems := flag_problems({n: getattr(args, n, None) for n in names}, GenerationSpec):
        raise AlignError("bad generation settings", problems)


# ---- chat ------------------------------------------------------------------------------------------

def stream_reply(loaded: Loaded, messages: list[dict], max_new_tokens: int, temperature: float, top_p: float,
                 seed: int | None = None) -> Iterator[str]:
    """The assistant's reply to `messages`, yielded piece by piece as `generation.generate` samples it (the
    sampler of `align generate` and the evaluation hooks: the same stop tokens, the same distribution)."""
    from transformers import TextIteratorStreamer

    from align.generation import generate, prompt_ids

    streamer = TextIteratorStreamer(loaded.tok, skip_special_tokens=True)  # gets the reply's tokens only
    errors: list[BaseException] = []

    def work() -> None:
        try:
            generate(loaded.model, loaded.tok, prompt_ids(loaded.tok, [messages]), max_new_tokens, temperature,
                     top_p, batch_size=1, seed=seed, streamer=streamer)
        except BaseException as e:  # re-raised in the caller's thread, after the streamer is closed
            errors.append(e)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]


MAX_LINE = 1 << 20  # characters of one message: past any context window; a line without end is no message


def _read_line(interactive: bool) -> str | None:
    """The next message, None at the end of the input. Piped input is read at most MAX_LINE characters at a time:
    a line without end (`< /dev/zero`, a binary file) would otherwise fill the memory before it is refused."""
    if interactive:
        try:
            return input("you> ")
        except EOFError:
            return None
    line = sys.stdin.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise AlignError(f"a line of standard input is longer than {MAX_LINE} characters (no line end: a device or "
                         "a binary file?)", hint="pipe in text, one message a line")
    return line.removesuffix("\n") if line else None


def _chat(args: argparse.Namespace) -> int:
    from align.inference import open_artifact, require_chat

    _check_sampling(args)
    if sys.stdin is None:  # `align chat <&-`: input() would fail on the first line, after the model loaded
        raise AlignError("standard input is closed, and align chat reads your messages from it",
                         hint="run it in a terminal, or pipe the messages in: align chat ... < messages.txt")
    loaded = open_artifact(args.artifact, args.model, head="causal_lm")
    require_chat(loaded, "chat")
    import torch  # imported only now: a bad request fails before it (seconds)

    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    torch.manual_seed(args.seed)  # once: the same inputs in the same order give the same session
    print(f"chatting with {loaded.source} (max {args.max_new_tokens} new tokens, temperature {args.temperature}); "
          "/reset starts over, /exit leaves", flush=True)
    interactive, refused = sys.stdin.isatty(), False
    while True:
        if (line := _read_line(interactive)) is None:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = list(start)
            print("(new conversation)", flush=True)
            continue
        if text.startswith("/"):
            print(f"unknown command {text}: /reset starts over, /exit leaves", flush=True)
            continue
        if why := _refused(loaded, messages + [{"role": "user", "content": line}]):
            print(f"error: {why}", file=sys.stderr, flush=True)
            refused = True
            continue
        messages.append({"role": "user", "content": line})
        print("assistant> ", end="", flush=True)
        reply = ""
        for piece in stream_reply(loaded, messages, args.max_new_tokens, args.temperature, args.top_p):
            reply += piece
            print(piece, end="", flush=True)
        print(flush=True)
        messages.append({"role": "assistant", "content": reply.strip()})
    return 2 if refused else 0  # a line was refused: said above, and the exit status says so too


def _refused(loaded: Loaded, messages: list[dict]) -> str | None:
    """Why the chat cannot answer `messages` (its last line is left out, the conversation goes on), or None."""
    from align.generation import prompt_ids

    try:
        messages[-1]["content"].encode("utf-8")
    except UnicodeEncodeError:  # Python decodes bytes the terminal's encoding cannot read to lone surrogates
        return "that line is not UTF-8 text (a byte the terminal could not decode); type it again"
    tokens, limit = len(prompt_ids(loaded.tok, [messages])[0]), context_length(loaded)
    if limit and tokens >= limit:
        return f"the conversation is {tokens} tokens, and the model reads at most {limit}; /reset starts over"
    return None


def context_length(loaded: Loaded) -> int | None:
    """The most tokens the model reads (its position embeddings), None when its config does not say."""
    value = getattr(loaded.model.config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


# ---- generate --------------------------------------------------------------------------------------

def read_prompts(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every prompt record of a file as {"prompt": messages, **its other fields}, all bad lines at once."""
    from align.data import parse_prompt, read_records

    if not Path(path).is_file():
        raise AlignError(f"--prompts {path}: no such file")
    records, bad = [], []
    for src, line, rec in read_records(path):
        try:
            records.append(parse_prompt(src, line, rec))
        except AlignError as e:
            bad.append(str(e))
        if limit and len(records) >= limit:
            break
    if bad:
        raise AlignError(f"{path}: {len(bad)} bad prompt record{'s' * (len(bad) > 1)}", bad)
    if not records:
        raise AlignError(f"{path}: no prompts", hint="one record per line with 'prompt' or chat 'messages'")
    return records


def _generate(args: argparse.Namespace) -> int:
    from align.inference import open_artifact, require_chat
    from align.paths import output_file

    _check_sampling(args)
    out = output_file("--out", args.out, inputs={"the prompt file": args.prompts})  # before any work
    records = read_prompts(args.prompts, args.max_examples)
    loaded = open_artifact(args.artifact, args.model, head="causal_lm")
    require_chat(loaded, "generate")
    from tqdm.auto import tqdm  # imported only now, like torch: a bad request fails fast

    from align.generation import generate, prompt_ids

    settings = {"artifact": loaded.source, "fingerprint": loaded.fingerprint, "model": loaded.spec.name,
                "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
                "seed": args.seed}
    ids = prompt_ids(loaded.tok, [r["prompt"] for r in records])
    limit = context_length(loaded)
    if limit and (long := [i + 1 for i, x in enumerate(ids) if len(x) >= limit]):
        raise AlignError(f"{args.prompts}: {len(long)} prompt{'s' * (len(long) > 1)} longer than the model reads "
                         f"({limit} tokens): record{'s' * (len(long) > 1)} {', '.join(map(str, long[:10]))}",
                         hint="shorten them or leave them out")
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # batches of similar length pad little
    answers: dict[int, Any] = {}
    with tqdm(total=len(ids), desc="generating", unit="prompt", file=sys.stderr) as bar:  # also when piped
        for start in range(0, len(order), args.batch_size):
            chunk = order[start:start + args.batch_size]
            done = generate(loaded.model, loaded.tok, [ids[i] for i in chunk], args.max_new_tokens, args.temperature,
                            args.top_p, args.batch_size, seed=args.seed + start)
            answers.update(zip(chunk, done))
            bar.update(len(chunk))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w") as f:
            for i, rec in enumerate(records):
                c = answers[i]
                f.write(json.dumps(rec | {"response": c.text.strip(), "tokens": len(c.ids), "finished": c.finished,
                                          "generation": settings}) + "\n")
        os.replace(tmp, out)
    except OSError as e:  # the folder changed since the check (a full disk, removed): say so, leave no temp file
        tmp.unlink(missing_ok=True)
        raise AlignError(f"cannot write --out {out}: {(e.strerror or str(e)).lower()}") from None
    print(f"wrote {len(records)} answers to {out} ({loaded.source}, fingerprint {loaded.fingerprint})")
    return 0
