"""What converting one batch produces, on either path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["PairedBatch"]


@dataclass(frozen=True)
class PairedBatch:
    """``table``: the pairs (see :func:`dpov2.convert.options.pairs_schema`), in instance
    order, an instance's pairs in selection order; ``outcomes``: an
    :class:`~dpov2.convert.options.Outcome` per instance of the batch; ``margins`` and
    ``rows``: the margin and the instance index (the index in the whole dataset, also when
    it was read shard by shard; the random key unless keyed by content) of every pair in
    ``table``, so an instance with several pairs has its index several times.
    ``before_limits``: when the options set length limits, the same batch paired without
    them, for the summary's length-bias report (how the limits changed the pairs)."""

    table: pa.Table
    outcomes: npt.NDArray[np.uint8]
    margins: npt.NDArray[np.float64]
    rows: npt.NDArray[np.int64]
    before_limits: PairedBatch | None = None
