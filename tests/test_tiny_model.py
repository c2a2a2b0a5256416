"""The in-code tokenizer and tiny model: deterministic, self-consistent, and usable by TRL."""

from __future__ import annotations

import pytest
import torch

from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer


def test_tokenizer_is_deterministic_and_round_trips_any_text() -> None:
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    text = "Question: is this good? Ünïcode ✓ and 12345"
    ids = first(text)["input_ids"]
    assert ids[0] == first.bos_token_id
    assert first.decode(ids, skip_special_tokens=True) == text
    assert len({first.bos_token_id, first.eos_token_id, first.pad_token_id}) == 3


def test_chat_template_prompt_is_a_prefix_of_prompt_plus_reply() -> None:
    tokenizer = build_tiny_tokenizer()
    prompt = [{"role": "user", "content": "hello"}]
    reply = [{"role": "assistant", "content": " yes"}]
    prompt_ids = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=True
    )
    full_ids = tokenizer.apply_chat_template(prompt + reply, tokenize=True, return_dict=True)
    n = len(prompt_ids["input_ids"])
    assert full_ids["input_ids"][:n] == prompt_ids["input_ids"]
    assert full_ids["input_ids"][-1] == tokenizer.eos_token_id


def test_model_weights_depend_only_on_the_seed_and_leave_global_rng_alone() -> None:
    tokenizer = build_tiny_tokenizer()
    state = torch.random.get_rng_state()
    a, b = build_tiny_model(tokenizer, seed=3), build_tiny_model(tokenizer, seed=3)
    c = build_tiny_model(tokenizer, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    b_params, c_params = dict(b.named_parameters()), dict(c.named_parameters())
    for name, param in a.named_parameters():
        assert torch.equal(param, b_params[name]), name
    assert any(not torch.equal(p, c_params[name]) for name, p in a.named_parameters())


def test_model_matches_tokenizer_and_can_pad_its_vocabulary() -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, vocab_size=1024, dtype=torch.bfloat16)
    assert model.config.vocab_size == 1024 and model.dtype == torch.bfloat16
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    ids = torch.tensor([tokenizer("hello world")["input_ids"]])
    out = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 3)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        build_tiny_model(tokenizer, vocab_size=10)
