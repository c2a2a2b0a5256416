"""Response lengths for the length penalty: Unicode characters (LMFlow's ``len(text)``) or
tokens of a given tokenizer.

Each unit measures a whole Arrow array at once (the fast path) and a single ``str`` (the
reference path); the two agree exactly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from dpov2 import _core
from dpov2.arrays import nulls, to_numpy
from dpov2.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["CHARACTERS", "LengthUnit", "TokenLengths", "length_unit"]


class LengthUnit(Protocol):
    name: str

    def measure(
        self, texts: pa.Array, *, num_threads: int | None = None
    ) -> npt.NDArray[np.float64]:
        """The length of every (non-null) text; ``num_threads`` for units that use threads
        (see :mod:`dpov2.threads`)."""
        ...

    def measure_one(self, text: str) -> float: ...


class CharacterLengths:
    """Unicode code points, as Python's ``len(str)`` counts them. Arrays of strings are
    counted in Rust on ``num_threads`` threads (``utf8_length`` runs on one), other types
    (string views) by ``utf8_length``; a null's length is NaN."""

    name = "characters"

    def measure(
        self, texts: pa.Array, *, num_threads: int | None = None
    ) -> npt.NDArray[np.float64]:
        if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
            return to_numpy(pc.utf8_length(texts), np.float64)
        lengths = _core.char_lengths(texts, num_threads=num_threads).astype(np.float64)
        if texts.null_count:
            lengths[nulls(texts)] = np.nan
        return lengths

    def measure_one(self, text: str) -> float:
        return float(len(text))


CHARACTERS = CharacterLengths()


class TokenLengths:
    """Tokens of ``tokenizer``, special tokens (BOS, EOS) not counted."""

    name = "tokens"

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def measure(
        self, texts: pa.Array, *, num_threads: int | None = None
    ) -> npt.NDArray[np.float64]:
        del num_threads  # the tokenizer has its own parallelism
        ids: list[list[int]] = self.tokenizer(texts.to_pylist(), add_special_tokens=False)[
            "input_ids"
        ]
        return np.fromiter(map(len, ids), dtype=np.float64, count=len(ids))

    def measure_one(self, text: str) -> float:
        return float(len(self.tokenizer(text, add_special_tokens=False)["input_ids"]))


def length_unit(tokenizer: str | os.PathLike[str] | Any | None) -> LengthUnit:
    """Characters for ``None``; tokens for a tokenizer, or a local folder to load one from
    with ``transformers.AutoTokenizer`` (nothing is downloaded)."""
    if tokenizer is None:
        return CHARACTERS
    if not isinstance(tokenizer, (str, os.PathLike)):
        return TokenLengths(tokenizer)
    path = os.fspath(tokenizer)
    if not os.path.isdir(path):
        raise InputError("no such folder; expected a local tokenizer folder", file=path)
    from transformers import AutoTokenizer

    from dpov2.formats.hf import one_line

    # Loading, then a first use: a folder of valid JSON files that is not a tokenizer fails
    # in either with whatever the parser met first (KeyError, TypeError, the tokenizers
    # crate's bare Exception...); each is the folder's fault, so one line naming it.
    try:
        loaded = AutoTokenizer.from_pretrained(path, local_files_only=True)
        unit = TokenLengths(loaded)
        unit.measure_one("length probe")
    except Exception as err:  # (see above)
        raise InputError(f"cannot load a tokenizer: {one_line(err)}", file=path) from None
    return unit
