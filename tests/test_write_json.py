"""Writing datasets: the JSON the Rust writer makes reads back (with Python's json module, the
reference parser) as the table it was made from, and every format refuses the same values."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpov2.errors import InputError
from dpov2.formats import open_writer

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts}),
    max_size=3,
)

# Column name -> (Arrow type, values): a pairs table's columns and provenance columns.
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy[object]]] = {
    "prompt": (pa.string(), texts),
    "chat": (pa.list_(MESSAGE), messages),
    "chosen": (pa.large_string(), texts),
    "margin": (pa.float64(), floats),
    "score32": (pa.float32(), st.floats(width=32, allow_nan=False, allow_infinity=False)),
    "index": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "count": (pa.uint8(), st.integers(0, 255)),
    "kept": (pa.bool_(), st.booleans()),
    "scores": (pa.large_list(pa.float64()), st.lists(floats, max_size=3)),
    "source": (pa.dictionary(pa.int32(), pa.string()), st.sampled_from(["a", "b", "日"])),
    "meta": (
        pa.struct([("model", pa.string()), ("step", pa.int32())]),
        st.fixed_dictionaries({"model": texts, "step": st.integers(0, 2**31 - 1)}),
    ),
}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    """A table of some of :data:`COLUMNS` (any may have nulls), in a few chunks."""
    names = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True, max_size=6))
    rows = draw(st.integers(0, 8))
    columns = {}
    for name in names:
        kind, values = COLUMNS[name]
        columns[name] = pa.array([draw(st.none() | values) for _ in range(rows)], kind)
    table = pa.table(columns) if names else pa.table({"x": pa.array([], pa.int8())})
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=3)))
    bounds = [0, *cuts, table.num_rows]
    return pa.concat_tables([table.slice(a, b - a) for a, b in itertools.pairwise(bounds)])


def write(path: Path, *tables: pa.Table) -> None:
    with open_writer(path, overwrite=True) as writer:
        for table in tables:
            writer.write(table)
        writer.finish(tables[0].schema)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=tables())
def test_written_json_reads_back_as_the_table(tmp_path: Path, table: pa.Table) -> None:
    expected = table.to_pylist()
    write(tmp_path / "out.jsonl", table)
    # Split at "\n" only: str.splitlines also splits at U+2028 and others, which JSON keeps.
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines.pop() == ""
    assert [json.loads(line) for line in lines] == expected
    write(tmp_path / "out.json", table)
    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert written == {"type": "paired_text_to_text", "instances": expected}


def test_lmflow_json_spans_batches_and_empty_tables(tmp_path: Path) -> None:
    schema = pa.schema([("n", pa.int64())])
    parts = [
        pa.table({"n": [0, 1]}),
        schema.empty_table(),
        pa.table({"n": [2]}),
        schema.empty_table(),
    ]
    path = tmp_path / "out.json"
    write(path, *parts)
    assert path.read_text() == (
        '{"type": "paired_text_to_text", "instances": [\n{"n": 0},\n{"n": 1},\n{"n": 2}\n]}\n'
    )
    write(path, schema.empty_table())
    assert json.loads(path.read_text()) == {"type": "paired_text_to_text", "instances": []}


def test_numbers_keep_their_kind_and_strings_their_characters(tmp_path: Path) -> None:
    table = pa.table(
        {"f": [2.0, 1e300, -0.0, 0.1], "i": [2, 10**18, 0, -1], "s": ["é", "日", "😀", "\x00"]}
    )
    write(tmp_path / "out.jsonl", table)
    text = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    assert text.split("\n")[:2] == [
        '{"f": 2.0, "i": 2, "s": "é"}',
        '{"f": 1e300, "i": 1000000000000000000, "s": "日"}',
    ]
    back = [json.loads(line) for line in text.split("\n")[:-1]]
    assert [type(row["f"]) for row in back] == [float] * 4
    assert back == table.to_pylist()
    assert math.copysign(1, back[2]["f"]) == -1


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.parquet"])
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_margin_is_refused_in_every_format_naming_the_row(
    tmp_path: Path, name: str, bad: float
) -> None:
    good = pa.table({"prompt": ["a", "b"], "margin": [0.5, 1.0]})
    worse = pa.table({"prompt": ["c", "d"], "margin": [2.0, bad]})
    with pytest.raises(InputError, match="is not a finite number") as caught:
        write(tmp_path / name, good, worse)
    assert (caught.value.row, caught.value.field) == (3, "margin")
    assert str(caught.value).startswith("row 3, field 'margin': ")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_nested_non_finite_score_names_its_path(tmp_path: Path) -> None:
    scores = pa.array(
        [[{"text": "x", "score": 1.0}, {"text": "y", "score": math.nan}]],
        pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())])),
    )
    with pytest.raises(InputError) as caught:
        write(tmp_path / "out.jsonl", pa.table({"output": scores}))
    assert (caught.value.row, caught.value.field) == (0, "output[1].score")


def invalid_utf8_parquet(path: Path) -> None:
    """A Parquet file whose string column holds bytes that are not UTF-8: pyarrow checks the
    layout of a string array made from buffers, not its text, and Parquet keeps the bytes."""
    offsets = pa.array([0, 2, 5], pa.int32()).buffers()[1]
    strings = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ok\xffab")])
    pq.write_table(pa.table({"prompt": strings, "margin": [1.0, 2.0]}), path)


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.parquet"])
def test_invalid_utf8_from_a_parquet_string_column_is_refused(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in.parquet"
    invalid_utf8_parquet(source)
    table = pq.read_table(source)
    with pytest.raises(InputError, match="not valid UTF-8 \\(from its byte 0\\)") as caught:
        write(tmp_path / name, table)
    assert (caught.value.row, caught.value.field) == (1, "prompt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_type_json_cannot_hold_is_refused_but_parquet_keeps_it(tmp_path: Path) -> None:
    table = pa.table({"raw": pa.array([b"\x00\xff"], pa.binary())})
    with pytest.raises(InputError, match="Arrow type Binary has no JSON form") as caught:
        write(tmp_path / "out.jsonl", table)
    assert (caught.value.row, caught.value.field) == (None, "raw")
    write(tmp_path / "out.parquet", table)
    assert pq.read_table(tmp_path / "out.parquet").equals(table)
