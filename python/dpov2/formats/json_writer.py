"""JSON Lines and LMFlow JSON files, written batch by batch by the one Rust JSON writer
(``rust/json/src/write``): escaping, structure and float formatting in one place, floats in the
shortest form that reads back exactly."""

from __future__ import annotations

from typing import BinaryIO

import pyarrow as pa

from dpov2 import _core

__all__ = ["JsonWriter"]


class JsonWriter:
    """Appends tables to ``file`` as JSON Lines (``dataset_type=None``) or as LMFlow's
    ``{"type": dataset_type, "instances": [...]}``, whose separators run across tables.

    Raises :class:`~dpov2.errors.InputError` (with ``row`` and ``field``) for a value that
    cannot be written faithfully: a non-finite float, a string that is not UTF-8. Large
    tables are encoded on ``threads`` threads (see :mod:`dpov2.threads`).
    """

    def __init__(
        self, file: BinaryIO, dataset_type: str | None = None, *, threads: int | None = None
    ) -> None:
        self.file = file
        self.encoder = (
            _core.JsonEncoder.json_lines(num_threads=threads)
            if dataset_type is None
            else _core.JsonEncoder.lmflow(dataset_type, num_threads=threads)
        )

    def write(self, table: pa.Table) -> None:
        # The encoder's own buffer, seen through a memoryview: written without a copy.
        self.file.write(self.encoder.encode(table.to_batches()).data)

    def finish(self, schema: pa.Schema) -> None:
        """Completes the file (LMFlow's closing brackets; nothing for JSON Lines)."""
        del schema  # an empty dataset needs no schema in JSON
        self.file.write(self.encoder.finish())
