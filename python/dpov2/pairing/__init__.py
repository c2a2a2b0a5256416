"""Choosing one (chosen, rejected) pair per prompt from reward-scored responses.

Two paths give identical results for every input and seed: ``use_fast=True`` runs the
Rust core (``dpov2._core``, parallel over prompts, GIL released), ``use_fast=False`` runs the
plain-Python reference in :mod:`dpov2.pairing.reference`. The semantics are defined once, in
the README's "Pair selection" section.
"""

from __future__ import annotations

import math
import numbers
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from dpov2 import _core
from dpov2.pairing import reference
from dpov2.pairing.status import PairStatus
from dpov2.threads import resolve_threads

__all__ = [
    "METHODS",
    "PairSelection",
    "PairStatus",
    "calc_reward_with_length_penalty",
    "sampling_paired_idx_from_rewards",
    "select_pairs",
]

METHODS: tuple[str, ...] = reference.METHODS

ArrayLike = npt.ArrayLike
_Lengths = npt.NDArray[np.float64] | npt.NDArray[np.int64] | npt.NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class PairSelection:
    """One entry per prompt.

    ``chosen`` and ``rejected`` are flat indices into the response arrays (``int64``), ``-1``
    where the prompt yielded no pair; ``status`` (``uint8``) holds the :class:`PairStatus`
    saying why.
    """

    chosen: npt.NDArray[np.int64]
    rejected: npt.NDArray[np.int64]
    status: npt.NDArray[np.uint8]

    @property
    def paired(self) -> npt.NDArray[np.bool_]:
        """Mask of the prompts that yielded a pair."""
        return np.asarray(self.status == PairStatus.PAIRED)

    def counts(self) -> dict[str, int]:
        """How many prompts ended in each status, by lower-case status name."""
        tally = np.bincount(self.status, minlength=len(PairStatus))
        return {status.name.lower(): int(tally[status]) for status in PairStatus}


def select_pairs(
    scores: ArrayLike,
    offsets: ArrayLike,
    *,
    method: str,
    lengths: ArrayLike | None = None,
    length_penalty: float = 0.0,
    seed: int = 42,
    first_key: int = 0,
    keep_ties: bool = False,
    use_fast: bool = True,
    num_threads: int | None = None,
) -> PairSelection:
    """Selects one preference pair per prompt over flat arrays.

    Every argument is checked here, once, before either path runs, so both paths accept and
    refuse the same arguments with the same exception and message.

    Args:
        scores: raw reward of every response of every prompt, prompt after prompt.
        offsets: ``n_prompts + 1`` non-decreasing integers from 0 to ``len(scores)``;
            prompt ``p`` owns responses ``offsets[p]:offsets[p + 1]``.
        method: ``random``, ``max_min``, ``max_max`` or ``max_random``.
        lengths: response lengths (any unit: characters, tokens), needed when
            ``length_penalty`` is non-zero. ``int32``, ``int64`` and ``float64`` arrays are
            read as they are, without a copy.
        length_penalty: ranking uses ``score - length_penalty * length``; positive values
            favour shorter responses, negative ones longer.
        seed: the randomness, an integer in ``[0, 2**64)``.
        first_key: the global position of this call's first prompt. Random draws depend only
            on ``(seed, first_key + p)``, so a dataset paired chunk by chunk with the right
            ``first_key`` gives the same pairs as in one call.
        keep_ties: keep pairs whose two penalised rewards are equal (LMFlow does); by default
            they carry no preference and are dropped with status ``TIE``.
        use_fast: run the Rust core (default) or the pure-Python reference.
        num_threads: threads for the Rust core, see :func:`dpov2.threads.resolve_threads`
            (``None``: ``DPOV2_NUM_THREADS``, else the CPUs this process may use). Checked on
            both paths; the result never depends on it.

    Raises:
        ValueError: an unknown method, non-finite scores/lengths/penalty, negative lengths,
            offsets that do not delimit the arrays (the message names the first offending
            prompt), a seed, first key or thread count out of range.
        TypeError: arrays that are not one-dimensional numbers (integers for offsets), or an
            argument of the wrong type (``method`` not a str, ``keep_ties`` not a bool, ...).
    """
    scores_arr = _as_scores(scores, "scores")
    offsets_arr = _as_offsets(offsets)
    lengths_arr = None if lengths is None else _as_lengths(lengths)
    _check_method(method)
    _check_bool(keep_ties, "keep_ties")
    penalty = _as_penalty(length_penalty, has_lengths=lengths_arr is not None)
    seed = _as_u64(seed, "seed")
    first_key = _as_u64(first_key, "first_key")
    threads = resolve_threads(num_threads)
    if use_fast:
        chosen, rejected, status = _core.select_pairs(
            scores_arr,
            offsets_arr,
            method=method,
            lengths=lengths_arr,
            length_penalty=penalty,
            seed=seed,
            first_key=first_key,
            keep_ties=bool(keep_ties),
            num_threads=threads,
        )
        return PairSelection(chosen, rejected, status)
    ref_chosen, ref_rejected, ref_status = reference.select_pairs(
        scores_arr.tolist(),
        offsets_arr.tolist(),
        method=method,
        lengths=None if lengths_arr is None else lengths_arr.tolist(),
        length_penalty=penalty,
        seed=seed,
        first_key=first_key,
        keep_ties=bool(keep_ties),
    )
    return PairSelection(
        np.array(ref_chosen, dtype=np.int64),
        np.array(ref_rejected, dtype=np.int64),
        np.array(ref_status, dtype=np.uint8),
    )


