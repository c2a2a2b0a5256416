"""Reading scored datasets and writing pair datasets, batch by batch, in every supported format.

Formats, chosen from the path (or given explicitly):

- ``jsonl``: JSON Lines (``.jsonl``, ``.ndjson``), one instance per line;
- ``json``: LMFlow's ``{"type": ..., "instances": [...]}`` (``.json``);
- ``parquet``: Parquet (``.parquet``, ``.pq``);
- ``hf``: a folder written by ``datasets.Dataset.save_to_disk`` (input only);
- ``folder``: any other folder, the concatenation of its files in name order (input only; see
  :mod:`dpov2.formats.folders`).

Readers yield :class:`ScoredBatch` es of at most ``batch_size`` rows and about
:data:`~dpov2.formats.instances.BATCH_BYTES`, so memory depends on the batch size, never on the
file size. Writers append batch by batch to a temporary file that is
renamed into place only on success.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats.atomic import atomic_folder, atomic_output, check_output_path
from dpov2.formats.conversational import as_conversational, conversational_schema
from dpov2.formats.folders import (
    EXTENSIONS,
    dataset_files,
    folder_batches,
    format_of_name,
    is_saved_dataset,
)
from dpov2.formats.hf import is_dataset, load_saved_dataset, read_dataset, to_dataset
from dpov2.formats.instances import (
    PAIRED_TYPE,
    SCORED_TYPE,
    RowProblem,
    ScoredBatch,
    scored_row_problem,
)
from dpov2.formats.json_reader import typed_batches
from dpov2.formats.json_writer import JsonWriter
from dpov2.formats.parquet import ParquetWriter, parquet_rows, read_parquet

if TYPE_CHECKING:
    import datasets

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "OUTPUT_SUFFIXES",
    "PAIRED_TYPE",
    "SCORED_TYPE",
    "RowProblem",
    "ScoredBatch",
    "ScoredSource",
    "TableWriter",
    "as_conversational",
    "atomic_folder",
    "check_output_path",
    "conversational_schema",
    "dataset_files",
    "detect_format",
    "folder_format",
    "open_scored",
    "open_writer",
    "scored_row_problem",
    "to_dataset",
]

INPUT_FORMATS = ("jsonl", "json", "parquet", "hf", "folder")
OUTPUT_FORMATS = ("jsonl", "json", "parquet")
#: The file name extension each output format is written with.
OUTPUT_SUFFIXES = {"jsonl": ".jsonl", "json": ".json", "parquet": ".parquet"}


@dataclass
class ScoredSource:
    """An open input: its batches, and how far they go for a progress bar (``total`` in
    ``unit``, which is ``"B"`` for bytes or ``"rows"``; ``None`` if unknown). ``path`` is the
    file or folder read (``None`` for a ``datasets.Dataset``): no output may overwrite it."""

    name: str
    batches: Iterator[ScoredBatch]
    total: int | None
    unit: str
    path: Path | None = None


class TableWriter(Protocol):
    """Appends tables; ``finish`` completes the file (``schema`` serves an empty output)."""

    def write(self, table: pa.Table) -> None: ...

    def finish(self, schema: pa.Schema) -> None: ...


def detect_format(path: Path, given: str | None, *, output: bool = False) -> str:
    """``given`` if set, else the format the file extension implies; for an input folder,
    ``hf`` if ``save_to_disk`` wrote it, else ``folder`` (a folder given a file format is a
    folder of files of that format)."""
    choices = OUTPUT_FORMATS if output else INPUT_FORMATS
    if given is not None and given not in choices:
        raise InputError(f"unknown format '{given}'; expected one of: {', '.join(choices)}")
    if not output and path.is_dir() and given in (None, *OUTPUT_FORMATS):
        return "hf" if is_saved_dataset(path) and given is None else "folder"
    if given is not None:
        return given
    fmt = format_of_name(path)
    if fmt is None:
        flag = "--output-format" if output else "--input-format"
        raise InputError(
            f"cannot tell the format from the extension '{path.suffix}'; "
            f"use {', '.join(sorted(EXTENSIONS))} or pass {flag} ({', '.join(choices)})",
            file=str(path),
        )
    return fmt


def folder_format(given: str | None) -> str | None:
    """The format of a folder's files: the one given for the folder, if a file format."""
    return given if given in OUTPUT_FORMATS else None


