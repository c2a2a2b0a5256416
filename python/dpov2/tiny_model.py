"""A tiny causal LM and tokenizer built entirely in code, for tests, demos and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in-process on a small built-in
corpus (or one you pass), and the model is a randomly initialised Llama-style decoder. Both are
deterministic: the tokenizer from its corpus, the model from its seed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

__all__ = [
    "DEFAULT_CORPUS",
    "TINY_REWARD_MODEL",
    "build_tiny_model",
    "build_tiny_reward_model",
    "build_tiny_tokenizer",
]

#: The name that stands for :func:`build_tiny_reward_model` wherever a reward model is named.
TINY_REWARD_MODEL = "dpov2:tiny-reward"

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# Renders each message as `<|role|>content<|eos|>` and, for generation, opens an assistant turn.
# A prompt rendered with `add_generation_prompt=True` is then a prefix of the prompt followed by the
# assistant's reply, which is what TRL needs to find where the completion starts.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

# A few lines of plain English so that common words become single tokens; any other text still
# encodes, byte by byte, because the byte-level alphabet is always in the vocabulary.
DEFAULT_CORPUS: tuple[str, ...] = (
    "Question: what is the answer? Answer: the answer is yes.",
    "Question: is this good or bad? Answer: this is good, not bad.",
    "The quick brown fox jumps over the lazy dog again and again.",
    "A helpful assistant gives short, correct and polite answers to every user.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000.",
    "good good good bad bad bad yes no maybe please thank you hello world",
    "Prompt: write a word. Response: apple banana cherry orange lemon grape.",
    "User: tell me something nice. Assistant: you are doing great today.",
)


def build_tiny_tokenizer(
    corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer in-process and wrap it for transformers and TRL.

    The result has bos/eos/pad tokens, adds the bos token when encoding plain text, decodes back
    to the exact input text, and carries a minimal chat template (roles `system`, `user`,
    `assistant`). `vocab_size` caps the number of tokens (256 bytes + special tokens + merges);
    a small corpus may yield fewer.
    """
    specials = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *ROLE_TOKENS]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    bos_id = backend.token_to_id(BOS_TOKEN)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    max_position_embeddings: int = 512,
    tie_word_embeddings: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> LlamaForCausalLM:
    """Build a randomly initialised Llama-style causal LM whose special tokens match `tokenizer`.

    The defaults give a ~0.1M-parameter model that trains in seconds on a CPU; larger sizes (e.g.
    hidden 1024, 28 layers) serve benchmarks. `vocab_size` defaults to the tokenizer's size and may
    be set larger to give the LM head a realistic cost. `intermediate_size` defaults to 4x hidden.
    Weights depend only on `seed`: the global torch RNG is forked, so callers' state is untouched.
    """
    if vocab_size is None:
        vocab_size = len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the tokenizer ({len(tokenizer)})"
        )
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(dtype)  # type: ignore[arg-type]  # transformers' decorator hides Module.to's signature
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def build_tiny_reward_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    seed: int = 1,
    dtype: torch.dtype = torch.float32,
) -> LlamaForSequenceClassification:
    """A tiny reward model: :func:`build_tiny_model`'s decoder (with ``seed``) under a one-label
    score head (also drawn from ``seed``), as a reward model is an LM with its head replaced.

    It reads the score at the last token that is not padding (``pad_token_id`` is set), so
    padded batches score as single texts do. The global torch RNG is left untouched.
    """
    policy = build_tiny_model(tokenizer, seed=seed)
    config = copy.deepcopy(policy.config)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)  # type: ignore[no-untyped-call]
    model.model.load_state_dict(policy.model.state_dict())
    model.to(dtype)  # type: ignore[arg-type]  # as in build_tiny_model
    return model
