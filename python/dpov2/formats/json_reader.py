"""JSON Lines and LMFlow JSON datasets, read by the one Rust reader (``rust/json/src/read``).

The reader streams the file in batches of at most ``batch_size`` rows and about
:data:`~dpov2.formats.instances.BATCH_BYTES`, parses each batch on all threads straight into
Arrow buffers, and reports every row it cannot accept as a located problem (row, byte, field)
instead of raising, so the caller decides: raise it as an :class:`~dpov2.errors.InputError`,
or drop and count it under ``--skip-invalid``. A fault of the file as a whole (an LMFlow file
that is not ``{"type": ..., "instances": [...]}``, a truncated one) raises at once.

The rules for a valid row are those of :func:`~dpov2.formats.instances.scored_row_problem` and
:func:`~dpov2.formats.instances.paired_row_problem`, plus JSON's own (see the reader's module
documentation in ``rust/json/src/read/mod.rs``); ``tests/json_reference.py`` holds the reader to
them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from dpov2 import _core
from dpov2.errors import InputError
from dpov2.formats.instances import BATCH_BYTES, PAIRED_EXTRAS, RowProblem, ScoredBatch

__all__ = ["FRAMINGS", "SCHEMAS", "JsonReader", "typed_batches"]

#: ``lines``: JSON Lines; ``lmflow``: LMFlow's ``{"type": ..., "instances": [...]}``.
FRAMINGS = ("lines", "lmflow")
#: ``scored``: ``input``, ``output``; ``paired``: ``prompt``, ``chosen``, ``rejected``, ``margin``
#: and those of :data:`~dpov2.formats.instances.PAIRED_EXTRAS` the file has.
SCHEMAS = ("scored", "paired")


class JsonReader:
    """The batches of one JSON file, in order; iterate once.

    Each :class:`ScoredBatch` holds the schema's columns; its problem rows are null there, and
    ``progress`` counts the bytes of the file the batch consumed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        framing: str,
        schema: str,
        batch_size: int = 8192,
        threads: int | None = None,
        max_bytes: int = BATCH_BYTES,
    ) -> None:
        self.file = str(path)
        self._reader = _core.JsonReader(
            self.file,
            framing=framing,
            schema=schema,
            max_rows=batch_size,
            max_bytes=max_bytes,
            extras=list(PAIRED_EXTRAS.items()) if schema == "paired" else [],
            num_threads=threads,
        )

    @property
    def dataset_type(self) -> str | None:
        """LMFlow's ``type``, once the reader has passed it (``None`` for JSON Lines)."""
        return self._reader.dataset_type

    def __iter__(self) -> Iterator[ScoredBatch]:
        while (batch := self._reader.next_batch()) is not None:
            columns, first_row, consumed, problems = batch
            table = pa.Table.from_batches([pa.record_batch(columns)])
            located = {
                row - first_row: RowProblem(field, message, byte)
                for row, byte, field, message in problems
            }
            yield ScoredBatch(table, first_row, consumed, located)


def typed_batches(
    path: Path,
    fmt: str,
    schema: str,
    dataset_type: str | tuple[str, ...],
    *,
    batch_size: int = 8192,
    threads: int | None = None,
) -> Iterator[ScoredBatch]:
    """The batches of a JSON Lines (``fmt="jsonl"``) or LMFlow JSON (``fmt="json"``) file of
    ``schema``. An LMFlow file must say ``"type": dataset_type`` (or one of them): refused as
    soon as the reader has passed another ``type``, and at the end when there was none."""
    framing = "lmflow" if fmt == "json" else "lines"
    reader = JsonReader(
        path, framing=framing, schema=schema, batch_size=batch_size, threads=threads
    )
    for batch in reader:
        if framing == "lmflow":
            _check_type(reader, dataset_type, final=False)
        yield batch
    if framing == "lmflow":
        _check_type(reader, dataset_type, final=True)


def _check_type(reader: JsonReader, expected: str | tuple[str, ...], *, final: bool) -> None:
    found = reader.dataset_type
    allowed = (expected,) if isinstance(expected, str) else expected
    wanted = " or ".join(f'"{kind}"' for kind in allowed)
    if found is not None and found not in allowed:
        raise InputError(f'dataset type "{found}"; expected {wanted}', file=reader.file)
    if found is None and final:
        raise InputError(f'no "type" member; expected "type": {wanted}', file=reader.file)