def open_scored(
    source: str | os.PathLike[str] | datasets.Dataset,
    *,
    input_format: str | None = None,
    batch_size: int = 8192,
    max_samples: int | None = None,
    threads: int | None = None,
) -> ScoredSource:
    """Opens a scored dataset (a file, a folder, or a ``datasets.Dataset``) for reading in
    batches; a folder that ``save_to_disk`` did not write is its files' concatenation (see
    :mod:`dpov2.formats.folders`).

    ``max_samples`` stops after that many instances; ``threads`` is the number of threads for
    parsing JSON (default: ``DPOV2_NUM_THREADS``, else every CPU the process may use).

    Raises:
        InputError: a missing, empty or unreadable file, or an unknown format.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if is_dataset(source):
        dataset: datasets.Dataset = source
        batches = read_dataset(dataset, "dataset", batch_size=batch_size)
        return _limit(ScoredSource("dataset", batches, len(dataset), "rows"), max_samples)
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", file=str(path))
    fmt = detect_format(path, input_format)

    def read(file: Path, fmt: str) -> Iterator[ScoredBatch]:
        if fmt == "parquet":
            return read_parquet(file, batch_size=batch_size, threads=threads)
        return typed_batches(
            file, fmt, "scored", SCORED_TYPE, batch_size=batch_size, threads=threads
        )

    if fmt == "folder":
        files = dataset_files(path, folder_format(input_format))
        batches = folder_batches(files, read, "input")
        total = sum(file.stat().st_size for file, _ in files)
        opened = ScoredSource(str(path), batches, total, "B", path)
    elif fmt != "hf" and (not path.is_file() or path.stat().st_size == 0):
        raise InputError("is empty" if path.is_file() else "is not a file", file=str(path))
    elif fmt in ("jsonl", "json"):
        opened = ScoredSource(str(path), read(path, fmt), path.stat().st_size, "B", path)
    elif fmt == "parquet":
        opened = ScoredSource(str(path), read(path, fmt), parquet_rows(path), "rows", path)
    else:
        dataset = load_saved_dataset(path)
        batches = read_dataset(dataset, str(path), batch_size=batch_size)
        opened = ScoredSource(str(path), batches, len(dataset), "rows", path)
    return _limit(opened, max_samples)


def _limit(source: ScoredSource, max_samples: int | None) -> ScoredSource:
    """The first ``max_samples`` instances only (the last batch cut short)."""
    if max_samples is None:
        return source
    if max_samples < 0:
        raise InputError(f"max samples must be >= 0, got {max_samples}")

    def limited(batches: Iterator[ScoredBatch]) -> Iterator[ScoredBatch]:
        with contextlib.closing(batches):  # type: ignore[type-var]
            for batch in batches:
                keep = max_samples - batch.first_row
                if keep <= 0:
                    return
                if keep < batch.table.num_rows:
                    problems = {i: p for i, p in batch.problems.items() if i < keep}
                    table = batch.table.slice(0, keep)
                    yield dataclasses.replace(batch, table=table, problems=problems)
                    return
                yield batch

    total = source.total
    if source.unit == "rows" and total is not None:
        total = min(total, max_samples)
    return ScoredSource(source.name, limited(source.batches), total, source.unit, source.path)


@contextlib.contextmanager
def open_writer(
    path: str | os.PathLike[str],
    output_format: str | None = None,
    *,
    dataset_type: str = PAIRED_TYPE,
    overwrite: bool = False,
    threads: int | None = None,
) -> Iterator[TableWriter]:
    """A writer whose file appears under ``path`` only if the ``with`` block succeeds.

    ``dataset_type`` is the ``type`` written in LMFlow's JSON; ``threads`` the JSON writer's
    threads. Call ``finish`` before leaving the block. Pairs with a chat-message prompt are
    written in TRL's conversational format (see :mod:`dpov2.formats.conversational`), in
    every format.
    """
    target = Path(path)
    fmt = detect_format(target, output_format, output=True)
    with atomic_output(target, overwrite=overwrite) as file:
        writer: TableWriter
        if fmt == "jsonl":
            writer = JsonWriter(file, threads=threads)
        elif fmt == "json":
            writer = JsonWriter(file, dataset_type, threads=threads)
        else:
            writer = ParquetWriter(file)
        yield _Conversational(writer)


class _Conversational:
    """A writer that hands its tables and schema on in TRL's conversational format."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer

    def write(self, table: pa.Table) -> None:
        self.writer.write(as_conversational(table))

    def finish(self, schema: pa.Schema) -> None:
        self.writer.finish(conversational_schema(schema))
