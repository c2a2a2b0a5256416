"""NumPy and Arrow arrays converted through their buffers equal pyarrow's own conversions,
sliced arrays and nulls included, and the pairing path never imports pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from dpov2.arrays import from_numpy, mask, nulls, one_array, to_numpy

values = st.lists(st.one_of(st.none(), st.floats(allow_nan=False, width=64)), max_size=40)


@settings(deadline=None)
@given(values, st.integers(0, 10), st.integers(0, 40))
def test_values_and_nulls_of_a_sliced_array_are_read_from_its_buffers(
    items: list[float | None], start: int, length: int
) -> None:
    array = pa.array(items, pa.float64()).slice(start, length)
    expected = np.array([np.nan if v is None else v for v in array.to_pylist()], np.float64)
    np.testing.assert_array_equal(to_numpy(array, np.float64), expected)
    assert nulls(array).tolist() == [v is None for v in array.to_pylist()]


@settings(deadline=None)
@given(st.lists(st.booleans(), max_size=70), st.lists(st.integers(-(2**63), 2**63 - 1)))
def test_numpy_arrays_become_equal_arrow_arrays(bits: list[bool], ints: list[int]) -> None:
    assert mask(np.array(bits, np.bool_)).to_pylist() == bits
    numbers = np.array(ints, np.int64)
    converted = from_numpy(numbers)
    assert converted.type == pa.int64() and converted.to_pylist() == ints


def test_a_contiguous_array_is_shared_not_copied() -> None:
    numbers = np.arange(10, dtype=np.int64)
    view = to_numpy(from_numpy(numbers), np.int64)
    assert np.shares_memory(view, numbers)


def test_a_column_of_one_chunk_is_that_chunk_uncopied() -> None:
    chunk = pa.array(["a", "bc", None])
    one = one_array(pa.chunked_array([chunk]))
    assert one.buffers()[2].address == chunk.buffers()[2].address
    split = one_array(pa.chunked_array([chunk, pa.array(["d"])]))
    assert split.to_pylist() == ["a", "bc", None, "d"]
    assert one_array(pa.chunked_array([], pa.string())).to_pylist() == []


def test_a_null_typed_column_is_all_null() -> None:
    assert nulls(pa.nulls(3)).tolist() == [True, True, True]


def test_pairing_a_file_does_not_import_pandas(tmp_path: object) -> None:
    code = (
        "import sys\n"
        "from dpov2.cli import main\n"
        f"main(['pair', 'examples/data/scored_sample.json', '{tmp_path}/p.parquet',"
        " '--method', 'max_min', '--length-penalty', '0.001'])\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
