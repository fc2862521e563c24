"""Sampling completions: where a completion stops (the chat template's end-of-turn token), which distribution
it is drawn from (never the model's generation_config knobs), and that the fast decoding loop gives the
tokens plain `model.generate` gives."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import TopPLogitsWarper

from align.decoding import nucleus
from align.generation import completion_logprobs, generate, prompt_ids, sampling_only, stop_token_ids
from align.models import load_model, load_tokenizer
from align.schema import ModelSpec
from tests.conftest import CORPUS

# The templates as the models ship them (Qwen2.5's without its tool-calling branches)
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == 'user') or "
    "(message.role == 'system' and not loop.first) or (message.role == 'assistant') %}{{- '<|im_start|>' + "
    "message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
# family -> (special tokens, eos, the token that ends an assistant turn, template)
FAMILIES = {
    "qwen2.5": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|endoftext|>", "<|im_end|>", QWEN25),
    "llama3": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|end_of_text|>", "<|eot_id|>", LLAMA3),
}


def family_tokenizer(family: str):
    """A tiny BPE tokenizer with the family's special tokens, EOS and chat template (pad = EOS, as both ship)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special, eos, _, template = FAMILIES[family]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 5, trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos,
                                   bos_token="<|begin_of_text|>" if family == "llama3" else None)
    fast.chat_template = template
    return fast


def tiny_lm(tok, eos: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tok.pad_token_id, eos_token_id=eos)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_token_that_ends_an_assistant_turn_stops_generation(family):
    """Issue 17.4: with EOS != the end-of-turn token (Qwen2.5 base, Llama 3), a completion stops at the
    token that follows an assistant message's content in the chat template, and counts as finished."""
    tok = family_tokenizer(family)
    end = tok.convert_tokens_to_ids(FAMILIES[family][2])
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "four"}],
                                   tokenize=False)
    assert text[text.index("four") + 4:].startswith(FAMILIES[family][2])  # the fixture renders as the family does
    model = tiny_lm(tok, eos=tok.eos_token_id)
    assert end != tok.eos_token_id and set(stop_token_ids(tok, model)) == {tok.eos_token_id, end}
    # a model whose every next token is the end-of-turn token: one token, finished
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size)
    torch.nn.init.zeros_(head.weight)
    head.bias.data = torch.nn.functional.one_hot(torch.tensor(end), model.config.vocab_size).float() * 10
    model.lm_head = head
    done = generate(model, tok, prompt_ids(tok, [[{"role": "user", "content": "what is two plus two"}]]), 8, 0.0)
    assert done[0].ids == [end] and done[0].finished and done[0].text == ""


def test_no_template_means_eos_only(tiny_tokenizer_only_dir):
    spec = ModelSpec(name=str(tiny_tokenizer_only_dir))
    tok = load_tokenizer(spec)
    model = load_model(spec, "causal_lm", trainable=False)
    assert stop_token_ids(tok, model) == [tok.eos_token_id]


@pytest.fixture
def knobbed(tiny_model_dir):
    """The tiny model with the generation_config knobs Instruct models ship (and more): all of them change
    the distribution model.generate samples from."""
    spec = ModelSpec(name=str(tiny_model_dir))
    model = load_model(spec, "causal_lm", trainable=False)
    model.generation_config.update(repetition_penalty=1.3, top_k=3, typical_p=0.5, no_repeat_ngram_size=1,
                                   min_new_tokens=6, do_sample=True, temperature=0.3)
    tok = load_tokenizer(spec)
    ids = prompt_ids(tok, [[{"role": "user", "content": q}] for q in
                           ("what is two plus two", "how do I bake bread", "please tell me a story", "hi")])
    return model, tok, ids


def test_rollouts_are_sampled_from_the_distribution_their_log_probs_come_from(knobbed):
    """Issue 17.5: the model's generation_config (repetition_penalty 1.3, top_k, typical_p,
    no_repeat_ngram_size, min_new_tokens) must not shape sampling: the log-probs the sampling pass drew each
    token with equal those of a separate forward (PPO's), and greedy picks the forward's argmax."""
    model, tok, ids = knobbed
    greedy = generate(model, tok, ids, 12, temperature=0.0)
    for c in greedy:
        logits = model(input_ids=torch.tensor([c.prompt_ids + c.ids])).logits[0, len(c.prompt_ids) - 1:-1]
        assert logits.argmax(-1).tolist() == c.ids
    assert any(len(set(c.ids)) < len(c.ids) for c in greedy)  # repeats: no_repeat_ngram_size was not applied
    sampled = generate(model, tok, ids, 12, temperature=1.0, seed=0)
    forward = completion_logprobs(model, sampled, tok.pad_token_id)
    for c, lp in zip(sampled, forward):
        assert torch.allclose(torch.tensor(c.logprobs), lp, atol=1e-4)


