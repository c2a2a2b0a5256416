"""Hugging Face ``datasets``: a ``datasets.Dataset`` in memory, or a folder from ``save_to_disk``.

``datasets`` is imported only when one of these is used: it is slow to import and the other
formats do not need it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats.instances import ScoredBatch, batch_rows, conform_scored_table
from dpov2.formats.parquet import columnar_batch

if TYPE_CHECKING:
    import datasets

__all__ = ["is_dataset", "load_saved_dataset", "one_line", "read_dataset", "to_dataset"]


def is_dataset(source: object) -> bool:
    """Whether ``source`` is a ``datasets.Dataset`` (without importing ``datasets``)."""
    return any(
        cls.__module__.startswith("datasets") and cls.__name__ == "Dataset"
        for cls in type(source).__mro__
    )


def load_saved_dataset(path: Path) -> datasets.Dataset:
    """The dataset saved in ``path`` by ``save_to_disk`` (memory-mapped, not loaded)."""
    import datasets

    if _saved_without_rows(path):
        raise InputError(
            "is empty: a save_to_disk folder of a dataset with no rows", file=str(path)
        )
    try:
        loaded = datasets.load_from_disk(str(path))
    except _DAMAGED as err:
        raise InputError(
            f"not a folder saved by datasets' save_to_disk, or a damaged one ({one_line(err)})",
            file=str(path),
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
    tables, no Python rows, checked as Parquet's are (:func:`columnar_batch`); ``progress``
    counts rows."""
    if not all(c in dataset.column_names for c in ("input", "output")):
        conform_scored_table(dataset.data.table.slice(0, 0), name)  # names every column there
    selected = dataset.select_columns(["input", "output"])
    rows = batch_rows(batch_size, selected.data.nbytes / max(1, len(selected)))
    first_row = 0
    try:
        for table in selected.with_format("arrow").iter(batch_size=rows):
            batch = columnar_batch(table, name, first_row)
            yield batch
            first_row += batch.table.num_rows
    except (pa.ArrowException, OSError) as err:  # a damaged Arrow file in a save_to_disk folder
        raise InputError(f"cannot be read after row {first_row} ({err})", file=name) from None
    if first_row == 0:
        columnar_batch(selected.data.table.slice(0, 0), name, 0)


# What `datasets.load_from_disk` raises for a folder that is not one of its own, or damaged:
# missing files, unparsable or mistyped JSON metadata, unreadable Arrow files.
_DAMAGED = (
    FileNotFoundError,
    NotADirectoryError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    pa.ArrowException,
)


def one_line(err: BaseException, limit: int = 300) -> str:
    """An error of the Hugging Face libraries (which run over several lines, some ending in a
    colon before a list) on one line, cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError):  # str() of a KeyError is only the key
        text = f"missing key {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _saved_without_rows(path: Path) -> bool:
    """Whether ``path`` is a ``save_to_disk`` folder of zero rows: its state lists no data
    files, which ``load_from_disk`` cannot load."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("_data_files") == []


def to_dataset(table: pa.Table) -> datasets.Dataset:
    """An in-memory ``datasets.Dataset`` over ``table`` (no copy)."""
    import datasets

    return datasets.Dataset(table)
