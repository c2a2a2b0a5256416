"""What a prompt's texts say, in plain Python: which responses repeat an earlier one, and a
stable hash of the instance to key its draws by. The Rust core computes the same from Arrow
buffers (``rust/core/src/content.rs``); the tests compare the two."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def fnv1a(data: bytes, state: int = FNV_OFFSET) -> int:
    """FNV-1a, 64 bits, of ``data``, continuing from ``state``."""
    for byte in data:
        state = ((state ^ byte) * FNV_PRIME) & MASK64
    return state


def _piece(data: bytes, state: int) -> int:
    """``data`` preceded by its length (8 bytes, little-endian)."""
    return fnv1a(data, fnv1a(len(data).to_bytes(8, "little"), state))


def content_key(prompt: str | Sequence[Mapping[str, str]] | None, texts: Sequence[str]) -> int:
    """FNV-1a over the number of prompt pieces (8 bytes, little-endian), each prompt piece
    (the text, or each message's role then content; none for a missing prompt) and each
    response text, every piece UTF-8 and preceded by its length."""
    if prompt is None:
        pieces: list[str] = []
    elif isinstance(prompt, str):
        pieces = [prompt]
    else:
        pieces = [part for message in prompt for part in (message["role"], message["content"])]
    state = fnv1a(len(pieces).to_bytes(8, "little"))
    for piece in [*pieces, *texts]:
        state = _piece(piece.encode(), state)
    return state


def duplicate_of(texts: Sequence[str]) -> list[int]:
    """For one prompt's responses: the index of the first response with the same text (its
    own index for a first occurrence). Texts are compared byte for byte (as ``str``, which
    is the same for valid UTF-8)."""
    first: dict[str, int] = {}
    return [first.setdefault(text, k) for k, text in enumerate(texts)]
