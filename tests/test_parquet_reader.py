"""The Rust Parquet reader (``_core.ParquetReader``) against pyarrow, its reference.

Hypothesis draws scored tables (string or chat-message prompts, nulls at every level, plain and
large strings, strings that are not UTF-8) and writes them with pyarrow under every codec,
both data page versions, with and without dictionaries, in row groups and pages small enough
that a read crosses many. The reader, reading ahead or not, must give pyarrow's table (as
``pq.read_table`` reads it) in batches of the asked size, with each string that is not UTF-8
a null and, per row, the first such string named as a plain-Python walk of the row finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpov2 import _core
from dpov2.errors import InputError
from dpov2.formats import open_scored
from dpov2.formats.parquet import parquet_tables, read_parquet

CODECS = ["snappy", "zstd", "gzip", "lz4", "brotli", "none"]
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

# Mostly UTF-8 text (some not ASCII), sometimes bytes that are not UTF-8 (a lone continuation
# byte, a cut sequence, an invalid lead byte), sometimes a null.
_BAD = [b"\xff", b"\x80", b"\xc3", b"ab\xe2\x82", b"\xed\xa0\x80"]
_text = st.one_of(
    st.text(alphabet=st.sampled_from("ab é漢🙂"), max_size=12).map(str.encode),
    st.sampled_from(_BAD).flatmap(lambda bad: st.sampled_from([bad, b"x" + bad, bad + b"y"])),
    st.none(),
)


def _strings(values: list[bytes | None], large: bool) -> pa.Array:
    """String values as written, UTF-8 or not: bytes viewed as strings, which is unchecked."""
    binary = pa.array(values, pa.large_binary() if large else pa.binary())
    return binary.view(pa.large_string() if large else pa.string())


@st.composite
def _tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 40))
    large = draw(st.booleans())
    chat = draw(st.booleans())
    rows: list[dict[str, Any]] = []
    texts: list[bytes | None] = []
    sizes: list[int | None] = []
    scores: list[float | None] = []
    for _ in range(n):
        size = draw(st.one_of(st.integers(0, 4), st.none()))
        sizes.append(size)
        for _ in range(size or 0):
            texts.append(draw(_text))
            scores.append(draw(st.one_of(st.floats(allow_nan=False), st.none())))
        rows.append({})
    responses = pa.StructArray.from_arrays(
        [_strings(texts, large), pa.array(scores, pa.float64())], names=["text", "score"]
    )
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + (size or 0))
    mask = pa.array([size is None for size in sizes], pa.bool_())
    outputs = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), responses, mask=mask)
    if chat:
        contents = [draw(_text) for _ in range(2 * n)]
        roles = [b"user" if k % 2 == 0 else b"assistant" for k in range(2 * n)]
        messages = pa.StructArray.from_arrays(
            [_strings(roles, large), _strings(contents, large)], names=["role", "content"]
        )
        prompts: pa.Array = pa.ListArray.from_arrays(
            pa.array(range(0, 2 * n + 1, 2), pa.int32()), messages
        )
    else:
        prompts = _strings([draw(_text) for _ in range(n)], large)
    extra = pa.array(range(n), pa.int64())
    return pa.table({"input": prompts, "output": outputs, "id": extra})


def _write(table: pa.Table, path: Path, draw: st.DrawFn) -> None:
    pq.write_table(
        table,
        path,
        compression=draw(st.sampled_from(CODECS)),
        use_dictionary=draw(st.booleans()),
        data_page_version=draw(st.sampled_from(["1.0", "2.0"])),
        row_group_size=draw(st.integers(1, 30)),
        data_page_size=draw(st.sampled_from([64, 1024, 1 << 20])),
        write_batch_size=draw(st.integers(1, 16)),
    )


def _walk(value: Any, place: str) -> str | None:
    """The place of the first value under ``value`` (bytes, lists and dicts as pyarrow gives
    them for binary columns) that is not UTF-8, in reading order."""
    if isinstance(value, bytes):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return place
        return None
    if isinstance(value, list):
        for k, item in enumerate(value):
            if (found := _walk(item, f"{place}[{k}]")) is not None:
                return found
    if isinstance(value, dict):
        for name, item in value.items():
            if (found := _walk(item, f"{place}.{name}")) is not None:
                return found
    return None


def _as_binary(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_string(kind):
        return pa.binary()
    if pa.types.is_large_string(kind):
        return pa.large_binary()
    if pa.types.is_list(kind):
        return pa.list_(pa.field(kind.value_field.name, _as_binary(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _as_binary(f.type)) for f in kind])
    return kind


def _expected(
    path: Path, columns: list[str] | None
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """pyarrow's rows, strings as bytes, with each row's first non-UTF-8 place."""
    table = pq.read_table(path, columns=columns)
    schema = pa.schema([pa.field(f.name, _as_binary(f.type)) for f in table.schema])
    rows = table.cast(schema).to_pylist()
    bad = []
    for i, row in enumerate(rows):
        for name, value in row.items():
            if (place := _walk(value, name)) is not None:
                bad.append((i, place))
                break
    return rows, bad


def _nulled(value: Any) -> Any:
    """``value`` with every bytes value that is not UTF-8 a null, the others decoded."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, list):
        return [_nulled(item) for item in value]
    if isinstance(value, dict):
        return {name: _nulled(item) for name, item in value.items()}
    return value


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_reader_gives_pyarrow_s_rows_with_strings_that_are_not_utf8_nulled_and_named(
    tmp_path: Path, data: st.DataObject
) -> None:
    table = data.draw(_tables())
    path = tmp_path / "t.parquet"
    _write(table, path, data.draw)
    columns = data.draw(st.sampled_from([None, ["input", "output"], ["output", "id"]]))
    batch_rows = data.draw(st.integers(1, 50))
    threads = data.draw(st.sampled_from([1, 2]))
    rows, bad = _expected(path, columns)
    reader = _core.ParquetReader(
        str(path), batch_rows=batch_rows, columns=columns, num_threads=threads
    )
    got_rows: list[dict[str, Any]] = []
    got_bad: list[tuple[int, str]] = []
    schema = pq.read_table(path, columns=columns).schema
    while (item := reader.next_batch()) is not None:
        batch = pa.record_batch(item[0])
        assert batch.num_rows == batch_rows or batch.num_rows == len(rows) - len(got_rows)
        assert [f.type for f in batch.schema] == [f.type for f in schema]
        got_bad += [(len(got_rows) + row, field) for row, field in item[1]]
        batch.validate(full=True)  # every string left is UTF-8
        got_rows += batch.to_pylist()
    assert got_rows == [{k: _nulled(v) for k, v in row.items()} for row in rows]
    assert got_bad == bad


