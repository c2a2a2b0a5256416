"""Pair selection written as whole-array NumPy, for the benchmark's middle contender.

Same semantics as :mod:`dpov2.pairing` (ties to the lowest index, the per-prompt SplitMix64
stream, rejection sampling without modulo bias), but every step is a vectorised pass over
all responses or all prompts. ``bench_pairing.py`` checks its output equals the Rust path's
before timing it, so the comparison is between equal results.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from dpov2 import PairSelection, PairStatus

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def mix64(z: U64) -> U64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Streams:
    """One SplitMix64 stream per prompt, advanced all together."""

    def __init__(self, seed: int, keys: U64) -> None:
        seed_mix = mix64(np.array([seed], dtype=np.uint64))[0]
        self.state = mix64(keys ^ seed_mix)

    def below(self, n: U64) -> U64:
        """Per prompt, a uniform draw in ``range(n)``, redrawing only the rejected prompts."""
        threshold = (np.uint64(0) - n) % n  # 2**64 mod n, in wrapping uint64 arithmetic
        self.state += GOLDEN_GAMMA
        x = mix64(self.state)
        todo = np.flatnonzero(x < threshold)
        while len(todo):
            self.state[todo] += GOLDEN_GAMMA
            x[todo] = mix64(self.state[todo])
            todo = todo[x[todo] < threshold[todo]]
        return x % n


def _extreme(r: F64, starts: I64, sizes: I64, exclude: I64 | None, maximum: bool) -> I64:
    """Per prompt (all with >= 2 responses), the lowest flat index of the max (or min),
    leaving out the flat index ``exclude`` of each prompt."""
    fill = -np.inf if maximum else np.inf
    masked = r.copy()
    if exclude is not None:
        masked[exclude] = fill
    reduce = np.maximum if maximum else np.minimum
    extreme = reduce.reduceat(masked, starts)
    hit = masked == np.repeat(extreme, sizes)
    if exclude is not None:
        hit[exclude] = False
    index = np.where(hit, np.arange(len(r)), len(r))
    return np.minimum.reduceat(index, starts)


def select_pairs_numpy(
    scores: F64,
    offsets: I64,
    *,
    method: str,
    lengths: F64 | I64,
    length_penalty: float,
    seed: int,
    keep_ties: bool = False,
) -> PairSelection:
    """Inputs are assumed valid (the benchmark feeds the same arrays to every contender)."""
    n_prompts = len(offsets) - 1
    sizes_all = np.diff(offsets)
    prompts = np.flatnonzero(sizes_all >= 2)
    # Keep only the responses of prompts that can pair, so reduceat never sees empty runs.
    sizes = sizes_all[prompts]
    starts_all = offsets[:-1][prompts]
    keep = np.repeat(starts_all - np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    flat = np.arange(sizes.sum()) + keep
    r = scores[flat] - length_penalty * lengths[flat]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)

    if method == "random":
        streams = Streams(seed, prompts.astype(np.uint64))
        first = streams.below(sizes.astype(np.uint64)).astype(np.int64)
        second = streams.below((sizes - 1).astype(np.uint64)).astype(np.int64)
        second += second >= first
        first += starts
        second += starts
    else:
        first = _extreme(r, starts, sizes, None, maximum=True)
        if method == "max_min":
            second = _extreme(r, starts, sizes, first, maximum=False)
        elif method == "max_max":
            second = _extreme(r, starts, sizes, first, maximum=True)
        else:  # max_random
            streams = Streams(seed, prompts.astype(np.uint64))
            second = streams.below((sizes - 1).astype(np.uint64)).astype(np.int64)
            second += second >= first - starts
            second += starts

    swap = r[second] > r[first]
    chosen = np.where(swap, second, first)
    rejected = np.where(swap, first, second)
    tie = r[chosen] == r[rejected]
    paired = ~tie if not keep_ties else np.ones(len(prompts), dtype=bool)

    out_chosen = np.full(n_prompts, -1, dtype=np.int64)
    out_rejected = np.full(n_prompts, -1, dtype=np.int64)
    status = np.full(n_prompts, PairStatus.TOO_FEW_RESPONSES, dtype=np.uint8)
    status[prompts] = np.where(paired, PairStatus.PAIRED, PairStatus.TIE)
    out_chosen[prompts[paired]] = flat[chosen[paired]]
    out_rejected[prompts[paired]] = flat[rejected[paired]]
    return PairSelection(out_chosen, out_rejected, status)