def test_dropping_finished_rows_gives_plain_generate_s_tokens(tiny_model_dir):
    """Rows leave the batch when they stop (KV cache rows dropped); greedy tokens are those of plain
    `model.generate` on the same batch with the same stop tokens."""
    spec = ModelSpec(name=str(tiny_model_dir))
    model, tok = load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec)
    prompts = [[{"role": "user", "content": " ".join(CORPUS[i:i + 1 + i % 3])}] for i in range(8)]
    ids = prompt_ids(tok, prompts)
    free = generate(model, tok, ids, 16, 0.0, batch_size=8)
    # a stop token each row reaches at a different step, so rows leave the batch at different times
    firsts = {}
    for c in free:
        for j, t in enumerate(c.ids):
            firsts.setdefault(t, set()).add(j)
    stop = max(firsts, key=lambda t: len(firsts[t]))
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    ours = generate(model, tok, ids, 16, 0.0, batch_size=8)
    assert len({len(c.ids) for c in ours}) > 1 and any(c.finished for c in ours)
    # fewer rows than prompts: waiting prompts join the running batch (their caches padded to its width)
    assert [c.ids for c in generate(model, tok, ids, 16, 0.0, batch_size=3)] == [c.ids for c in ours]
    from trl.trainer.utils import pad
    rows = [torch.tensor(r) for r in ids]
    x = pad(rows, padding_value=tok.pad_token_id, padding_side="left")
    mask = pad([torch.ones_like(r) for r in rows], padding_value=0, padding_side="left")
    plain = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=16, do_sample=False,
                           eos_token_id=[tok.eos_token_id, stop], pad_token_id=tok.pad_token_id)
    for c, row in zip(ours, plain[:, x.shape[1]:].tolist()):
        assert c.ids == row[:len(c.ids)] and (not c.finished or c.ids[-1] in (stop, tok.eos_token_id))


def test_nucleus_matches_transformers_top_p():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    for top_p in (0.1, 0.5, 0.9, 0.99):
        expected = TopPLogitsWarper(top_p)(None, logits.clone())
        assert torch.equal(nucleus(logits, top_p).isinf(), expected.isinf())


def test_seeded_sampling_repeats_and_leaves_the_global_random_state_alone(tiny_model_dir):
    spec = ModelSpec(name=str(tiny_model_dir))
    model, tok = load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec)
    ids = prompt_ids(tok, [[{"role": "user", "content": "hi"}]] * 3)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    a = generate(model, tok, ids, 10, 1.0, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert [c.ids for c in a] == [c.ids for c in generate(model, tok, ids, 10, 1.0, seed=3)]


def test_samplers_calling_model_generate_see_none_of_the_model_s_knobs(knobbed):
    """Issue 17.5 for rloo / grpo: TRL samples with model.generate, which fills every knob TRL leaves unset
    from the model's generation_config; inside `sampling_only` those are gone (greedy = the forward's argmax),
    and the model's config is back afterwards (the saved artifact keeps it)."""
    from transformers import GenerationConfig

    model, tok, ids = knobbed
    x = torch.tensor([ids[0]])
    with sampling_only(model):
        out = model.generate(input_ids=x, generation_config=GenerationConfig(max_new_tokens=12, do_sample=False))
    logits = model(input_ids=out).logits[0, x.shape[1] - 1:-1]
    assert logits.argmax(-1).tolist() == out[0, x.shape[1]:].tolist()
    assert model.generation_config.repetition_penalty == 1.3 and model.generation_config.no_repeat_ngram_size == 1


def test_a_completion_does_not_depend_on_the_batch_it_was_sampled_in(tiny_model_dir):
    """Each prompt draws from its own seeded stream, and prompts join the batch as rows finish: the same seed
    gives the same tokens and log-probs at batch size 1, 3 (rows joining a running batch) and all at once."""
    spec = ModelSpec(name=str(tiny_model_dir))
    model, tok = load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec)
    ids = prompt_ids(tok, [[{"role": "user", "content": " ".join(CORPUS[i:i + 1 + i % 4])}] for i in range(7)])
    runs = [generate(model, tok, ids, 12, 1.0, batch_size=b, seed=5) for b in (1, 3, 7)]
    assert len({tuple(c.ids) for c in runs[0]}) > 1
    alone = generate(model, tok, ids[4:5], 12, 1.0, seed=5)[0]  # in a list of its own
    assert alone.ids == runs[0][4].ids
    twice = generate(model, tok, [ids[0]] * 6, 12, 1.0, seed=5)  # copies of one prompt: other samples
    assert twice[0].ids == runs[0][0].ids and len({tuple(c.ids) for c in twice}) > 1
    for other in runs[1:]:
        assert [c.ids for c in other] == [c.ids for c in runs[0]]
        for a, b in zip(other, runs[0]):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_long_completions_grow_the_cache_past_its_reserved_room(tiny_model_dir):
    """The decode cache reserves room ahead and grows when a completion outruns it: 150 greedy tokens equal
    plain `model.generate`'s."""
    spec = ModelSpec(name=str(tiny_model_dir))
    model, tok = load_model(spec, "causal_lm", trainable=False), load_tokenizer(spec)
    model.generation_config.eos_token_id = None
    tok_eos, tok.eos_token = tok.eos_token, None  # no stop token: every row runs the whole 150 tokens
    try:
        ids = prompt_ids(tok, [[{"role": "user", "content": CORPUS[0]}], [{"role": "user", "content": CORPUS[1]}]])
        ours = generate(model, tok, ids, 150, 0.0, batch_size=2)
    finally:
        tok.eos_token = tok_eos
    for c, p in zip(ours, ids):
        plain = model.generate(input_ids=torch.tensor([p]), max_new_tokens=150, do_sample=False, eos_token_id=None,
                               pad_token_id=tok.pad_token_id)
        assert len(c.ids) == 150 and c.ids == plain[0, len(p):].tolist()
