"""NumPy arrays as Arrow arrays, sharing their memory.

``pyarrow.array`` imports pandas on its first call, whatever it converts (to recognise pandas
objects): about a second of every ``dpov2 pair`` run, more than pairing a small dataset takes.
So does ``Array.to_numpy``. These read and build the arrays' buffers directly instead.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

_Scalar = TypeVar("_Scalar", bound=np.generic)

__all__ = ["from_numpy", "mask", "nulls", "one_array", "to_numpy"]


def from_numpy(values: npt.NDArray[np.number]) -> pa.Array:
    """A one-dimensional numeric NumPy array as an Arrow array without nulls (no copy when
    it is contiguous)."""
    values = np.ascontiguousarray(values)
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def one_array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as it is, otherwise its chunks concatenated
    (``combine_chunks`` copies every buffer even of a single chunk: a batch's texts, each
    batch, on the thread that pairs)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def mask(values: npt.NDArray[np.bool_]) -> pa.BooleanArray:
    """A NumPy boolean array as an Arrow boolean array (bit-packed, so copied)."""
    bits = np.packbits(np.asarray(values, dtype=np.bool_), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def to_numpy(array: pa.Array, dtype: type[_Scalar]) -> npt.NDArray[_Scalar]:
    """A numeric Arrow array's values as ``dtype`` (a view when no conversion is needed);
    null entries read as NaN, so ``dtype`` must be a float one if there are nulls."""
    raw = np.dtype(array.type.to_pandas_dtype())
    buffer = array.buffers()[1]
    if buffer is None:
        return np.empty(0, dtype)
    values = np.frombuffer(buffer, raw, len(array), array.offset * raw.itemsize)
    values = values.astype(dtype, copy=False)
    if array.null_count:
        values = np.where(nulls(array), np.nan, values)
    return values


def nulls(array: pa.Array) -> npt.NDArray[np.bool_]:
    """Which entries of ``array`` are null."""
    if pa.types.is_null(array.type):
        return np.ones(len(array), dtype=np.bool_)
    validity = array.buffers()[0]
    if validity is None:
        return np.zeros(len(array), dtype=np.bool_)
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
    return ~bits[array.offset : array.offset + len(array)].astype(np.bool_)
