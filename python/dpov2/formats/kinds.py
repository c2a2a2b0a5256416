"""Telling scored datasets from paired ones, and reading paired ones.

A dataset is LMFlow's ``text_to_scored_textlist`` (columns ``input`` and ``output``, a list of
``{text, score}``) or ``paired_text_to_text`` (``prompt``, ``chosen``, ``rejected`` and usually
``margin``). LMFlow JSON says which in its ``type``; the other formats by their columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.json as pa_json
import pyarrow.parquet as pq

from dpov2 import _core
from dpov2.errors import InputError
from dpov2.formats import PAIRED_TYPE, SCORED_TYPE, detect_format
from dpov2.formats.hf import is_dataset, load_saved_dataset, to_dataset
from dpov2.formats.instances import BATCH_BYTES

if TYPE_CHECKING:
    import datasets

__all__ = ["PAIR_COLUMNS", "dataset_type", "read_pairs"]

SCORED_COLUMNS = ("input", "output")
PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def dataset_type(source: str | os.PathLike[str] | datasets.Dataset) -> str:
    """``SCORED_TYPE`` or ``PAIRED_TYPE`` for a file, a ``save_to_disk`` folder or a
    ``datasets.Dataset``. Only the header, the first line or the schema is read.

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
    if fmt == "json":
        return _lmflow_type(path)
    if fmt == "jsonl":
        columns = list(_first_json_line(path))
    elif fmt == "parquet":
        columns = pq.read_schema(path).names
    else:
        columns = load_saved_dataset(path).column_names
    return _type_from_columns(columns, str(path))


def read_pairs(source: str | os.PathLike[str] | datasets.Dataset) -> datasets.Dataset:
    """A paired dataset as a ``datasets.Dataset`` (a given one is returned as it is).

    Raises:
        InputError: an unreadable file, or one that is not a paired dataset.
    """
    if dataset_type(source) != PAIRED_TYPE:
        raise InputError(f"is a {SCORED_TYPE} dataset, not {PAIRED_TYPE}", file=str(source))
    if is_dataset(source):
        paired: datasets.Dataset = source
        return paired
    path = Path(source)
    fmt = detect_format(path, None)
    if fmt == "hf":
        return load_saved_dataset(path)
    if fmt == "parquet":
        table = pq.read_table(path)
    elif fmt == "jsonl":
        try:
            table = pa_json.read_json(path)
        except ValueError as err:  # pyarrow.ArrowInvalid
            raise InputError(f"not valid JSON Lines: {err}", file=str(path)) from None
    else:
        with open(path, encoding="utf-8") as file:
            instances = json.load(file)["instances"]  # the splitter has checked the structure
        import datasets

        return datasets.Dataset.from_list(instances)
    return to_dataset(table)


def _type_from_columns(columns: Sequence[str], name: str) -> str:
    if all(c in columns for c in SCORED_COLUMNS):
        return SCORED_TYPE
    if all(c in columns for c in PAIR_COLUMNS):
        return PAIRED_TYPE
    raise InputError(
        f"has columns {', '.join(columns) or 'none'}; expected a {SCORED_TYPE} dataset "
        f"({', '.join(SCORED_COLUMNS)}) or a {PAIRED_TYPE} one ({', '.join(PAIR_COLUMNS)})",
        file=name,
    )


def _lmflow_type(path: Path) -> str:
    """The ``type`` of an LMFlow JSON file, streamed up to where it is (usually the start)."""
    file = str(path)
    try:
        splitter = _core.InstanceSplitter(file)
        while splitter.dataset_type is None and splitter.next_chunk(8192, BATCH_BYTES):
            pass
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=file) from None
    except ValueError as err:  # a structural error, with its byte offset
        raise InputError(str(err), file=file) from None
    kind = splitter.dataset_type
    if kind is None:
        raise InputError(f'no "type" key; expected "{SCORED_TYPE}" or "{PAIRED_TYPE}"', file=file)
    if kind not in (SCORED_TYPE, PAIRED_TYPE):
        raise InputError(
            f'dataset type "{kind}" is not supported here; expected "{SCORED_TYPE}" or '
            f'"{PAIRED_TYPE}"',
            file=file,
        )
    return kind


def _first_json_line(path: Path) -> dict[str, object]:
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise InputError(f"not valid JSON: {err}", file=str(path), row=number) from None
                if not isinstance(row, dict):
                    raise InputError("expected a JSON object", file=str(path), row=number)
                return row
    raise InputError("is empty", file=str(path))