def sampling_paired_idx_from_rewards(
    rewards: Sequence[float] | ArrayLike,
    sampling_paired_method: str = "random",
    use_fast: bool = False,
    seed: int | None = None,
) -> tuple[int, int]:
    """LMFlow's per-prompt API: indices of (chosen, rejected) among one prompt's rewards.

    As in LMFlow, a pair of equal rewards is returned rather than dropped. ``seed=None``
    draws a fresh seed from the operating system, so such calls are not reproducible; pass a
    seed for reproducible pairs.

    Raises:
        ValueError: fewer than two rewards, or any :func:`select_pairs` input error.
    """
    scores = _as_scores(rewards, "rewards")
    if len(scores) < 2:
        raise ValueError(f"need at least two rewards to form a pair, got {len(scores)}")
    selection = select_pairs(
        scores,
        np.array([0, len(scores)], dtype=np.int64),
        method=sampling_paired_method,
        seed=secrets.randbits(64) if seed is None else seed,
        keep_ties=True,
        use_fast=use_fast,
    )
    return int(selection.chosen[0]), int(selection.rejected[0])


def calc_reward_with_length_penalty(
    rewards: Sequence[float] | ArrayLike,
    lengths: Sequence[float] | ArrayLike,
    length_penalty: float,
    use_fast: bool = False,
) -> npt.NDArray[np.float64]:
    """LMFlow's helper: penalised rewards ``rewards - length_penalty * lengths``.

    Raises:
        ValueError: mismatched sizes, non-finite rewards, lengths or penalty, or negative
            lengths.
    """
    scores = _as_scores(rewards, "rewards")
    lengths_arr = _as_lengths(lengths)
    penalty = _as_penalty(length_penalty, has_lengths=True)
    threads = resolve_threads(None)
    if use_fast:
        return _core.penalized_rewards(scores, lengths_arr, penalty, num_threads=threads)
    penalized = reference.penalized_rewards(scores.tolist(), lengths_arr.tolist(), penalty)
    return np.array(penalized, dtype=np.float64)


#: Length dtypes the Rust core reads as they are; others are converted to the nearest one.
_LENGTH_DTYPES = (np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32))


def _numbers(values: ArrayLike, name: str, *, integers: bool) -> npt.NDArray[Any]:
    """``values`` as a 1-D array of numbers, refusing anything that would convert lossily."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise TypeError(f"{name} must be one-dimensional, got shape {array.shape}")
    kind = array.dtype.kind
    if len(array) and (kind not in "biuf" or (integers and kind == "f")):
        wanted = "integers" if integers else "numbers"
        raise TypeError(f"{name} must hold {wanted}, got dtype {array.dtype}")
    if kind == "u" and len(array) and array.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} has values beyond the int64 range")
    return array


def _as_scores(values: ArrayLike, name: str) -> npt.NDArray[np.float64]:
    return np.ascontiguousarray(_numbers(values, name, integers=False), dtype=np.float64)


def _as_offsets(values: ArrayLike) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(_numbers(values, "offsets", integers=True), dtype=np.int64)


def _as_lengths(values: ArrayLike) -> _Lengths:
    """Lengths in a dtype the core reads without a copy: ``float64``, ``int64`` and ``int32``
    (native byte order) as they are, other floats as ``float64``, other integers as ``int64``."""
    array = _numbers(values, "lengths", integers=False)
    dtype = array.dtype
    if dtype not in _LENGTH_DTYPES:
        dtype = np.dtype(np.float64 if dtype.kind == "f" else np.int64)
    return np.ascontiguousarray(array, dtype=dtype)


def _check_method(method: object) -> None:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    reference.check_method(method)


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _as_penalty(value: object, *, has_lengths: bool) -> float:
    """``length_penalty`` as a finite float: a real number (not a bool); an integer beyond
    the float range is infinite, so refused as such."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"length_penalty must be a real number, got {type(value).__name__}")
    try:
        penalty = float(value)
    except OverflowError:
        penalty = -math.inf if value < 0 else math.inf
    reference.check_penalty(penalty, has_lengths=has_lengths)
    return penalty


def _as_u64(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return int(value)
