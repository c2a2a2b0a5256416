"""Type stubs for the Rust extension ``dpov2._core`` (see rust/bindings/lib.rs)."""

from collections.abc import Sequence
from typing import Any, Protocol, final

import numpy as np
import numpy.typing as npt

class _ArrowExportable(Protocol):
    """Anything that exports Arrow data through the PyCapsule protocol (a ``pyarrow.Array``,
    ``pyarrow.RecordBatch``, or another library's)."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]: ...

__all__ = [
    "MAX_THREADS",
    "METHODS",
    "NUM_THREADS_ENV",
    "STATUSES",
    "TIE_ORDERS",
    "ArrowBatch",
    "JsonEncoder",
    "JsonReader",
    "ParquetError",
    "ParquetReader",
    "char_lengths",
    "check_batches",
    "content_keys",
    "duplicate_of",
    "gather_strings",
    "not_utf8",
    "penalized_rewards",
    "prompt_rng_below",
    "resolve_threads",
    "select_pairs",
]

METHODS: list[str]
TIE_ORDERS: list[str]
STATUSES: list[tuple[str, int]]
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
    tie_order: str = "dpov2",
    pairs_per_prompt: int = 1,
    min_margin: float | None = None,
    margin_scale: float = 1.0,
    margin_from: str = "raw",
    max_length_ratio: float | None = None,
    max_length_diff: float | None = None,
    duplicate_of: npt.NDArray[np.int64] | None = None,
    keys: npt.NDArray[np.uint64] | None = None,
    num_threads: int | None = None,
) -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """Up to ``pairs_per_prompt`` pairs per prompt: (status per prompt, pair_offsets,
    chosen, rejected), the last two flat response indices per pair.

    Raises ValueError with the core's message for bad input; TypeError for wrong dtypes.
    """

def duplicate_of(
    texts: _ArrowExportable, offsets: npt.NDArray[np.int64], *, num_threads: int | None = None
) -> npt.NDArray[np.int64]:
    """Per response, the index within its prompt of the first byte-equal text."""

def content_keys(
    prompts: _ArrowExportable, texts: _ArrowExportable, offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """Per instance, FNV-1a over its prompt pieces and response texts, length-prefixed."""

def char_lengths(
    texts: _ArrowExportable, *, num_threads: int | None = None
) -> npt.NDArray[np.int64]:
    """The length in code points of every value of a string array, as ``utf8_length``."""

def gather_strings(
    texts: _ArrowExportable, indices: npt.NDArray[np.int64], *, num_threads: int | None = None
) -> ArrowBatch:
    """``texts.take(indices)`` for a string array, as a one-column batch (``values``);
    ValueError for an index out of bounds."""

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
class JsonReader:
    """The one JSON reader (``dpov2_json::Reader``) over a file: JSON Lines or LMFlow JSON,
    scored or paired rows, as Arrow record batches with located problems."""

    def __new__(
        cls,
        path: str,
        *,
        framing: str,
        schema: str,
        max_rows: int,
        max_bytes: int,
        extras: list[tuple[str, str]] = ...,
        num_threads: int | None = None,
    ) -> JsonReader:
        """Opens ``path``; ``framing`` is ``lines`` or ``lmflow``, ``schema`` ``scored`` or
        ``paired``; ``extras``, ``(name, type)`` with type ``float64``, ``int64`` or
        ``string``, the optional members of paired rows read into columns of their own
        (those the first valid row has). InputError if it cannot be opened, ValueError for
        bad arguments."""

    def next_batch(
        self,
    ) -> tuple[ArrowBatch, int, int, list[tuple[int, int, str | None, str]]] | None:
        """``(batch, first_row, bytes consumed, problems)``, each problem ``(row, byte, field,
        message)`` of a row that is null in the batch; ``None`` at the end. InputError (with
        ``file``, ``row``, ``byte``) for a fault of the file as a whole."""

    @property
    def dataset_type(self) -> str | None:
        """LMFlow's ``type`` member, once read (``None`` for JSON Lines)."""

class ParquetError(ValueError):
    """A Parquet file that arrow-rs cannot read (a damaged footer, page or column chunk), with
    its message; ``dpov2.formats.parquet`` words it for the user."""

@final
class ParquetReader:
    """A Parquet file's columns as Arrow record batches (``dpov2_parquet::Reader``), each
    column's pages read and decompressed ahead unless the thread setting is 1."""

    def __new__(
        cls,
        path: str,
        *,
        batch_rows: int,
        columns: list[str] | None = None,
        num_threads: int | None = None,
    ) -> ParquetReader:
        """Opens ``path`` for ``columns`` (all when ``None``), ``batch_rows`` rows a batch.
        InputError if it cannot be opened, ParquetError if it is not Parquet or lacks a
        column, ValueError for a thread count out of range."""

    def next_batch(self) -> tuple[ArrowBatch, list[tuple[int, str]]] | None:
        """``(batch, not_utf8)``: each ``(row, field)`` of not_utf8 the first string of its row
        that is not UTF-8, a null in the batch; ``None`` at the end. ParquetError for a damaged
        page or column chunk."""

def not_utf8(batch: _ArrowExportable) -> list[tuple[int, str]]:
    """``(row, field)`` of each row's first string of ``batch`` (a record batch) that is not
    UTF-8, in row order, by the Parquet reader's check."""

@final
class JsonEncoder:
    """A JSON dataset written batch by batch by the Rust writer (``dpov2_json::JsonWriter``)."""

    @staticmethod
    def json_lines(*, num_threads: int | None = None) -> JsonEncoder:
        """JSON Lines: one object per line."""

    @staticmethod
    def lmflow(dataset_type: str, *, num_threads: int | None = None) -> JsonEncoder:
        """LMFlow JSON: ``{"type": dataset_type, "instances": [...]}``."""

    def encode(self, batches: Sequence[_ArrowExportable]) -> npt.NDArray[np.uint8]:
        """The bytes of every row of ``batches`` (record batches), after those before, as a
        ``uint8`` array holding the encoder's buffer (``file.write`` takes it uncopied).

        Raises dpov2.errors.InputError (``row`` counted from the dataset's first row,
        ``field`` the column path) for a non-finite float, a string that is not UTF-8 or a type
        JSON cannot hold; the encoder is then as it was. TypeError for a non-batch.
        """

    def finish(self) -> bytes:
        """The bytes that complete the dataset; ValueError if called twice."""

def check_batches(batches: Sequence[_ArrowExportable], first_row: int) -> None:
    """Raises dpov2.errors.InputError, as JsonEncoder.encode would, for a non-finite float or a
    string that is not UTF-8 in ``batches`` (rows counted from ``first_row``); columns of
    types JSON cannot hold are not looked into."""

@final
class ArrowBatch:
    """A record batch held in Rust; ``pyarrow.record_batch(batch)`` takes it zero-copy."""

    def __new__(cls, batch: _ArrowExportable) -> ArrowBatch:
        """Imports ``batch`` (a struct array export, such as a ``pyarrow.RecordBatch``)
        zero-copy. TypeError for anything else, ValueError for a malformed export."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        """``(schema, array)`` capsules; ``requested_schema`` is not acted on."""

    def __arrow_c_schema__(self) -> Any:
        """The schema capsule."""

    @property
    def num_rows(self) -> int: ...
