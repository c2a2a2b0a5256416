"""Reading and writing datasets: every format round-trips, every JSON parser agrees, and output
files appear whole or not at all."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st

from dpov2.errors import InputError
from dpov2.formats import (
    SCORED_TYPE,
    ScoredBatch,
    detect_format,
    open_scored,
    open_writer,
    scored_row_problem,
)
from dpov2.formats.instances import OUTPUT_TYPE, conform_scored_table
from dpov2.formats.parquet import ParquetWriter
from dpov2.formats.prefetch import WriteBehind, prefetch

REPO = Path(__file__).resolve().parents[1]

INSTANCES = [
    {
        "input": "Say hi",
        "output": [{"text": "hi", "score": 1.0}, {"text": "go away", "score": -2.5}],
    },
    {"input": 'Quote "this"\n', "output": [{"text": "é日😀\t\\", "score": 0.125}]},
    {"input": "", "output": []},
    {"input": "p3", "output": [{"text": "", "score": 3.0}, {"text": "x", "score": 3.0}]},
]

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
scores = st.floats(allow_nan=False, allow_infinity=False, width=64)
instances = st.lists(
    st.fixed_dictionaries(
        {
            "input": texts,
            "output": st.lists(st.fixed_dictionaries({"text": texts, "score": scores}), max_size=4),
        }
    ),
    max_size=12,
)


def read_all(source: object, **kwargs: object) -> list[dict[str, object]]:
    scored = open_scored(source, **kwargs)  # type: ignore[arg-type]
    rows: list[dict[str, object]] = []
    for batch in scored.batches:
        assert not batch.problems
        assert batch.first_row == len(rows)
        rows += batch.table.to_pylist()
    return rows


def scored_table(rows: list[dict[str, object]]) -> pa.Table:
    schema = pa.schema([("input", pa.string()), ("output", OUTPUT_TYPE)])
    return pa.Table.from_pylist(rows, schema=schema)


def write_scored(path: Path, rows: list[dict[str, object]], batch: int = 2) -> None:
    table = scored_table(rows)
    with open_writer(path, dataset_type=SCORED_TYPE) as writer:
        for start in range(0, len(rows), batch):
            writer.write(table.slice(start, batch))
        writer.finish(table.schema)


@pytest.mark.parametrize("name", ["data.jsonl", "data.json", "data.parquet"])
@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_each_file_format_round_trips(tmp_path: Path, name: str, batch_size: int) -> None:
    write_scored(tmp_path / name, INSTANCES)
    assert read_all(tmp_path / name, batch_size=batch_size) == INSTANCES


def test_lmflow_json_is_a_typed_object_readable_by_json_load(tmp_path: Path) -> None:
    write_scored(tmp_path / "data.json", INSTANCES)
    loaded = json.loads((tmp_path / "data.json").read_text(encoding="utf-8"))
    assert loaded == {"type": SCORED_TYPE, "instances": INSTANCES}


def test_json_lines_are_one_instance_per_line(tmp_path: Path) -> None:
    write_scored(tmp_path / "data.jsonl", INSTANCES)
    lines = (tmp_path / "data.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == INSTANCES


def test_datasets_in_memory_and_saved_to_disk_are_read(tmp_path: Path) -> None:
    import datasets

    dataset = datasets.Dataset.from_list([{**row, "id": i} for i, row in enumerate(INSTANCES)])
    assert read_all(dataset, batch_size=3) == INSTANCES
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert read_all(tmp_path / "saved", batch_size=2) == INSTANCES
    shuffled = dataset.select([3, 0])  # an indices mapping over the same table
    assert read_all(shuffled) == [INSTANCES[3], INSTANCES[0]]


def test_a_split_dataset_folder_asks_for_one_split(tmp_path: Path) -> None:
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(INSTANCES)})
    splits.save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(InputError, match=r"holds the splits train; pass one split's folder"):
        open_scored(tmp_path / "splits")


def test_columnar_types_are_conformed_and_wrong_ones_named() -> None:
    raw = pa.table(
        {
            "input": ["p"],
            "output": pa.array(
                [[{"score": 1, "id": 7, "text": "a"}]],
                pa.large_list(
                    pa.struct(
                        [("score", pa.int32()), ("id", pa.int64()), ("text", pa.large_string())]
                    )
                ),
            ),
            "extra": [1],
        }
    )
    conformed = conform_scored_table(raw, "f.parquet")
    assert conformed.schema.field("output").type == OUTPUT_TYPE
    assert conformed.to_pylist() == [{"input": "p", "output": [{"text": "a", "score": 1.0}]}]
    with pytest.raises(InputError, match=r"^f: field 'output\[\]\.score': has type string"):
        conform_scored_table(
            pa.table({"input": ["p"], "output": [[{"text": "a", "score": "1"}]]}), "f"
        )
    with pytest.raises(InputError, match=r"^f: field 'input': has type int64"):
        conform_scored_table(pa.table({"input": [1], "output": [[]]}), "f")
    with pytest.raises(
        InputError, match=r"^f: field 'output': no 'output' column \(columns: input\)"
    ):
        conform_scored_table(pa.table({"input": ["p"]}), "f")


def test_formats_come_from_the_extension_unless_given(tmp_path: Path) -> None:
    assert detect_format(Path("a.JSONL"), None) == "jsonl"
    assert detect_format(Path("a.ndjson"), None) == "jsonl"
    assert detect_format(Path("a.json"), None) == "json"
    assert detect_format(Path("a.pq"), None) == "parquet"
    assert detect_format(tmp_path, None) == "folder"
    assert detect_format(tmp_path, "json") == "folder"
    (tmp_path / "state.json").write_text("{}")
    assert detect_format(tmp_path, None) == "hf"
    assert detect_format(Path("a.txt"), "jsonl") == "jsonl"
    with pytest.raises(
        InputError, match=r"a\.txt: cannot tell the format from the extension '\.txt'"
    ):
        detect_format(Path("a.txt"), None)
    with pytest.raises(InputError, match="pass --output-format"):
        detect_format(Path("a.txt"), None, output=True)


def test_missing_and_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl: no such file or folder"):
        open_scored(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.jsonl: is empty"):
        open_scored(tmp_path / "empty.jsonl")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"  \n", r"byte 3: empty input; expected an LMFlow object"),
        (b"[{}]", r"byte 0: expected an LMFlow object .*, got '\['"),
        (
            b'{"type": "paired_text_to_text", "instances": []}',
            r'dataset type "paired_text_to_text"; expected "text_to_scored_textlist"',
        ),
        (b'{"instances": []}', r'no "type" member; expected "type": "text_to_scored_textlist"'),
        (
            b'{"type": "text_to_scored_textlist"}',
            r'byte 34: the LMFlow object has no "instances" member',
        ),
        (
            b'{"type": "text_to_scored_textlist", "instances": [{"input": "p", ',
            r"row 0 \(byte 50\): the instance starting here never ends",
        ),
    ],
)
def test_lmflow_json_structure_errors_name_file_and_position(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_all(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_lmflow_type_after_the_instances_is_checked_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "late.json"
    path.write_text('{"instances": [' + json.dumps(INSTANCES[0]) + '], "type": "other"}')
    with pytest.raises(InputError, match='dataset type "other"; expected'):
        read_all(path)


def test_max_samples_cuts_the_last_batch(tmp_path: Path) -> None:
    write_scored(tmp_path / "d.jsonl", INSTANCES)
    assert read_all(tmp_path / "d.jsonl", batch_size=3, max_samples=2) == INSTANCES[:2]
    assert read_all(tmp_path / "d.jsonl", max_samples=0) == []
    scored = open_scored(tmp_path / "d.jsonl", max_samples=10)
    assert sum(b.table.num_rows for b in scored.batches) == len(INSTANCES)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"output": []}, "input", "missing; expected the prompt (text or chat messages)"),
        (
            {"input": 3, "output": []},
            "input",
            "expected a string or a list of chat messages, got 3",
        ),
        ({"input": "p"}, "output", "missing; expected a list of {text, score}"),
        (
            {"input": "p", "output": [1]},
            "output[0]",
            "expected an object with text and score, got 1",
        ),
        (
            {"input": "p", "output": [{"score": 1}]},
            "output[0].text",
            "missing; expected a string",
        ),
        (
            {"input": "p", "output": [{"text": 1, "score": 1}]},
            "output[0].text",
            "expected a string, got 1",
        ),
        (
            {"input": "p", "output": [{"text": "a"}]},
            "output[0].score",
            "missing; expected a number",
        ),
        (
            {"input": "p", "output": [{"text": "a", "score": "1"}]},
            "output[0].score",
            'expected a number, got "1"',
        ),
        (
            {"input": "p", "output": [{"text": "a", "score": True}]},
            "output[0].score",
            "expected a number, got true",
        ),
        (
            {"input": "p", "output": [{"text": "a", "score": math.nan}]},
            "output[0].score",
            "must be a finite number, got nan",
        ),
        (
            {"input": "p", "output": [{"text": "a", "score": 10**400}]},
            "output[0].score",
            "must be a finite number",
        ),
    ],
)
def test_row_problems_name_the_field(row: dict[str, object], field: str, message: str) -> None:
    problem = scored_row_problem(row)
    assert problem is not None and problem.field == field and problem.message.startswith(message)


def test_valid_rows_have_no_problem() -> None:
    assert all(scored_row_problem(row) is None for row in INSTANCES)
    assert scored_row_problem({"input": [{"role": "user", "content": "x"}], "output": []}) is None


# --- chunking, encoding, writing -------------------------------------------------------------


def test_parquet_files_do_not_depend_on_how_the_rows_were_batched(tmp_path: Path) -> None:
    table = scored_table(INSTANCES * 5)
    digests = []
    for step in (1, 3, 20):
        path = tmp_path / f"{step}.parquet"
        with open(path, "wb") as file:
            writer = ParquetWriter(file, row_group_rows=7)
            for start in range(0, table.num_rows, step):
                writer.write(table.slice(start, step))
            writer.finish(table.schema)
        assert pq.ParquetFile(path).metadata.row_group(0).num_rows == 7
        digests.append(path.read_bytes())
    assert digests[0] == digests[1] == digests[2]


def test_parquet_is_written_with_snappy_and_no_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    with open_writer(path) as writer:
        writer.write(pa.table({"prompt": ["same text"] * 10, "margin": [0.5] * 10}))
        writer.finish(pa.schema([]))
    for i in range(2):
        column = pq.ParquetFile(path).metadata.row_group(0).column(i)
        assert column.compression == "SNAPPY"
        assert not column.has_dictionary_page


def test_an_empty_output_still_has_its_schema(tmp_path: Path) -> None:
    schema = pa.schema([("prompt", pa.string()), ("margin", pa.float64())])
    for name in ("e.parquet", "e.json", "e.jsonl"):
        with open_writer(tmp_path / name) as writer:
            writer.finish(schema)
    assert pq.read_table(tmp_path / "e.parquet").schema == schema
    assert json.loads((tmp_path / "e.json").read_text()) == {
        "type": "paired_text_to_text",
        "instances": [],
    }
    assert (tmp_path / "e.jsonl").read_bytes() == b""


def test_output_appears_only_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="midway"), open_writer(path) as writer:
        writer.write(pa.table({"x": [1]}))
        raise RuntimeError("midway")
    assert list(tmp_path.iterdir()) == []
    path.write_text("old")
    with pytest.raises(InputError, match=r"out\.jsonl: already exists; pass --overwrite"):
        open_writer(path).__enter__()
    with open_writer(path, overwrite=True) as writer:
        writer.write(pa.table({"x": [1]}))
        writer.finish(pa.schema([("x", pa.int64())]))
    assert path.read_text() == '{"x": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_an_output_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"output folder .* does not exist"):
        open_writer(tmp_path / "no" / "out.jsonl").__enter__()


# --- prefetch --------------------------------------------------------------------------------


def test_prefetch_keeps_order_and_raises_where_the_producer_failed() -> None:
    def numbers() -> object:
        yield from range(5)
        raise InputError("bad row", row=5)

    got = []
    with pytest.raises(InputError, match="row 5: bad row"):
        for n in prefetch(numbers(), depth=2):  # type: ignore[arg-type]
            got.append(n)
    assert got == [0, 1, 2, 3, 4]


def test_leaving_prefetch_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def endless() -> object:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    for n in prefetch(endless()):  # type: ignore[arg-type]
        if n == 3:
            break
    assert closed.wait(timeout=5)


def test_write_behind_writes_every_item_in_order_before_the_block_ends() -> None:
    written: list[int] = []
    with WriteBehind(written.append, depth=2) as behind:
        for n in range(50):
            behind.put(n)
    assert written == list(range(50))


def test_a_write_error_is_raised_after_and_outranks_a_later_error_of_the_block() -> None:
    def write(n: int) -> None:
        if n == 3:
            raise InputError("cannot write", row=3)

    for later in (None, ValueError("pairing batch 5 failed")):
        with pytest.raises(InputError, match="row 3: cannot write"), WriteBehind(write) as behind:
            for n in range(5):
                behind.put(n)
            if later is not None:
                raise later


def test_an_interrupt_stays_and_stops_the_writer_thread() -> None:
    started, release = threading.Event(), threading.Event()
    written: list[int] = []

    def write(n: int) -> None:
        started.set()
        release.wait(timeout=5)
        written.append(n)

    with pytest.raises(KeyboardInterrupt), WriteBehind(write) as behind:
        behind.put(0)
        behind.put(1)  # waits in the queue while 0 is written
        assert started.wait(timeout=5)
        threading.Timer(0.3, release.set).start()  # 0 finishes after the interrupt
        raise KeyboardInterrupt
    assert not any(t.name == "dpov2-write" for t in threading.enumerate())
    assert written == [0]  # the item being written is finished, the pending one dropped


def test_batches_are_scored_batches_with_global_first_rows(tmp_path: Path) -> None:
    write_scored(tmp_path / "d.parquet", INSTANCES)
    batches = list(open_scored(tmp_path / "d.parquet", batch_size=3).batches)
    assert all(isinstance(b, ScoredBatch) for b in batches)
    assert [b.first_row for b in batches] == [0, 3]
    assert [b.progress for b in batches] == [3, 1]


# --- the dataset generator -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["random", "preference"])
@pytest.mark.parametrize("name", ["g.jsonl", "g.json", "g.parquet"])
def test_the_generator_writes_readable_scored_datasets(
    tmp_path: Path, style: str, name: str
) -> None:
    out = tmp_path / name
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benches/make_scored_dataset.py"),
            str(out),
            "--prompts",
            "50",
            "--responses",
            "2-5",
            "--style",
            style,
            "--mean-chars",
            "40",
            "--batch-prompts",
            "16",
        ],
        check=True,
        capture_output=True,
    )
    rows = read_all(out)
    assert len(rows) == 50
    counts = np.array([len(r["output"]) for r in rows])  # type: ignore[arg-type]
    assert counts.min() >= 2 and counts.max() <= 5
    assert all(r["output"][0]["text"] for r in rows)  # type: ignore[index]
