"""Type stubs for the Rust extension ``dpov2._core`` (see rust/bindings/lib.rs)."""

import numpy as np
import numpy.typing as npt

METHODS: list[str]

def select_pairs(
    scores: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
    *,
    method: str,
    lengths: npt.NDArray[np.float64] | None = None,
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
    scores: npt.NDArray[np.float64], lengths: npt.NDArray[np.float64], length_penalty: float
) -> npt.NDArray[np.float64]:
    """``scores - length_penalty * lengths`` after validating both arrays."""
