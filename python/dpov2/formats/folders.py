"""A folder of dataset files is one dataset: the concatenation of its files in name order.

This is LMFlow's own convention (a ``dataset_path`` folder of ``.json`` files of one ``type``),
widened to every file format dpov2 reads, and the rule :mod:`dpov2.convert.ray_engine` takes
its shards by: the folder's visible regular files (not starting with ``.``) whose extension
names a file format (:data:`EXTENSIONS`; any visible file when the format is given), sorted by
name. A folder that ``datasets``' ``save_to_disk`` wrote is not such a folder but one dataset
in its own format (:func:`is_saved_dataset`).

Rows are numbered across the files (the pairing's random keys are those of the concatenated
file), and every problem names its own file and the row within it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats.instances import RowProblem, ScoredBatch

__all__ = ["EXTENSIONS", "dataset_files", "folder_batches", "format_of_name", "is_saved_dataset"]

#: The file format each file name extension stands for.
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: What ``save_to_disk`` writes into every folder it makes (one dataset, or a dict of splits).
_SAVED_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")


def format_of_name(path: Path) -> str | None:
    """The format a file's extension names, or ``None``."""
    return EXTENSIONS.get(path.suffix.lower())


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk`` (even a damaged one)."""
    return any((folder / marker).is_file() for marker in _SAVED_MARKERS)


def dataset_files(folder: Path, input_format: str | None = None) -> list[tuple[Path, str]]:
    """The dataset files of ``folder`` and their formats, in name order (see the module).

    Raises:
        InputError: the folder holds no dataset file.
    """
    found = []
    for path in sorted(folder.iterdir(), key=os.fspath):
        if path.name.startswith(".") or not path.is_file():
            continue
        fmt = input_format or format_of_name(path)
        if fmt is not None:
            found.append((path, fmt))
    if not found:
        raise InputError(
            "holds no dataset file; expected files named *.jsonl, *.ndjson, *.json, *.parquet "
            "or *.pq, or a folder written by datasets' save_to_disk",
            file=str(folder),
        )
    return found


def folder_batches(
    files: list[tuple[Path, str]],
    read: Callable[[Path, str], Iterator[ScoredBatch]],
    column: str,
) -> Iterator[ScoredBatch]:
    """The batches ``read`` gives for each of ``files`` in turn, as one dataset: rows numbered
    across files, each problem naming its file and its row there, and progress in bytes of the
    files (a columnar file's rows count as equal shares of its size). Every file must give
    ``column`` the type the first file gave it (a JSON file's rows are of one kind), and have
    the columns it has (the optional columns of pairs, such as ``--provenance``'s, in all files
    or none).

    Raises:
        InputError: a file whose ``column`` has another type than an earlier file's, or that
            has other columns.
    """
    offset = 0
    kind: tuple[pa.DataType, Path] | None = None
    columns: list[str] = []
    for path, fmt in files:
        size = path.stat().st_size
        rows_seen = 0
        for batch in read(path, fmt):
            table = batch.table
            found = table.schema.field(column).type
            if kind is not None and table.column_names != columns and not pa.types.is_null(found):
                raise InputError(
                    f"has the columns {', '.join(table.column_names)}; expected "
                    f"{', '.join(columns)} as in {kind[1].name} (every file of a folder has "
                    "the same columns)",
                    file=str(path),
                    row=batch.first_row,
                )
            if kind is None and not pa.types.is_null(found):
                kind = (found, path)
                columns = table.column_names
            elif kind is not None and found != kind[0] and not pa.types.is_null(found):
                try:
                    values = table.column(column).cast(kind[0])
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise InputError(
                        f"has type {found}; expected {kind[0]} as in {kind[1].name} "
                        "(every file of a folder holds rows of one kind)",
                        file=str(path),
                        row=batch.first_row,
                        field=column,
                    ) from None
                table = table.set_column(table.schema.get_field_index(column), column, values)
            problems = {
                i: _located(problem, path, batch.first_row + i)
                for i, problem in batch.problems.items()
            }
            progress = batch.progress
            if fmt == "parquet":
                progress = _share(size, rows_seen, batch.table.num_rows, _rows_of(path))
            rows_seen += batch.table.num_rows
            origin = (str(path), batch.first_row)
            yield ScoredBatch(table, offset + batch.first_row, progress, problems, origin)
        offset += rows_seen


def _located(problem: RowProblem, path: Path, row: int) -> RowProblem:
    if problem.file is not None:
        return problem
    return RowProblem(problem.field, problem.message, problem.byte, file=str(path), row=row)


def _rows_of(path: Path) -> int:
    from dpov2.formats.parquet import parquet_rows

    return parquet_rows(path)


def _share(size: int, before: int, rows: int, total: int) -> int:
    """The bytes of a file of ``size`` bytes and ``total`` rows that ``rows`` rows after
    ``before`` stand for."""
    if total == 0:
        return 0
    return size * (before + rows) // total - size * before // total
