"""Telling scored datasets from paired ones, and reading paired ones.

A dataset is LMFlow's ``text_to_scored_textlist`` (columns ``input`` and ``output``, a list of
``{text, score}``) or ``paired_text_to_text`` (``prompt``, ``chosen``, ``rejected`` and usually
``margin``). LMFlow JSON says which in its ``type``; the other formats by their columns.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats import PAIRED_TYPE, SCORED_TYPE, detect_format
from dpov2.formats.hf import is_dataset, load_saved_dataset
from dpov2.formats.instances import RowProblem
from dpov2.formats.json_reader import JsonReader, typed_batches
from dpov2.formats.parquet import parquet_schema, parquet_tables

if TYPE_CHECKING:
    import datasets

__all__ = ["PAIR_COLUMNS", "dataset_type", "mapped_dataset", "pair_tables", "read_pairs"]

SCORED_COLUMNS = ("input", "output")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def dataset_type(source: str | os.PathLike[str] | datasets.Dataset) -> str:
    """``SCORED_TYPE`` or ``PAIRED_TYPE`` for a file, a ``save_to_disk`` folder or a
    ``datasets.Dataset``. Only the header, the first line or the schema is read.

    Raises:
        InputError: a missing file, or a dataset of neither type (naming what it is).
    """
    if is_dataset(source):
        dataset: datasets.Dataset = source
        return _type_from_columns(dataset.column_names, "dataset")
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", file=str(path))
    fmt = detect_format(path, None)
    if fmt == "json":
        return _lmflow_type(path)
    if fmt == "jsonl":
        return _json_lines_type(path)
    if fmt == "parquet":
        columns = parquet_schema(path).names
    else:
        columns = load_saved_dataset(path).column_names
    return _type_from_columns(columns, str(path))


def read_pairs(source: str | os.PathLike[str] | datasets.Dataset) -> datasets.Dataset:
    """A paired dataset as a ``datasets.Dataset`` (a given one is returned as it is).

    Files are streamed batch by batch into a memory-mapped Arrow file (see
    :func:`mapped_dataset`), never loaded whole; JSON goes through the one JSON reader, so a bad
    row is named by file, row, byte and field.

    Raises:
        InputError: an unreadable file, one that is not a paired dataset, or a bad row.
    """
    _check_paired(source)
    if is_dataset(source):
        paired: datasets.Dataset = source
        return paired
    path = Path(source)
    fmt = detect_format(path, None)
    if fmt == "hf":
        return load_saved_dataset(path)
    if fmt == "parquet":
        return mapped_dataset(parquet_tables(path), parquet_schema(path))
    return mapped_dataset(_json_pairs(path, fmt), None)


def pair_tables(source: str | os.PathLike[str], *, batch_size: int = 8192) -> Iterator[pa.Table]:
    """The tables of a paired dataset file or ``save_to_disk`` folder, in order, streamed
    (JSON in batches of at most ``batch_size`` rows; Parquet by record batch), with every column
    the file has.

    Raises:
        InputError: at once, an unreadable file or one that is not a paired dataset; while
            iterating, a bad row (named by file, row, byte and field).
    """
    _check_paired(source)
    path = Path(source)
    fmt = detect_format(path, None)
    if fmt == "hf":
        table: Iterator[pa.Table] = load_saved_dataset(path).with_format("arrow").iter(batch_size)
        return table
    if fmt == "parquet":
        return parquet_tables(path)
    return _json_pairs(path, fmt, batch_size)


def _check_paired(source: str | os.PathLike[str] | datasets.Dataset) -> None:
    if dataset_type(source) != PAIRED_TYPE:
        raise InputError(f"is a {SCORED_TYPE} dataset, not {PAIRED_TYPE}", file=str(source))


def _json_pairs(path: Path, fmt: str, batch_size: int = 8192) -> Iterator[pa.Table]:
    for batch in typed_batches(path, fmt, "paired", PAIRED_TYPE, batch_size=batch_size):
        if batch.problems:
            row = min(batch.problems)
            raise batch.problems[row].error(str(path), batch.first_row + row)
        yield batch.table


def mapped_dataset(tables: Iterable[pa.Table], schema: pa.Schema | None) -> datasets.Dataset:
    """A ``datasets.Dataset`` over ``tables`` written one by one to an Arrow file that it
    memory-maps, so memory holds one table at a time, whatever the dataset's size. The file
    lives in a temporary folder removed when the process exits. ``schema`` serves when there
    is no table (``None``: the tables' own, or no columns)."""
    import datasets

    folder = Path(tempfile.mkdtemp(prefix="dpov2-pairs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    file = folder / "pairs.arrow"
    writer: pa.ipc.RecordBatchStreamWriter | None = None
    with pa.OSFile(str(file), "wb") as sink:
        for table in tables:
            if writer is None:
                writer = pa.ipc.new_stream(sink, table.schema)
            writer.write_table(table)
        if writer is None:
            writer = pa.ipc.new_stream(sink, schema or pa.schema([]))
        writer.close()
    return datasets.Dataset.from_file(str(file))


def _type_from_columns(columns: Sequence[str], name: str) -> str:
    if all(c in columns for c in SCORED_COLUMNS):
        return SCORED_TYPE
    if all(c in columns for c in PAIR_COLUMNS):
        return PAIRED_TYPE
    raise InputError(
        f"has columns {', '.join(columns) or 'none'}; expected a {SCORED_TYPE} dataset "
        f"({', '.join(SCORED_COLUMNS)}) or a {PAIRED_TYPE} one ({', '.join(PAIR_COLUMNS)})",
        file=name,
    )


def _lacks_member(problem: RowProblem, members: Sequence[str]) -> bool:
    """Whether ``problem`` is a missing member among ``members``, or the row is no object."""
    return problem.field is None or (
        problem.field in members and problem.message.startswith("missing;")
    )


def _lmflow_type(path: Path) -> str:
    """The ``type`` of an LMFlow JSON file, streamed up to where it is (usually the start)."""
    file = str(path)
    reader = JsonReader(path, framing="lmflow", schema="scored")
    for _ in reader:
        if reader.dataset_type is not None:
            break
    kind = reader.dataset_type
    if kind is None:
        raise InputError(
            f'no "type" member; expected "{SCORED_TYPE}" or "{PAIRED_TYPE}"', file=file
        )
    if kind not in (SCORED_TYPE, PAIRED_TYPE):
        raise InputError(
            f'dataset type "{kind}" is not supported here; expected "{SCORED_TYPE}" or '
            f'"{PAIRED_TYPE}"',
            file=file,
        )
    return kind


def _json_lines_type(path: Path) -> str:
    """The type of a JSON Lines file, from its first row read as each type by the JSON reader:
    the first type whose members the row has (valid or not: reading it names its problem),
    else neither."""
    problems: dict[str, RowProblem] = {}
    for kind, schema, members in (
        (SCORED_TYPE, "scored", SCORED_COLUMNS),
        (PAIRED_TYPE, "paired", PAIR_COLUMNS),
    ):
        batch = next(iter(JsonReader(path, framing="lines", schema=schema, batch_size=1)), None)
        if batch is None:
            raise InputError("has no rows", file=str(path))
        problem = batch.problems.get(0)
        if problem is None or not _lacks_member(problem, members):
            return kind
        problems[kind] = problem
    raise InputError(
        f"row 0 is neither a {SCORED_TYPE} row ({problems[SCORED_TYPE].field or 'row'}: "
        f"{problems[SCORED_TYPE].message}) nor a {PAIRED_TYPE} one "
        f"({problems[PAIRED_TYPE].field or 'row'}: {problems[PAIRED_TYPE].message})",
        file=str(path),
    )
