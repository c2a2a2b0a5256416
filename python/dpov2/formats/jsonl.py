"""JSON Lines: one instance per line, read in chunks of whole lines and written batch by batch."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from dpov2 import _core
from dpov2.formats.instances import ScoredBatch, batch_rows
from dpov2.formats.ndjson import NdjsonParser

__all__ = ["JsonLinesWriter", "LineChunker", "read_json_lines"]

# Bytes read before the first batch, to estimate the length of a line.
PROBE_BYTES = 1 << 20


def read_json_lines(path: Path, *, batch_size: int, threads: int) -> Iterator[ScoredBatch]:
    """Batches of about ``batch_size`` instances (fewer for long ones, see
    :func:`batch_rows`); ``progress`` counts bytes.

    Chunks are cut by size at a line end, the size set from the mean line length seen so far,
    so no line is looked at in Python.
    """
    parser = NdjsonParser(str(path), threads)
    first_row = 0
    consumed = 0
    with open(path, "rb", buffering=0) as file:
        chunker = LineChunker(file)
        size = PROBE_BYTES
        while (chunk := chunker.next(size)) is not None:
            batch = parser.parse(chunk, first_row=first_row, progress=len(chunk))
            first_row += batch.table.num_rows
            consumed += len(chunk)
            yield batch
            line_bytes = consumed / max(1, first_row)
            size = int(batch_rows(batch_size, line_bytes) * line_bytes)


class LineChunker:
    """Whole lines of a file, about ``size`` bytes at a time, in one reused buffer.

    Each chunk is a view of the buffer, valid until the next call. A line longer than the
    asked size makes the chunk (and the buffer) as long as that line.
    """

    def __init__(self, file: io.RawIOBase | io.BufferedIOBase) -> None:
        self.file = file
        self.buffer = bytearray()
        self.start = 0  # the unreturned bytes are buffer[start:end]
        self.end = 0
        self.eof = False

    def next(self, size: int) -> memoryview | None:
        """The next run of whole lines (the file's last line may lack its newline), or
        ``None`` at the end of the file."""
        self._keep_rest(max(size, 1))
        while True:
            self._fill()
            cut = self.buffer.rfind(b"\n", 0, self.end) + 1
            if cut == 0 and self.eof:
                cut = self.end  # the last line, without a newline
            if cut > 0:
                self.start = cut
                return memoryview(self.buffer)[:cut]
            if self.eof:
                return None
            self._keep_rest(2 * len(self.buffer))  # no line end yet: a longer line

    def _keep_rest(self, capacity: int) -> None:
        """Moves the unreturned bytes to the front of a buffer of at least ``capacity``."""
        rest = self.end - self.start
        if len(self.buffer) < max(capacity, rest):
            grown = bytearray(max(capacity, rest))
            grown[:rest] = self.buffer[self.start : self.end]
            self.buffer = grown
        else:
            view = memoryview(self.buffer)
            view[:rest] = view[self.start : self.end].tobytes()
        self.start, self.end = 0, rest

    def _fill(self) -> None:
        view = memoryview(self.buffer)
        while not self.eof and self.end < len(self.buffer):
            read = self.file.readinto(view[self.end :])
            if not read:
                self.eof = True
            else:
                self.end += read


class JsonLinesWriter:
    """Appends each table as JSON objects, one per line, written by the Rust JSON writer.

    Raises :class:`~dpov2.errors.InputError` (with ``row`` and ``field``) for a value that
    cannot be written faithfully: a non-finite float, a string that is not UTF-8.
    """

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.encoder = _core.JsonEncoder.json_lines()

    def write(self, table: pa.Table) -> None:
        self.file.write(self.encoder.encode(table.to_batches()))

    def finish(self, schema: pa.Schema) -> None:
        del schema  # nothing to add: an empty file is an empty JSON Lines dataset
