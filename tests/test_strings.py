"""The Rust string kernels of the fast path equal pyarrow's own (``utf8_length``, ``take``) on
any text, sliced arrays, nulls and both offset widths; the character unit counts as ``len``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpov2 import _core
from dpov2.convert.lengths import CHARACTERS

texts = st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=60)
string_types = st.sampled_from([pa.string(), pa.large_string()])


def sliced(items: list[str | None], kind: pa.DataType, start: int, length: int) -> pa.Array:
    return pa.array(items, kind).slice(start, length)


@settings(max_examples=200, deadline=None)
@given(texts, string_types, st.integers(0, 5), st.integers(0, 60))
def test_char_lengths_equal_utf8_length(
    items: list[str | None], kind: pa.DataType, start: int, length: int
) -> None:
    array = sliced(items, kind, start, length)
    expected = pc.utf8_length(array).fill_null(0).to_pylist()
    assert _core.char_lengths(array, num_threads=2).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(texts, string_types, st.integers(0, 5), st.integers(0, 60))
def test_character_lengths_are_len_and_nan_for_nulls(
    items: list[str | None], kind: pa.DataType, start: int, length: int
) -> None:
    array = sliced(items, kind, start, length)
    expected = [np.nan if t is None else float(len(t)) for t in array.to_pylist()]
    np.testing.assert_array_equal(CHARACTERS.measure(array, num_threads=1), expected)


@settings(max_examples=200, deadline=None)
@given(texts, string_types, st.integers(0, 5), st.data())
def test_gather_strings_equals_take(
    items: list[str | None], kind: pa.DataType, start: int, data: st.DataObject
) -> None:
    array = sliced(items, kind, start, len(items))
    picks = st.lists(st.integers(0, max(0, len(array) - 1)), max_size=80 if len(array) else 0)
    indices = np.array(data.draw(picks), np.int64)
    gathered = pa.record_batch(_core.gather_strings(array, indices, num_threads=2)).column(0)
    expected = array.take(pa.array(indices, pa.int64()))
    gathered.validate(full=True)
    assert gathered.type == expected.type
    assert gathered.equals(expected)


def test_gather_strings_refuses_an_index_out_of_bounds() -> None:
    array = pa.array(["a", "b", "c"]).slice(1)
    with pytest.raises(ValueError, match="index 2 at position 1 is out of bounds"):
        _core.gather_strings(array, np.array([0, 2], np.int64))


def test_the_kernels_refuse_what_is_not_a_string_array() -> None:
    with pytest.raises(TypeError, match="string or large_string array, got type Int64"):
        _core.char_lengths(pa.array([1, 2]))
    with pytest.raises(TypeError, match="got type Int64"):
        _core.gather_strings(pa.array([1, 2]), np.array([0], np.int64))
