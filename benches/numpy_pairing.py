"""Pair selection written as whole-array NumPy, for the benchmark's middle contender.

Same semantics as :mod:`dpov2.pairing` for one pair per prompt with the default filters (a
tied pair is not eligible; the lower index wins ties in the ranking) and no copies: the
per-prompt SplitMix64 stream, rejection sampling without modulo bias, and the fallback draw
over the eligible pairs when the first draw is tied. Every step is a vectorised pass over
all responses or all prompts (the rare fallback prompts are grouped by size).
``bench_pairing.py`` checks its output equals the Rust path's before timing it, so the
comparison is between equal results. :func:`all_pairs_floor` is the NumPy floor for
``all_pairs``: the same-sized index arrays written with no selection at all.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dpov2 import PairSelection, PairStatus

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]

#: The methods this module implements.
NUMPY_METHODS = ("random", "max_min", "max_max", "max_random")

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def mix64(z: U64) -> U64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Streams:
    """One SplitMix64 stream per prompt, advanced all together (or a subset of them)."""

    def __init__(self, seed: int, keys: U64) -> None:
        seed_mix = mix64(np.array([seed], dtype=np.uint64))[0]
        self.state = mix64(keys ^ seed_mix)

    def below(self, n: U64, which: I64 | None = None) -> U64:
        """Per stream (of ``which``, default all), a uniform draw in ``range(n)``,
        redrawing only the rejected ones."""
        rows = np.arange(len(self.state)) if which is None else which
        threshold = (np.uint64(0) - n) % n  # 2**64 mod n, in wrapping uint64 arithmetic
        self.state[rows] += GOLDEN_GAMMA
        x = mix64(self.state[rows])
        todo = np.flatnonzero(x < threshold)
        while len(todo):
            self.state[rows[todo]] += GOLDEN_GAMMA
            x[todo] = mix64(self.state[rows[todo]])
            todo = todo[x[todo] < threshold[todo]]
        return x % n


def _extreme(r: F64, starts: I64, sizes: I64, allowed: Bool | None, maximum: bool) -> I64:
    """Per prompt (all with >= 2 responses), the lowest flat index of the max (or min) of
    the responses ``allowed``; ``len(r)`` for a prompt with none allowed."""
    fill = -np.inf if maximum else np.inf
    masked = r if allowed is None else np.where(allowed, r, fill)
    reduce = np.maximum if maximum else np.minimum
    extreme = reduce.reduceat(masked, starts)
    hit = masked == np.repeat(extreme, sizes)
    if allowed is not None:
        hit &= allowed
    index = np.where(hit, np.arange(len(r)), len(r))
    return np.minimum.reduceat(index, starts)


def _nth_true(mask: Bool, nth: I64) -> I64:
    """Per row of ``mask``, the column of its ``nth`` (0-based) true entry."""
    return np.argmax(np.cumsum(mask, axis=1) > nth[:, None], axis=1)


def _fallback_random(
    r: F64, starts: I64, sizes: I64, todo: I64, streams: Streams
) -> tuple[I64, I64, Bool]:
    """``random``'s second draw for the prompts ``todo`` whose first pair was tied: uniform
    over their untied pairs ``(i, j)``, ``i < j``, in index order. Local indices, and
    whether the prompt has such a pair."""
    first = np.zeros(len(todo), dtype=np.int64)
    second = np.zeros(len(todo), dtype=np.int64)
    found = np.zeros(len(todo), dtype=bool)
    for n in np.unique(sizes[todo]):
        group = np.flatnonzero(sizes[todo] == n)
        prompts = todo[group]
        iu, ju = np.triu_indices(int(n), 1)
        local = r[starts[prompts][:, None] + np.arange(n)]
        eligible = local[:, iu] != local[:, ju]
        count = eligible.sum(axis=1)
        has = np.flatnonzero(count > 0)
        t = streams.below(count[has].astype(np.uint64), prompts[has]).astype(np.int64)
        pick = _nth_true(eligible[has], t)
        first[group[has]], second[group[has]] = iu[pick], ju[pick]
        found[group[has]] = True
    return first, second, found


def _fallback_max_random(
    r: F64, starts: I64, sizes: I64, best: I64, todo: I64, streams: Streams
) -> tuple[I64, Bool]:
    """``max_random``'s second draw for the prompts ``todo`` whose first partner tied the
    best: uniform over the partners whose reward differs from the best's, in index order
    (with no copies and no other filter, the anchor is the best). Local indices, and
    whether there is such a partner."""
    partner = np.zeros(len(todo), dtype=np.int64)
    found = np.zeros(len(todo), dtype=bool)
    for n in np.unique(sizes[todo]):
        group = np.flatnonzero(sizes[todo] == n)
        prompts = todo[group]
        local = r[starts[prompts][:, None] + np.arange(n)]
        eligible = local != local[np.arange(len(group)), best[prompts]][:, None]
        count = eligible.sum(axis=1)
        has = np.flatnonzero(count > 0)
        t = streams.below(count[has].astype(np.uint64), prompts[has]).astype(np.int64)
        partner[group[has]] = _nth_true(eligible[has], t)
        found[group[has]] = True
    return partner, found


def select_pairs_numpy(
    scores: F64,
    offsets: I64,
    *,
    method: str,
    lengths: F64 | I64,
    length_penalty: float,
    seed: int,
) -> PairSelection:
    """One pair per prompt by ``method`` (one of :data:`NUMPY_METHODS`), default filters.
    Inputs are assumed valid (the benchmark feeds the same arrays to every contender)."""
    n_prompts = len(offsets) - 1
    sizes_all = np.diff(offsets)
    prompts = np.flatnonzero(sizes_all >= 2)
    # Keep only the responses of prompts that can pair, so reduceat never sees empty runs.
    sizes = sizes_all[prompts]
    starts_all = offsets[:-1][prompts]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    flat = np.arange(sizes.sum()) + np.repeat(starts_all - starts, sizes)
    r = scores[flat] - length_penalty * lengths[flat]

    if method in ("random", "max_random"):
        streams = Streams(seed, prompts.astype(np.uint64))
    if method == "random":
        first = streams.below(sizes.astype(np.uint64)).astype(np.int64)
        second = streams.below((sizes - 1).astype(np.uint64)).astype(np.int64)
        second += second >= first
        todo = np.flatnonzero(r[starts + first] == r[starts + second])
        i, j, found = _fallback_random(r, starts, sizes, todo, streams)
        first[todo], second[todo] = i, j
        paired = np.ones(len(prompts), dtype=bool)
        paired[todo] = found
        first += starts
        second += starts
    elif method == "max_random":
        first = _extreme(r, starts, sizes, None, maximum=True)
        best = first - starts
        second = streams.below((sizes - 1).astype(np.uint64)).astype(np.int64)
        second += second >= best
        todo = np.flatnonzero(r[starts + second] == r[first])
        partner, found = _fallback_max_random(r, starts, sizes, best, todo, streams)
        second[todo] = partner
        paired = np.ones(len(prompts), dtype=bool)
        paired[todo] = found
        second += starts
    else:
        first = _extreme(r, starts, sizes, None, maximum=True)
        if method == "max_min":
            # The worst of the others; tied with the best only when all are equal.
            others = np.ones(len(r), dtype=bool)
            others[first] = False
            second = _extreme(r, starts, sizes, others, maximum=False)
        elif method == "max_max":
            # The best below the best's reward: the first untied pair in ranking order.
            below = r < np.repeat(r[first], sizes)
            second = _extreme(r, starts, sizes, below, maximum=True)
        else:
            raise ValueError(f"method {method!r} is not one of {NUMPY_METHODS}")
        paired = second < len(r)
        second = np.where(paired, second, first)
        paired &= r[first] != r[second]

    swap = r[second] > r[first]
    chosen = np.where(swap, second, first)[paired]
    rejected = np.where(swap, first, second)[paired]
    status = np.full(n_prompts, PairStatus.TOO_FEW_RESPONSES, dtype=np.uint8)
    status[prompts] = np.where(paired, PairStatus.PAIRED, PairStatus.TIE)
    pair_offsets = np.zeros(n_prompts + 1, dtype=np.int64)
    pair_offsets[1:][prompts[paired]] = 1
    np.cumsum(pair_offsets, out=pair_offsets)
    return PairSelection(status, pair_offsets, flat[chosen], flat[rejected])


def all_pairs_floor(offsets: I64) -> tuple[I64, I64]:
    """The floor for ``all_pairs`` output: the flat indices of every pair ``(i, j)``,
    ``i < j``, of each prompt, built as vectorised NumPy writes them (``np.triu_indices``
    of the prompt size broadcast against the prompts' offsets), with no ranking, filter or
    order by margin. Every prompt must have the same number of responses."""
    sizes = np.diff(offsets)
    n = int(sizes[0])
    if not np.all(sizes == n):
        raise ValueError("all_pairs_floor needs every prompt to have the same size")
    iu, ju = np.triu_indices(n, 1)
    starts = offsets[:-1, None]
    return (starts + iu).ravel(), (starts + ju).ravel()
