"""Statistics of pair datasets (``dpov2 inspect``), the JSON summary file, and the plots.

:func:`inspect_pairs` streams a pair file of any supported format table by table into a
:class:`~dpov2.convert.summary.PairStats`, so memory holds one table and the bounded sample,
whatever the file's size: the statistics ``dpov2 pair`` reports of the pairs it writes, as the
written file holds them. The JSON written by ``dpov2 pair --summary-json`` and printed by
``dpov2 inspect --json`` has one schema (``version``
:data:`~dpov2.convert.summary.JSON_VERSION`, described in the README). matplotlib (the
``plot`` extra) is imported only to draw a plot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dpov2.arrays import nulls, to_numpy
from dpov2.convert.summary import LENGTH_UNIT, PairStats, text_lengths
from dpov2.errors import InputError
from dpov2.formats.atomic import atomic_output, check_output_path
from dpov2.formats.kinds import pair_tables

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["check_output", "inspect_pairs", "pairs_figure", "write_json", "write_plot"]

HISTOGRAM_BINS = 50


def inspect_pairs(source: str | os.PathLike[str], *, batch_size: int = 8192) -> PairStats:
    """The statistics of the pairs in a pair file or ``save_to_disk`` folder, each pair keyed
    by its row. Lengths are in characters; without a ``margin`` column (or for rows with a
    null one) the margin statistics skip the pair rather than guess.

    Raises:
        InputError: a missing or unreadable file, one that is not a pair dataset, a bad row,
            a null text, or a margin that is not a finite number (named by file and row).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    stats = PairStats()
    first_row = 0
    for table in pair_tables(source, batch_size=batch_size):
        try:
            chosen = text_lengths(table["chosen"], "chosen")
            rejected = text_lengths(table["rejected"], "rejected")
            margins = _margins(table["margin"]) if "margin" in table.column_names else None
        except InputError as err:  # located in the table: locate it in the file
            row = None if err.row is None else first_row + err.row
            raise InputError(
                err.message, file=os.fspath(source), row=row, field=err.field
            ) from None
        rows = np.arange(first_row, first_row + table.num_rows, dtype=np.int64)
        stats.add(rows, margins, chosen, rejected)
        first_row += table.num_rows
    return stats


def _margins(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """A ``margin`` column of numbers as float64, NaN where null."""
    array = column.combine_chunks()
    kind = array.type
    if pa.types.is_null(kind):
        return np.full(len(array), np.nan)
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        raise InputError(f"has type {kind}; expected numbers", field="margin")
    values = to_numpy(array, np.float64)  # nulls read as NaN
    bad = ~np.isfinite(values)
    if array.null_count:
        bad &= ~nulls(array)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{values[row]}; expected a finite number", row=row, field="margin")
    return values


def check_output(path: Path, others: dict[str, Path], *, overwrite: bool) -> None:
    """Refuses, before any work, an output (a summary or a plot) that exists (without
    ``overwrite``), has no folder, or is, or lies inside, one of ``others`` (by role:
    ``{"INPUT": ..., "OUTPUT": ...}``)."""
    check_output_path(path, overwrite=overwrite)
    target = path.resolve()
    for role, other in others.items():
        place = other.resolve()
        if target == place or place in target.parents:
            where = "is" if target == place else "is inside"
            raise InputError(f"{where} {role}; choose another file", file=str(path))


def write_json(data: dict[str, Any], path: Path, *, overwrite: bool) -> None:
    """Writes ``data`` as indented JSON (UTF-8, a final newline), whole or not at all."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with atomic_output(path, overwrite=overwrite) as file:
        file.write(text.encode())


def pairs_figure(stats: PairStats, title: str) -> Figure:
    """Two plots of the sampled pairs (every pair, up to the sample size): the margin
    histogram, and chosen against rejected length with the line where they are equal.

    Raises:
        InputError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError(
            "--plot needs matplotlib; install it with: pip install 'dpov2[plot]'"
        ) from None
    sample = stats.sample()
    shown = (
        f"{len(sample):,} sampled of {stats.pairs:,} pairs"
        if stats.sampled
        else (f"{stats.pairs:,} pairs")
    )
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # renders with Agg, whatever pyplot's backend is
    figure.suptitle(f"{title} ({shown})")
    margins_axes, lengths_axes = figure.subplots(1, 2)
    margins = sample[:, 0][~np.isnan(sample[:, 0])]
    if len(margins):
        margins_axes.hist(margins, bins=HISTOGRAM_BINS)
    else:
        margins_axes.text(0.5, 0.5, "no margins", ha="center", transform=margins_axes.transAxes)
    margins_axes.set(title="margin", xlabel="margin", ylabel="pairs")
    measured = sample[~np.isnan(sample[:, 1])]
    dense = len(measured) > 5000
    lengths_axes.scatter(
        measured[:, 2], measured[:, 1], s=3 if dense else 8, alpha=0.15 if dense else 0.5, lw=0
    )
    if len(measured):
        top = float(np.max(measured[:, 1:]))
        lengths_axes.plot([0, top], [0, top], color="grey", linewidth=1, label="equal")
        lengths_axes.legend(loc="upper left")
    lengths_axes.set(
        title=f"chosen longer in {stats.chosen_longer_share:.1%}"
        if stats.length_count
        else "lengths",
        xlabel=f"rejected length ({LENGTH_UNIT})",
        ylabel=f"chosen length ({LENGTH_UNIT})",
    )
    return figure


def write_plot(stats: PairStats, path: Path, *, title: str, overwrite: bool) -> None:
    """Draws :func:`pairs_figure` into the PNG file ``path``, whole or not at all."""
    figure = pairs_figure(stats, title)
    with atomic_output(path, overwrite=overwrite) as file:
        figure.savefig(file, format="png", dpi=100)
