"""Arrow tables to JSON text, column by column, with no per-row Python.

Every value of a column is encoded at once into a string array of JSON texts; structs and lists
are assembled from their children's encodings with Arrow's string kernels. Strings are quoted
and escaped by the Rust core in one pass over the column's bytes, and come out as UTF-8 (like
``json.dumps(..., ensure_ascii=False)``); floats in their shortest round-trip form; non-finite
floats, which JSON cannot hold, become ``null``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dpov2 import _core

__all__ = ["encode_rows", "encoded_bytes"]

TEXT = pa.large_string()


def encode_rows(table: pa.Table, suffix: str) -> pa.Array:
    """One JSON object per row (keys in column order), each followed by ``suffix``."""
    if table.num_rows == 0:
        return pa.array([], TEXT)
    pieces: list[pa.Array | str] = []
    for i, name in enumerate(table.column_names):
        pieces.append(("{" if i == 0 else ", ") + _quote_literal(name) + ": ")
        pieces.append(encode_values(table.column(i).combine_chunks()))
    pieces.append("}" + suffix)
    return _concat(pieces)


def encoded_bytes(encoded: pa.Array) -> memoryview:
    """The concatenated UTF-8 bytes of a null-free large string array, without copying."""
    offsets = np.frombuffer(encoded.buffers()[1], dtype=np.int64)
    start = int(offsets[encoded.offset])
    end = int(offsets[encoded.offset + len(encoded)])
    data = encoded.buffers()[2]
    return memoryview(data)[start:end] if data is not None else memoryview(b"")


def encode_values(array: pa.Array) -> pa.Array:
    """The JSON text of every value of ``array`` (``null`` for nulls), as a large string array."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return encode_values(array.dictionary_decode())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = _quote(array.cast(TEXT))
    elif pa.types.is_integer(kind):
        encoded = array.cast(TEXT)
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(array)
        encoded = pc.if_else(finite, array.cast(pa.float64()).cast(TEXT), pa.scalar("null", TEXT))
    elif pa.types.is_boolean(kind):
        encoded = pc.if_else(array, pa.scalar("true", TEXT), pa.scalar("false", TEXT))
    elif pa.types.is_null(kind):
        return pa.array(["null"] * len(array), TEXT)
    elif pa.types.is_struct(kind):
        encoded = _encode_struct(array)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        encoded = _encode_list(array)
    else:
        raise TypeError(f"cannot write Arrow type {kind} as JSON")
    if array.null_count:
        encoded = pc.if_else(array.is_valid(), encoded, pa.scalar("null", TEXT))
    return encoded


def _encode_struct(array: pa.StructArray) -> pa.Array:
    if array.type.num_fields == 0:
        return pa.array(["{}"] * len(array), TEXT)
    pieces: list[pa.Array | str] = []
    for i in range(array.type.num_fields):
        name = array.type.field(i).name
        pieces.append(("{" if i == 0 else ", ") + _quote_literal(name) + ": ")
        pieces.append(encode_values(array.field(i)))
    pieces.append("}")
    return _concat(pieces)


def _encode_list(array: pa.Array) -> pa.Array:
    # The offsets index the child array; a sliced array starts past its first value.
    offsets = array.offsets.to_numpy().astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    items = encode_values(array.values.slice(first, last - first))
    lists = pa.LargeListArray.from_arrays(pa.array(offsets - first), items)
    joined = pc.binary_join(lists, pa.scalar(", ", TEXT))
    return _concat(["[", joined, "]"])


def _quote(strings: pa.LargeStringArray) -> pa.Array:
    """Each string as a JSON string literal (RFC 8259, section 7); nulls come out as ``""``."""
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)
    offsets = offsets[strings.offset : strings.offset + len(strings) + 1]
    data = strings.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    new_offsets, new_data = _core.quote_json_strings(offsets, raw)
    return pa.LargeStringArray.from_buffers(
        len(strings), pa.py_buffer(new_offsets), pa.py_buffer(new_data)
    )


def _quote_literal(text: str) -> str:
    """A key as a JSON string literal, escaped the same way as the columns."""
    return str(_quote(pa.array([text], TEXT))[0].as_py())


def _concat(pieces: list[pa.Array | str]) -> pa.Array:
    """Element-wise concatenation of arrays and literal strings (broadcast to every row)."""
    args = [pa.scalar(p, TEXT) if isinstance(p, str) else p.cast(TEXT) for p in pieces]
    return pc.binary_join_element_wise(*args, pa.scalar("", TEXT))
