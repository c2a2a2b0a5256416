"""Parquet: read in record batches of the needed columns, written in fixed-size row groups.

Reading is Rust's (``_core.ParquetReader``, the crate ``dpov2-parquet``): each column's pages
are read and decompressed ahead in threads of their own while the batch before is decoded,
which reads about twice as fast as pyarrow's one decoding thread, in bounded memory. Writing is
pyarrow's. The footer (schema, sizes) is read with pyarrow.

Columnar inputs (Parquet, and ``datasets`` folders, see :mod:`dpov2.formats.hf`) share
:func:`columnar_batch`: a score may be any number type, rounded to the nearest float64 as JSON
numbers are, and every string is checked to be UTF-8 (Parquet writers do not enforce it) by the
same Rust check, an invalid one being a problem of its row that names its field.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dpov2 import _core
from dpov2.errors import InputError
from dpov2.formats.instances import RowProblem, ScoredBatch, batch_rows, conform_scored_table

__all__ = [
    "ParquetWriter",
    "columnar_batch",
    "parquet_rows",
    "parquet_schema",
    "parquet_tables",
    "read_parquet",
]

# Rows per written row group: large enough for efficient reads, small enough to buffer.
ROW_GROUP_ROWS = 65_536
# Rows per batch of a paired file (the training data), as pyarrow's ``iter_batches`` gives.
PAIRED_BATCH_ROWS = 65_536
NOT_UTF8 = "is not valid UTF-8 text"
# The errors of a file that cannot be read: pyarrow's for the footer (a damaged column name
# fails to decode), Rust's for the data.
_UNREADABLE = (pa.ArrowException, OSError, UnicodeDecodeError, _core.ParquetError)
# Written pairs are mostly long, distinct texts, so dictionary encoding gains nothing (each
# text appears once) and doubled the uncompressed write time. Snappy writes about twice as fast
# as zstd for a file 1.3x larger, and dpov2 is about speed: the measurements are in the
# README's "Speed and memory on a 1M-prompt dataset".
USE_DICTIONARY = False
COMPRESSION = "snappy"


def parquet_rows(path: Path) -> int:
    """The number of rows, from the file's metadata."""
    return int(_open(path).metadata.num_rows)


def parquet_schema(path: Path) -> pa.Schema:
    """The file's Arrow schema (from its footer).

    Raises:
        InputError: the file is not Parquet.
    """
    return _open(path).schema_arrow


def read_parquet(
    path: Path, *, batch_size: int, threads: int | None = None
) -> Iterator[ScoredBatch]:
    """Batches of ``batch_size`` rows (fewer for long rows, see :func:`batch_rows`) of the
    ``input`` and ``output`` columns; ``progress`` counts rows. ``threads`` is the thread
    setting (default: ``DPOV2_NUM_THREADS``, else every CPU); at 1 no page is read ahead."""
    parquet = _open(path)
    names = parquet.schema_arrow.names
    columns = [name for name in ("input", "output") if name in names]
    metadata = parquet.metadata
    data_bytes = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    rows = batch_rows(batch_size, data_bytes / max(1, metadata.num_rows))
    first_row = 0
    for table, not_utf8 in _read(path, columns, rows, threads):
        batch = columnar_batch(table, str(path), first_row, not_utf8)
        yield batch
        first_row += batch.table.num_rows
    if first_row == 0:
        columnar_batch(parquet.schema_arrow.empty_table(), str(path), 0)


def parquet_tables(path: Path, *, threads: int | None = None) -> Iterator[pa.Table]:
    """Every column of the file, batch by batch (a paired dataset, kept as it is). A damaged
    file, or a string that is not UTF-8, is an :class:`InputError` naming its row (and field)."""
    first_row = 0
    for table, not_utf8 in _read(path, None, PAIRED_BATCH_ROWS, threads):
        if not_utf8:
            row, field = not_utf8[0]
            raise InputError(NOT_UTF8, file=str(path), row=first_row + row, field=field)
        yield table
        first_row += table.num_rows


def _read(
    path: Path, columns: list[str] | None, rows: int, threads: int | None
) -> Iterator[tuple[pa.Table, list[tuple[int, str]]]]:
    """The Rust reader's batches of ``columns`` (all when ``None``) as tables, each with its
    strings that are not UTF-8 (``(row, field)``, first per row; nulls in the table). A
    damaged file is an :class:`InputError` saying after how many rows."""
    done = 0
    try:
        reader = _core.ParquetReader(
            str(path), batch_rows=rows, columns=columns, num_threads=threads
        )
        while (item := reader.next_batch()) is not None:
            batch, not_utf8 = item
            table = pa.Table.from_batches([pa.record_batch(batch)])
            yield table, not_utf8
            done += table.num_rows
    except _UNREADABLE as err:  # a damaged page or column chunk
        raise InputError(
            f"not a readable Parquet file after row {done} ({err})", file=str(path)
        ) from None


