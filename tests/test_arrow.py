"""Arrow data into Rust and back (rust/bindings/arrow.rs): equal, zero-copy, and refused with a
clear error when it is not a record batch."""

from __future__ import annotations

import ctypes
import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpov2._core import ArrowBatch

TYPES = [
    pa.int64(),
    pa.int8(),
    pa.uint32(),
    pa.float64(),
    pa.float32(),
    pa.bool_(),
    pa.string(),
    pa.large_string(),
    pa.list_(pa.string()),
    pa.large_list(pa.float64()),
    pa.struct([("role", pa.string()), ("content", pa.string())]),
    pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())])),
    pa.dictionary(pa.int32(), pa.string()),
]

values = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "int8": st.integers(-128, 127),
    "uint32": st.integers(0, 2**32 - 1),
    "double": st.floats(),
    "float": st.floats(width=32),
    "bool": st.booleans(),
    "string": st.text(max_size=8),
    "large_string": st.text(max_size=8),
}


def value_of(kind: pa.DataType) -> st.SearchStrategy[object]:
    """Python values (or None) that pyarrow turns into an array of ``kind``."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = value_of(kind.value_type)
        return st.none() | st.lists(item, max_size=3)
    if pa.types.is_struct(kind):
        fields = {kind.field(i).name: value_of(kind.field(i).type) for i in range(kind.num_fields)}
        return st.none() | st.fixed_dictionaries(fields)
    if pa.types.is_dictionary(kind):
        return st.none() | st.sampled_from(["a", "b", "é"])
    return st.none() | values[str(kind)]


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    kinds = draw(st.lists(st.sampled_from(TYPES), max_size=4))
    rows = draw(st.integers(0, 6))
    columns = [pa.array([draw(value_of(k)) for _ in range(rows)], k) for k in kinds]
    batch = pa.RecordBatch.from_arrays(columns, names=[f"c{i}" for i in range(len(kinds))])
    start = draw(st.integers(0, rows))
    return batch.slice(start, draw(st.integers(0, rows - start)))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_a_batch_comes_back_from_rust_equal(batch: pa.RecordBatch) -> None:
    back = pa.record_batch(ArrowBatch(batch))
    assert back.num_rows == batch.num_rows
    assert back.schema == batch.schema
    # Row by row, NaN equal to NaN (`RecordBatch.equals` holds a NaN unequal to itself).
    assert nan_as_text(back.to_pylist()) == nan_as_text(batch.to_pylist())


def nan_as_text(value: object) -> object:
    """``value`` with every float NaN in it, however nested, replaced by ``"nan"``."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return [nan_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: nan_as_text(v) for k, v in value.items()}
    return value


def test_the_round_trip_shares_buffers_and_keeps_metadata() -> None:
    texts = pa.array(["long text " * 10, None, "é日😀"])
    batch = pa.record_batch({"t": texts}, metadata={"origin": "test"})
    back = pa.record_batch(ArrowBatch(batch))
    assert back.column(0).buffers()[2].address == texts.buffers()[2].address
    assert back.schema.metadata == {b"origin": b"test"}
    assert back.to_pylist() == batch.to_pylist()


def test_a_batch_can_be_exported_many_times_and_outlives_its_source() -> None:
    exported = ArrowBatch(pa.record_batch({"x": [1, 2, 3]}))
    first, second = pa.record_batch(exported), pa.record_batch(exported)
    del exported
    assert first.to_pylist() == second.to_pylist() == [{"x": 1}, {"x": 2}, {"x": 3}]


def test_rows_without_columns_are_kept() -> None:
    batch = pa.record_batch([pa.array([1, 2])], names=["x"]).select([])
    back = pa.record_batch(ArrowBatch(batch))
    assert (back.num_rows, back.num_columns) == (2, 0)


def test_what_is_not_a_record_batch_is_refused() -> None:
    with pytest.raises(TypeError, match=r"__arrow_c_array__\), got list"):
        ArrowBatch([1, 2])
    with pytest.raises(TypeError, match=r"struct array.*type Int64"):
        ArrowBatch(pa.array([1, 2]))
    nullable_rows = pa.array([{"x": 1}, None], pa.struct([("x", pa.int64())]))
    with pytest.raises(ValueError, match="null rows is not a record batch"):
        ArrowBatch(nullable_rows)


class _CArray(ctypes.Structure):
    """The C Data Interface's ``struct ArrowArray``."""

    _fields_ = [
        ("length", ctypes.c_int64),
        ("null_count", ctypes.c_int64),
        ("offset", ctypes.c_int64),
        ("n_buffers", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("buffers", ctypes.c_void_p),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _LyingExporter:
    """Exports a real 2-row batch whose column says it has ``length`` rows, as a faulty
    producer might."""

    def __init__(self, length: int) -> None:
        self.array = _CArray()
        self.schema = (ctypes.c_byte * 128)()  # struct ArrowSchema is 72 bytes
        batch = pa.record_batch({"s": ["ab", "c"]})
        batch._export_to_c(ctypes.addressof(self.array), ctypes.addressof(self.schema))
        child = ctypes.cast(self.array.children, ctypes.POINTER(ctypes.POINTER(_CArray)))
        child[0].contents.length = length

    def __arrow_c_array__(self, requested_schema: object = None) -> tuple[object, object]:
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        schema = new(ctypes.addressof(self.schema), b"arrow_schema", None)
        return schema, new(ctypes.addressof(self.array), b"arrow_array", None)


def test_a_malformed_export_is_refused_not_read_past() -> None:
    assert pa.record_batch(ArrowBatch(_LyingExporter(2))).to_pylist() == [{"s": "ab"}, {"s": "c"}]
    with pytest.raises(ValueError, match="length"):
        ArrowBatch(_LyingExporter(1))
