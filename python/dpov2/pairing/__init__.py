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
    "TIE_ORDERS",
    "PairSelection",
    "PairStatus",
    "calc_reward_with_length_penalty",
    "content_keys",
    "duplicate_of",
    "sampling_paired_idx_from_rewards",
    "select_pairs",
]

#: Every selection method, in documentation order: the one list the CLI, the convert options
#: and both paths use.
METHODS: tuple[str, ...] = reference.METHODS
TIE_ORDERS: tuple[str, ...] = reference.TIE_ORDERS

ArrayLike = npt.ArrayLike
_Lengths = npt.NDArray[np.float64] | npt.NDArray[np.int64] | npt.NDArray[np.int32]


@dataclass(frozen=True, eq=False)
class PairSelection:
    """Pair-shaped: ``status`` (``uint8``, a :class:`PairStatus` per prompt) and
    ``pair_offsets`` (``int64``, ``n_prompts + 1``): the pairs of prompt ``p`` are
    ``pair_offsets[p]:pair_offsets[p + 1]`` of ``chosen`` and ``rejected``, flat indices into
    the response arrays (``int64``), in the method's preference order (random methods: in
    the order drawn)."""

    status: npt.NDArray[np.uint8]
    pair_offsets: npt.NDArray[np.int64]
    chosen: npt.NDArray[np.int64]
    rejected: npt.NDArray[np.int64]

    @property
    def paired(self) -> npt.NDArray[np.bool_]:
        """Mask of the prompts that yielded at least one pair."""
        return np.asarray(self.status == int(PairStatus.PAIRED))

    def pair_prompts(self) -> npt.NDArray[np.int64]:
        """The prompt index of every pair."""
        n_prompts = len(self.pair_offsets) - 1
        return np.repeat(np.arange(n_prompts, dtype=np.int64), np.diff(self.pair_offsets))

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
    tie_order: str = "dpov2",
    pairs_per_prompt: int = 1,
    min_margin: float | None = None,
    margin_scale: float = 1.0,
    margin_from: str = "raw",
    max_length_ratio: float | None = None,
    max_length_diff: float | None = None,
    duplicate_of: ArrayLike | None = None,
    keys: ArrayLike | None = None,
    use_fast: bool = True,
    num_threads: int | None = None,
) -> PairSelection:
    """Selects up to ``pairs_per_prompt`` preference pairs per prompt over flat arrays.

    Every argument is checked here, once, before either path runs, so both paths accept and
    refuse the same arguments with the same exception and message.

    Args:
        scores: raw reward of every response of every prompt, prompt after prompt.
        offsets: ``n_prompts + 1`` non-decreasing integers from 0 to ``len(scores)``;
            prompt ``p`` owns responses ``offsets[p]:offsets[p + 1]``.
        method: one of :data:`METHODS` (see the README for each one's preference order).
        lengths: response lengths (any unit: characters, tokens), needed when
            ``length_penalty`` is non-zero or a length limit is set. ``int32``, ``int64`` and
            ``float64`` arrays are read as they are, without a copy.
        length_penalty: ranking uses ``score - length_penalty * length``; positive values
            favour shorter responses, negative ones longer.
        seed: the randomness, an integer in ``[0, 2**64)``.
        first_key: the global position of this call's first prompt. Random draws depend only
            on ``(seed, first_key + p)``, so a dataset paired chunk by chunk with the right
            ``first_key`` gives the same pairs as in one call. Unused with ``keys``.
        keep_ties: pairs of equal penalised rewards are eligible (LMFlow keeps them); by
            default they carry no preference and are not.
        tie_order: ``"dpov2"`` (equal rewards rank lower index first; of a tied pair the
            first pick is chosen) or ``"lmflow"`` (LMFlow's choices, see the README).
        pairs_per_prompt: at most this many pairs per prompt (>= 1).
        min_margin: pairs whose margin ``(chosen - rejected) * margin_scale``, over raw
            scores or (``margin_from="penalized"``) penalised rewards, is below this are not
            eligible.
        max_length_ratio: pairs with ``longer > max_length_ratio * shorter`` (>= 1, in the
            unit of ``lengths``) are not eligible.
        max_length_diff: pairs with ``longer - shorter > max_length_diff`` (>= 0) are not
            eligible.
        duplicate_of: per response, the index within its prompt of the first response with
            the same text (its own index for a first occurrence; see :func:`duplicate_of`);
            later copies are not candidates.
        keys: per prompt, the ``uint64`` key of its random stream, instead of
            ``first_key + p`` (content keys: :func:`dpov2.pairing.content.content_key`).
        use_fast: run the Rust core (default) or the pure-Python reference.
        num_threads: threads for the Rust core, see :func:`dpov2.threads.resolve_threads`
            (``None``: ``DPOV2_NUM_THREADS``, else the CPUs this process may use). Checked on
            both paths; the result never depends on it.

    Raises:
        ValueError: an unknown method or tie order, ``pairs_per_prompt < 1``, a length ratio
            below 1 or a negative length difference, non-finite scores/lengths/options,
            negative lengths, offsets that do not delimit the arrays (the message names the
            first offending prompt), a bad copy index, a seed, first key or thread count out
            of range.
        TypeError: arrays that are not one-dimensional numbers (integers for offsets,
            copy indices and keys), or an argument of the wrong type.
    """
    scores_arr = _as_scores(scores, "scores")
    offsets_arr = _as_ints(offsets, "offsets")
    lengths_arr = None if lengths is None else _as_lengths(lengths)
    duplicates_arr = None if duplicate_of is None else _as_ints(duplicate_of, "duplicate_of")
    keys_arr = None if keys is None else _as_keys(keys)
    for name, text in (("method", method), ("tie_order", tie_order), ("margin_from", margin_from)):
        _check_str(text, name)
    _check_bool(keep_ties, "keep_ties")
    k = _as_count(pairs_per_prompt)
    penalty = _as_real(length_penalty, "length_penalty")
    filters = reference.Filters(
        keep_ties=bool(keep_ties),
        tie_order=tie_order,
        min_margin=_as_real_or_none(min_margin, "min_margin"),
        margin_scale=_as_real(margin_scale, "margin_scale"),
        margin_from=margin_from,
        max_length_ratio=_as_real_or_none(max_length_ratio, "max_length_ratio"),
        max_length_diff=_as_real_or_none(max_length_diff, "max_length_diff"),
    )
    reference.check_options(method, k, penalty, filters, has_lengths=lengths_arr is not None)
    seed = _as_u64(seed, "seed")
    first_key = _as_u64(first_key, "first_key")
    threads = resolve_threads(num_threads)
    if use_fast:
        status, pair_offsets, chosen, rejected = _core.select_pairs(
            scores_arr,
            offsets_arr,
            method=method,
            lengths=lengths_arr,
            length_penalty=penalty,
            seed=seed,
            first_key=first_key,
            keep_ties=filters.keep_ties,
            tie_order=filters.tie_order,
            pairs_per_prompt=k,
            min_margin=filters.min_margin,
            margin_scale=filters.margin_scale,
            margin_from=filters.margin_from,
            max_length_ratio=filters.max_length_ratio,
            max_length_diff=filters.max_length_diff,
            duplicate_of=duplicates_arr,
            keys=keys_arr,
            num_threads=threads,
        )
        return PairSelection(status, pair_offsets, chosen, rejected)
    ref = reference.select_pairs(
        scores_arr.tolist(),
        offsets_arr.tolist(),
        method=method,
        lengths=None if lengths_arr is None else lengths_arr.tolist(),
        length_penalty=penalty,
        seed=seed,
        first_key=first_key,
        pairs_per_prompt=k,
        filters=filters,
        duplicate_of=None if duplicates_arr is None else duplicates_arr.tolist(),
        keys=None if keys_arr is None else keys_arr.tolist(),
    )
    ref_status, ref_offsets, ref_chosen, ref_rejected = ref
    return PairSelection(
        np.array(ref_status, dtype=np.uint8),
        np.array(ref_offsets, dtype=np.int64),
        np.array(ref_chosen, dtype=np.int64),
        np.array(ref_rejected, dtype=np.int64),
    )


