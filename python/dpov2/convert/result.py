"""What converting one batch produces, on either path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["PairedBatch"]


@dataclass(frozen=True)
class PairedBatch:
    """``table``: the pairs (see :func:`dpov2.convert.options.pairs_schema`); ``outcomes``:
    an :class:`~dpov2.convert.options.Outcome` per instance of the batch; ``margins`` and
    ``rows``: the margin and the instance index (the random key: the index in the whole
    dataset, also when it was read shard by shard) of every pair in ``table``."""

    table: pa.Table
    outcomes: npt.NDArray[np.uint8]
    margins: npt.NDArray[np.float64]
    rows: npt.NDArray[np.int64]
