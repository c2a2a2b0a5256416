"""Type stubs for the Rust extension ``dpov2._core`` (see rust/bindings/lib.rs)."""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_THREADS",
    "METHODS",
    "NUM_THREADS_ENV",
    "InstanceSplitter",
    "parse_scored_lines",
    "penalized_rewards",
    "prompt_rng_below",
    "quote_json_strings",
    "resolve_threads",
    "select_pairs",
]

METHODS: list[str]
MAX_THREADS: int
NUM_THREADS_ENV: str

_Lengths = npt.NDArray[np.float64] | npt.NDArray[np.int64] | npt.NDArray[np.int32]

def select_pairs(
    scores: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
    *,
    method: str,
    lengths: _Lengths | None = None,
    length_penalty: float = 0.0,
    seed: int,
    first_key: int = 0,
    keep_ties: bool = False,
    num_threads: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """One pair per prompt: (chosen, rejected, status), flat indices or -1.

    Raises ValueError with the core's message for bad input; TypeError for wrong dtypes.
    """

def penalized_rewards(
    scores: npt.NDArray[np.float64],
    lengths: _Lengths,
    length_penalty: float,
    *,
    num_threads: int | None = None,
) -> npt.NDArray[np.float64]:
    """``scores - length_penalty * lengths`` after validating both arrays."""

def prompt_rng_below(seed: int, key: int, bounds: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Successive draws of prompt ``key``'s stream, draw ``i`` in ``range(bounds[i])``."""

def resolve_threads(num_threads: int | None) -> int:
    """The thread count ``num_threads`` stands for (``None``: ``DPOV2_NUM_THREADS``, else
    the CPUs this process may use); ValueError outside ``1..MAX_THREADS``."""

@final
class InstanceSplitter:
    """Streams the ``instances`` of an LMFlow JSON file as chunks of NDJSON lines."""

    def __new__(cls, path: str) -> InstanceSplitter:
        """Opens ``path``; raises OSError if it cannot be opened."""

    def next_chunk(
        self, max_instances: int, max_bytes: int
    ) -> tuple[npt.NDArray[np.uint8], int] | None:
        """``(lines, count)``: instances one per line, at most ``max_instances`` and no more
        once ``max_bytes`` are reached; ``None`` at the end of the file.

        Raises ValueError naming the byte (and row) of a structural error, OSError on I/O.
        """

    @property
    def dataset_type(self) -> str | None:
        """The ``type`` member, once it has been read."""

    @property
    def bytes_read(self) -> int:
        """Bytes of the file consumed so far."""

def quote_json_strings(
    offsets: npt.NDArray[np.int64], data: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Each string ``data[offsets[i]:offsets[i + 1]]`` as a quoted, escaped JSON string:
    the new ``(offsets, data)``, offsets starting at 0. ValueError for bad offsets."""

def parse_scored_lines(
    chunk: npt.NDArray[np.uint8], parts: int
) -> (
    tuple[
        npt.NDArray[np.int32],
        npt.NDArray[np.uint8],
        npt.NDArray[np.int32],
        npt.NDArray[np.int32],
        npt.NDArray[np.uint8],
        npt.NDArray[np.float64],
    ]
    | None
):
    """Scored instances, one per line, as ``(prompt_offsets, prompt_data, output_offsets,
    text_offsets, text_data, scores)``; ``None`` if any line has a non-string prompt, a
    missing, null or mistyped field, a non-finite score or malformed JSON (or the chunk is over
    2 GiB). Offsets are Arrow's 32-bit ones. Up to ``parts`` pieces are parsed in parallel."""