def duplicate_of(
    texts: Any, offsets: ArrayLike, *, num_threads: int | None = None
) -> npt.NDArray[np.int64]:
    """Per response, the index within its prompt of the first response whose text is the
    same bytes (its own index for a first occurrence): the ``duplicate_of`` argument of
    :func:`select_pairs`, found by the Rust core in the buffers of ``texts``, an Arrow string
    array (``offsets`` delimit its prompts), on ``num_threads`` threads (as for
    :func:`select_pairs`). The reference is :func:`dpov2.pairing.content.duplicate_of`."""
    return _core.duplicate_of(texts, _as_ints(offsets, "offsets"), num_threads=num_threads)


def content_keys(prompts: Any, texts: Any, offsets: ArrayLike) -> npt.NDArray[np.uint64]:
    """Per instance, the content key (:func:`dpov2.pairing.content.content_key`) of prompt
    ``p`` (an Arrow string or chat-message array) and its responses
    ``texts[offsets[p]:offsets[p + 1]]`` (an Arrow string array): the ``keys`` argument of
    :func:`select_pairs` for draws that follow the content, not the row."""
    return _core.content_keys(prompts, texts, _as_ints(offsets, "offsets"))


def sampling_paired_idx_from_rewards(
    rewards: Sequence[float] | ArrayLike,
    sampling_paired_method: str = "random",
    use_fast: bool = False,
    seed: int | None = None,
) -> tuple[int, int]:
    """LMFlow's per-prompt API: indices of (chosen, rejected) among one prompt's rewards.

    As in LMFlow, a pair of equal rewards is returned rather than dropped, and ties are
    ordered as LMFlow orders them (``tie_order="lmflow"``). ``seed=None``
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
        tie_order="lmflow",
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


def _as_ints(values: ArrayLike, name: str) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(_numbers(values, name, integers=True), dtype=np.int64)


def _as_keys(values: ArrayLike) -> npt.NDArray[np.uint64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise TypeError(f"keys must be one-dimensional, got shape {array.shape}")
    if len(array) and array.dtype.kind not in "ui":
        raise TypeError(f"keys must hold integers, got dtype {array.dtype}")
    if array.dtype.kind == "i" and len(array) and array.min() < 0:
        raise ValueError("keys must be in [0, 2**64)")
    return np.ascontiguousarray(array, dtype=np.uint64)


def _as_lengths(values: ArrayLike) -> _Lengths:
    """Lengths in a dtype the core reads without a copy: ``float64``, ``int64`` and ``int32``
    (native byte order) as they are, other floats as ``float64``, other integers as ``int64``."""
    array = _numbers(values, "lengths", integers=False)
    dtype = array.dtype
    if dtype not in _LENGTH_DTYPES:
        dtype = np.dtype(np.float64 if dtype.kind == "f" else np.int64)
    return np.ascontiguousarray(array, dtype=dtype)


def _check_str(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def _as_count(value: object) -> int:
    """``pairs_per_prompt`` as an int (its range is checked with the other options)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"pairs_per_prompt must be an integer, got {type(value).__name__}")
    if int(value) >= 2**64:
        raise ValueError(f"pairs_per_prompt must be < 2**64, got {value}")
    return int(value)


def _as_real_or_none(value: object, name: str) -> float | None:
    return None if value is None else _as_real(value, name)


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def _as_real(value: object, name: str) -> float:
    """A real number (not a bool) as a float; an integer beyond the float range is
    infinite, so refused as such by the range checks."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        return -math.inf if value < 0 else math.inf


def _as_penalty(value: object, *, has_lengths: bool) -> float:
    """``length_penalty`` as a finite float."""
    penalty = _as_real(value, "length_penalty")
    reference.check_penalty(penalty, has_lengths=has_lengths)
    return penalty


def _as_u64(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 0 <= int(value) < 2**64:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    return int(value)
