"""Hugging Face ``datasets``: a ``datasets.Dataset`` in memory, or a folder from ``save_to_disk``.

``datasets`` is imported only when one of these is used: it is slow to import and the other
formats do not need it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats.instances import ScoredBatch, batch_rows, conform_scored_table

if TYPE_CHECKING:
    import datasets

__all__ = ["is_dataset", "load_saved_dataset", "read_dataset", "to_dataset"]


def is_dataset(source: object) -> bool:
    """Whether ``source`` is a ``datasets.Dataset`` (without importing ``datasets``)."""
    return any(
        cls.__module__.startswith("datasets") and cls.__name__ == "Dataset"
        for cls in type(source).__mro__
    )


def load_saved_dataset(path: Path) -> datasets.Dataset:
    """The dataset saved in ``path`` by ``save_to_disk`` (memory-mapped, not loaded)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise InputError(
            f"not a folder saved by datasets' save_to_disk ({err})", file=str(path)
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        raise InputError(
            f"holds the splits {', '.join(loaded)}; pass one split's folder, "
            f"e.g. {path / next(iter(loaded))}",
            file=str(path),
        )
    return loaded


def read_dataset(dataset: datasets.Dataset, name: str, *, batch_size: int) -> Iterator[ScoredBatch]:
    """Batches of ``batch_size`` rows (fewer for long rows, see :func:`batch_rows`) as Arrow
    tables, no Python rows; ``progress`` counts rows."""
    columns = [c for c in ("input", "output") if c in dataset.column_names]
    selected = dataset.select_columns(columns)
    rows = batch_rows(batch_size, selected.data.nbytes / max(1, len(selected)))
    first_row = 0
    for table in selected.with_format("arrow").iter(batch_size=rows):
        table = conform_scored_table(table, name)
        yield ScoredBatch(table, first_row, table.num_rows)
        first_row += table.num_rows
    if first_row == 0:
        conform_scored_table(selected.data.table, name)


def to_dataset(table: pa.Table) -> datasets.Dataset:
    """An in-memory ``datasets.Dataset`` over ``table`` (no copy)."""
    import datasets

    return datasets.Dataset(table)