def test_scored_rows_name_the_field_that_is_not_utf8_and_keep_the_others(tmp_path: Path) -> None:
    texts = _strings([b"a", b"b\xff", b"c", b"d"], large=False)
    responses = pa.StructArray.from_arrays(
        [texts, pa.array([1.0, 2.0, 3.0, 4.0])], names=["text", "score"]
    )
    outputs = pa.ListArray.from_arrays(pa.array([0, 2, 4], pa.int32()), responses)
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"input": ["p", "q"], "output": outputs}), path)
    (batch,) = read_parquet(path, batch_size=10)
    assert {row: (p.field, p.message) for row, p in batch.problems.items()} == {
        0: ("output[1].text", "is not valid UTF-8 text")
    }
    assert batch.table.slice(1).to_pylist() == [
        {"input": "q", "output": [{"text": "c", "score": 3.0}, {"text": "d", "score": 4.0}]}
    ]


def test_a_paired_file_with_a_string_that_is_not_utf8_is_refused_naming_row_and_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.parquet"
    chosen = _strings([b"fine", b"fine", b"bad \xc3"], large=False)
    table = pa.table({"prompt": ["a", "b", "c"], "chosen": chosen, "rejected": ["x", "y", "z"]})
    pq.write_table(table, path, row_group_size=2)
    with pytest.raises(InputError) as caught:
        list(parquet_tables(path))
    assert (caught.value.row, caught.value.field) == (2, "chosen")


@pytest.mark.parametrize("threads", [1, 2])
def test_a_damaged_page_is_an_input_error_naming_the_rows_read(
    tmp_path: Path, threads: int
) -> None:
    path = tmp_path / "d.parquet"
    texts = pa.array([f"response {i} " * 40 for i in range(4000)])
    responses = pa.StructArray.from_arrays([texts, pa.array([0.5] * 4000)], names=["text", "score"])
    outputs = pa.ListArray.from_arrays(pa.array(range(0, 4001, 4), pa.int32()), responses)
    prompts = pa.array([f"p{i}" for i in range(1000)])
    pq.write_table(pa.table({"input": prompts, "output": outputs}), path, row_group_size=250)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5000] = b"\xab" * 5000  # inside a column chunk, footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"d\.parquet: not a readable Parquet file after row \d+"):
        list(read_parquet(path, batch_size=100, threads=threads))


def test_a_dataset_s_string_that_is_not_utf8_is_named_as_a_parquet_file_s_is(
    tmp_path: Path,
) -> None:
    """A ``save_to_disk`` folder's Arrow files are no more checked than Parquet; the same Rust
    check finds the row and field."""
    datasets = pytest.importorskip("datasets")
    prompts = _strings([b"p", b"q", b"r \xed\xa0\x80"], large=False)
    texts = _strings([b"a", b"b", b"\xe2\x82", b"d", b"e", b"f"], large=False)
    responses = pa.StructArray.from_arrays([texts, pa.array([1.0] * 6)], names=["text", "score"])
    outputs = pa.ListArray.from_arrays(pa.array([0, 2, 4, 6], pa.int32()), responses)
    table = pa.table({"input": prompts, "output": outputs})
    folder = tmp_path / "saved"
    datasets.Dataset(datasets.table.InMemoryTable(table)).save_to_disk(str(folder))
    (batch,) = open_scored(folder, batch_size=10).batches
    assert {row: p.field for row, p in batch.problems.items()} == {1: "output[0].text", 2: "input"}
    assert batch.table.slice(0, 1).to_pylist() == [
        {"input": "p", "output": [{"text": "a", "score": 1.0}, {"text": "b", "score": 1.0}]}
    ]
