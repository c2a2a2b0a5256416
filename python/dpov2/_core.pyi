"""Type stubs for the Rust extension ``dpov2._core`` (see rust/bindings/lib.rs)."""

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

class ArrowArrayExportable(Protocol):
    """Anything that exports Arrow data through the PyCapsule protocol (a ``pyarrow.Array``,
    ``pyarrow.RecordBatch``, or another library's)."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]: ...

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

class InstanceSplitter:
    """Streams the ``instances`` of an LMFlow JSON file as chunks of NDJSON lines."""

    def __init__(self, path: str) -> None:
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

class JsonEncoder:
    """A JSON dataset written batch by batch by the Rust writer (``dpov2_json::JsonWriter``)."""

    @staticmethod
    def json_lines() -> JsonEncoder:
        """JSON Lines: one object per line."""

    @staticmethod
    def lmflow(dataset_type: str) -> JsonEncoder:
        """LMFlow JSON: ``{"type": dataset_type, "instances": [...]}``."""

    def encode(self, batches: Sequence[ArrowArrayExportable]) -> bytes:
        """The bytes of every row of ``batches`` (record batches), after those before.

        Raises dpov2.errors.InputError (``row`` counted from the dataset's first row,
        ``field`` the column path) for a non-finite float, a string that is not UTF-8 or a type
        JSON cannot hold; the encoder is then as it was. TypeError for a non-batch.
        """

    def finish(self) -> bytes:
        """The bytes that complete the dataset; ValueError if called twice."""

def check_batches(batches: Sequence[ArrowArrayExportable], first_row: int) -> None:
    """Raises dpov2.errors.InputError, as JsonEncoder.encode would, for a non-finite float or a
    string that is not UTF-8 in ``batches`` (rows counted from ``first_row``); columns of
    types JSON cannot hold are not looked into."""

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

class ArrowBatch:
    """A record batch held in Rust; ``pyarrow.record_batch(batch)`` takes it zero-copy."""

    def __init__(self, batch: ArrowArrayExportable) -> None:
        """Imports ``batch`` (a struct array export, such as a ``pyarrow.RecordBatch``)
        zero-copy. TypeError for anything else, ValueError for a malformed export."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        """``(schema, array)`` capsules; ``requested_schema`` is not acted on."""

    def __arrow_c_schema__(self) -> Any:
        """The schema capsule."""

    @property
    def num_rows(self) -> int: ...
