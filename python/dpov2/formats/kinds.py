"""Telling scored datasets from paired ones, and reading paired ones.

A dataset is LMFlow's ``text_to_scored_textlist`` (columns ``input`` and ``output``, a list of
``{text, score}``) or a paired one: ``paired_text_to_text`` (``prompt``, ``chosen``,
``rejected`` and usually ``margin``; the completions strings or chat messages) or LMFlow's
``paired_conversation`` (``chosen`` and ``rejected`` conversations, the prompt implicit in
them). LMFlow JSON says which in its ``type``; the other formats by their columns. A folder of
files (:mod:`dpov2.formats.folders`) is of its files' one type.
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
from dpov2.formats import (
    PAIRED_TYPE,
    SCORED_TYPE,
    as_conversational,
    conversational_schema,
    dataset_files,
    detect_format,
    folder_format,
)
from dpov2.formats.folders import folder_batches
from dpov2.formats.hf import is_dataset, load_saved_dataset
from dpov2.formats.instances import PAIRED_CONVERSATION_TYPE, RowProblem, ScoredBatch
from dpov2.formats.json_reader import JsonReader, typed_batches
from dpov2.formats.parquet import parquet_schema, parquet_tables

if TYPE_CHECKING:
    import datasets

__all__ = [
    "IMPLICIT_PAIR_COLUMNS",
    "PAIRED_TYPES",
    "PAIR_COLUMNS",
    "dataset_type",
    "mapped_dataset",
    "pair_tables",
    "read_pairs",
]

SCORED_COLUMNS = ("input", "output")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")
#: A paired dataset without a prompt column: TRL's implicit prompt, the first messages both
#: (conversational) completions share; TRL's trainer takes it off as the prompt.
IMPLICIT_PAIR_COLUMNS = ("chosen", "rejected")
#: The LMFlow types of paired datasets.
PAIRED_TYPES = (PAIRED_TYPE, PAIRED_CONVERSATION_TYPE)


def dataset_type(source: str | os.PathLike[str] | datasets.Dataset) -> str:
    """``SCORED_TYPE`` or ``PAIRED_TYPE`` (any paired type) for a file, a folder or a
    ``datasets.Dataset``. Only the header, the first line or the schema is read (of each file
    of a folder, which must all be of one type).

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
    if fmt == "folder":
        files = dataset_files(path)
        kinds = [(file, _file_type(file, fmt)) for file, fmt in files]
        for file, kind in kinds[1:]:
            if kind != kinds[0][1]:
                raise InputError(
                    f"is a {kind} dataset, but {kinds[0][0].name} in the same folder is a "
                    f"{kinds[0][1]} one; a folder holds files of one type",
                    file=str(file),
                )
        return kinds[0][1]
    return _file_type(path, fmt)


