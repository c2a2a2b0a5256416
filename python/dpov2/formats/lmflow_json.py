"""LMFlow's JSON: ``{"type": ..., "instances": [...]}``, one object for the whole dataset.

Reading streams the ``instances`` array: the Rust splitter (``dpov2._core``) copies each
instance's bytes out as one line of NDJSON, a batch at a time, for the same parser as JSON
Lines; the file is never held whole. Writing (by the Rust JSON writer) emits the header, then
instances batch by batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dpov2 import _core
from dpov2.errors import InputError
from dpov2.formats.instances import BATCH_BYTES, SCORED_TYPE, ScoredBatch
from dpov2.formats.ndjson import NdjsonParser
from dpov2.formats.prefetch import prefetch

__all__ = ["LmflowJsonWriter", "read_lmflow_json"]


def read_lmflow_json(path: Path, *, batch_size: int, threads: int) -> Iterator[ScoredBatch]:
    """Batches of at most ``batch_size`` instances and about :data:`BATCH_BYTES`;
    ``progress`` counts bytes of the file.

    The ``type`` must be ``text_to_scored_textlist``; it is checked as soon as it is read
    (usually before the instances, at the end of the file if it comes after them).
    """
    file = str(path)
    parser = NdjsonParser(file, threads)
    try:
        splitter = _core.InstanceSplitter(file)
    except OSError as err:
        raise InputError(f"cannot open: {err.strerror}", file=file) from None
    first_row = 0
    # Splitting (in its own thread) overlaps with parsing the chunk before.
    for lines, count, progress in prefetch(_split(splitter, batch_size, file)):
        batch = parser.parse(lines.data, first_row=first_row, progress=progress)
        if batch.table.num_rows != count:  # the splitter and the parser disagree: a bug
            raise AssertionError(f"{file}: {count} instances split, {batch.table.num_rows} parsed")
        first_row += count
        yield batch


def _split(
    splitter: _core.InstanceSplitter, batch_size: int, file: str
) -> Iterator[tuple[npt.NDArray[np.uint8], int, int]]:
    """``(lines, count, bytes of the file consumed)`` per chunk; checks the dataset type as
    soon as it is read, and that there was one."""
    read = 0
    checked_type = False
    while True:
        try:
            chunk = splitter.next_chunk(batch_size, BATCH_BYTES)
        except ValueError as err:
            raise InputError(str(err), file=file) from None
        if not checked_type and splitter.dataset_type is not None:
            _check_type(splitter.dataset_type, file)
            checked_type = True
        if chunk is None:
            break
        lines, count = chunk
        yield lines, count, splitter.bytes_read - read
        read = splitter.bytes_read
    if splitter.dataset_type is None:
        raise InputError(f'no "type" key; expected "type": "{SCORED_TYPE}"', file=file)


def _check_type(dataset_type: str, file: str) -> None:
    if dataset_type != SCORED_TYPE:
        raise InputError(
            f'unknown dataset type "{dataset_type}"; expected "{SCORED_TYPE}"', file=file
        )


class LmflowJsonWriter:
    """``{"type": dataset_type, "instances": [`` then one instance per line, then ``]}``.

    Raises :class:`~dpov2.errors.InputError` (with ``row`` and ``field``) for a value that
    cannot be written faithfully: a non-finite float, a string that is not UTF-8.
    """

    def __init__(self, file: BinaryIO, dataset_type: str) -> None:
        self.file = file
        self.encoder = _core.JsonEncoder.lmflow(dataset_type)

    def write(self, table: pa.Table) -> None:
        self.file.write(self.encoder.encode(table.to_batches()))

    def finish(self, schema: pa.Schema) -> None:
        del schema  # the header and closing brackets are all an empty dataset needs
        self.file.write(self.encoder.finish())