def columnar_batch(
    table: pa.Table, file: str, first_row: int, not_utf8: list[tuple[int, str]] | None = None
) -> ScoredBatch:
    """``table`` (rows ``first_row...`` of ``file``) conformed to the scored columns: scores
    of any integer, decimal or float type as float64, rounded to the nearest (a column type
    fixes no row's value, so none is refused for it), and rows with a string that is not
    UTF-8 (``not_utf8``, ``(row, field)`` as the Parquet reader found them; else checked here)
    listed as problems and nulled. Its progress counts rows."""
    if not_utf8 is None:
        not_utf8 = _not_utf8(table)
    table = conform_scored_table(_scores_as_float(table), file)
    problems = {row: RowProblem(field, NOT_UTF8) for row, field in not_utf8}
    if problems:
        bad = np.zeros(table.num_rows, dtype=np.bool_)
        bad[list(problems)] = True
        mask = pa.array(bad)
        table = pa.table(
            {
                name: pc.if_else(mask, pa.scalar(None, column.type), column)
                for name, column in zip(table.column_names, table.columns, strict=True)
            }
        )
    return ScoredBatch(table, first_row, table.num_rows, problems)


def _not_utf8(table: pa.Table) -> list[tuple[int, str]]:
    """``(row, field)`` of each row's first string that is not UTF-8 (Arrow IPC files, like
    Parquet files, may hold such strings), by the Parquet reader's own check."""
    found = []
    first = 0
    for batch in table.to_batches():
        found += [(first + row, field) for row, field in _core.not_utf8(batch)]
        first += batch.num_rows
    return found


def _scores_as_float(table: pa.Table) -> pa.Table:
    """The ``output`` column with its integer or decimal ``score`` cast to float64 unsafely,
    which rounds to the nearest float64 (a safe cast refuses integers beyond 2**53)."""
    if "output" not in table.column_names:
        return table
    outputs = table.column("output")
    kind = outputs.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return table
    item = kind.value_type
    if not pa.types.is_struct(item) or item.get_field_index("score") < 0:
        return table
    score = item.field("score")
    if not (pa.types.is_integer(score.type) or pa.types.is_decimal(score.type)):
        return table
    fields = [f.with_type(pa.float64()) if f.name == "score" else f for f in item]
    as_float = (pa.large_list if pa.types.is_large_list(kind) else pa.list_)(pa.struct(fields))
    cast = outputs.cast(as_float, safe=False)
    return table.set_column(table.column_names.index("output"), "output", cast)


def _open(path: Path) -> pq.ParquetFile:
    """The file's footer."""
    try:
        return pq.ParquetFile(path)
    except _UNREADABLE as err:
        raise InputError(f"not a readable Parquet file ({err})", file=str(path)) from None


class ParquetWriter:
    """Buffers tables into row groups of :data:`ROW_GROUP_ROWS` rows, so the file is the same
    whatever batches it was written in.

    Refuses, as the JSON writers do, non-finite floats and strings that are not UTF-8
    (:class:`~dpov2.errors.InputError` naming the row and field), so that every format holds
    the same values.
    """

    def __init__(self, file: BinaryIO, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.file = file
        self.row_group_rows = row_group_rows
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = 0  # every row given to write, for the row numbers of errors
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        _core.check_batches(table.to_batches(), self.rows)
        self.rows += table.num_rows
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.row_group_rows:
            buffered = pa.concat_tables(self.pending)
            self._write_group(buffered.slice(0, self.row_group_rows))
            rest = buffered.slice(self.row_group_rows)
            self.pending, self.pending_rows = [rest], rest.num_rows

    def finish(self, schema: pa.Schema) -> None:
        """Writes what is buffered; ``schema`` is used when no table was written at all."""
        if self.pending_rows or self.writer is None:
            tables = [t for t in self.pending if t.num_rows] or [schema.empty_table()]
            self._write_group(pa.concat_tables(tables))
        assert self.writer is not None
        self.writer.close()

    def _write_group(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(
                self.file, table.schema, use_dictionary=USE_DICTIONARY, compression=COMPRESSION
            )
        # As it is: the writer takes a row group's chunks in turn, and joining them first
        # copied every pair once more (about 100 MB more peak memory on 1M pairs).
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