def _file_type(path: Path, fmt: str) -> str:
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
    """A paired dataset (a file, a folder, or a ``datasets.Dataset``, returned as it is) as a
    ``datasets.Dataset``, chat-prompt pairs in TRL's conversational format.

    Files are streamed batch by batch into a memory-mapped Arrow file (see
    :func:`mapped_dataset`), never loaded whole; JSON goes through the one JSON reader, so a bad
    row is named by file, row, byte and field (a folder's file, and the row there).

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
        saved = load_saved_dataset(path)
        if conversational_schema(saved.data.table.schema) == saved.data.table.schema:
            return saved
    schema = parquet_schema(path) if fmt == "parquet" else None
    return mapped_dataset(_pair_tables(path, fmt, 8192), schema)


def pair_tables(source: str | os.PathLike[str], *, batch_size: int = 8192) -> Iterator[pa.Table]:
    """The tables of a paired dataset file or folder (of files, or saved by ``save_to_disk``),
    in order, streamed (JSON in batches of at most ``batch_size`` rows; Parquet by record
    batch), with every column the files have, as they are written.

    Raises:
        InputError: at once, an unreadable file or one that is not a paired dataset; while
            iterating, a bad row (named by file, row, byte and field).
    """
    _check_paired(source)
    path = Path(source)
    return _pair_tables(path, detect_format(path, None), batch_size)


def _check_paired(source: str | os.PathLike[str] | datasets.Dataset) -> None:
    if dataset_type(source) != PAIRED_TYPE:
        raise InputError(f"is a {SCORED_TYPE} dataset, not {PAIRED_TYPE}", file=str(source))


def _pair_tables(path: Path, fmt: str, batch_size: int) -> Iterator[pa.Table]:
    if fmt == "hf":
        tables: Iterator[pa.Table] = load_saved_dataset(path).with_format("arrow").iter(batch_size)
        return tables
    if fmt == "parquet":
        return parquet_tables(path)

    def read(file: Path, file_fmt: str) -> Iterator[ScoredBatch]:
        return _paired_batches(file, file_fmt, batch_size)

    if fmt == "folder":
        files = dataset_files(path, folder_format(None))
        return _checked(folder_batches(files, read, "prompt"), str(path))
    return _checked(read(path, fmt), str(path))


def _paired_batches(path: Path, fmt: str, batch_size: int) -> Iterator[ScoredBatch]:
    """A paired file's batches (a Parquet file's as they are, without problems)."""
    if fmt == "parquet":
        for first_row, table in _numbered(parquet_tables(path)):
            yield ScoredBatch(table, first_row, table.num_rows)
        return
    yield from typed_batches(path, fmt, "paired", PAIRED_TYPES, batch_size=batch_size)


def _numbered(tables: Iterator[pa.Table]) -> Iterator[tuple[int, pa.Table]]:
    first_row = 0
    for table in tables:
        yield first_row, table
        first_row += table.num_rows


def _checked(batches: Iterator[ScoredBatch], file: str) -> Iterator[pa.Table]:
    """The tables of ``batches``, raising the first problem (naming its file and row)."""
    for batch in batches:
        if batch.problems:
            row = min(batch.problems)
            raise batch.problems[row].error(file, batch.first_row + row)
        yield batch.table


def mapped_dataset(
    tables: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema | None
) -> datasets.Dataset:
    """A ``datasets.Dataset`` over the pairs of ``tables``, in TRL's conversational format
    when the prompt is chat messages (:func:`~dpov2.formats.as_conversational`), written one
    by one to an Arrow file that it memory-maps, so memory holds one table at a time, whatever
    the dataset's size. The file lives in a temporary folder removed when the process exits.
    ``schema`` serves when there is no table (``None``: the tables' own, or no columns)."""
    import datasets

    folder = Path(tempfile.mkdtemp(prefix="dpov2-pairs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    file = folder / "pairs.arrow"
    writer: pa.ipc.RecordBatchStreamWriter | None = None
    with pa.OSFile(str(file), "wb") as sink:
        for batch in tables:
            table = as_conversational(pa.table(batch))
            if writer is None:
                writer = pa.ipc.new_stream(sink, table.schema)
            writer.write_table(table)
        if writer is None:
            writer = pa.ipc.new_stream(sink, conversational_schema(schema or pa.schema([])))
        writer.close()
    return datasets.Dataset.from_file(str(file))


def _type_from_columns(columns: Sequence[str], name: str) -> str:
    if all(c in columns for c in SCORED_COLUMNS):
        return SCORED_TYPE
    if all(c in columns for c in IMPLICIT_PAIR_COLUMNS):
        return PAIRED_TYPE
    raise InputError(
        f"has columns {', '.join(columns) or 'none'}; expected a {SCORED_TYPE} dataset "
        f"({', '.join(SCORED_COLUMNS)}) or a {PAIRED_TYPE} one ({', '.join(PAIR_COLUMNS)}, "
        "the prompt implicit in conversational completions)",
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
    if kind not in (SCORED_TYPE, *PAIRED_TYPES):
        raise InputError(
            f'dataset type "{kind}" is not supported here; expected "{SCORED_TYPE}", '
            f'"{PAIRED_TYPE}" or "{PAIRED_CONVERSATION_TYPE}"',
            file=file,
        )
    return SCORED_TYPE if kind == SCORED_TYPE else PAIRED_TYPE


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
