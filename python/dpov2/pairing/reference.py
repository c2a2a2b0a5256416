"""The readable reference for pair selection: one prompt at a time, plain Python.

This is the definition the Rust core must match element for element (the tests compare the
two on random inputs); it favours being checkable against the README over being fast: every
deterministic method lists its pairs in preference order and keeps the first eligible ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dpov2.pairing.rng import PromptRng
from dpov2.pairing.status import PairStatus

METHODS = ("random", "max_min", "max_max", "max_random", "all_pairs", "adjacent", "top_bottom")
TIE_ORDERS = ("dpov2", "lmflow")
MARGIN_SOURCES = ("raw", "penalized")
#: The methods whose pairs are drawn at random.
RANDOM_METHODS = ("random", "max_random")


@dataclass(frozen=True)
class Filters:
    """What makes a pair eligible, and which of a tied pair is chosen."""

    keep_ties: bool = False
    tie_order: str = "dpov2"
    min_margin: float | None = None
    margin_scale: float = 1.0
    margin_from: str = "raw"
    max_length_ratio: float | None = None
    max_length_diff: float | None = None


#: How far a pair got through the filters (tie rule, margin, length limits), in order; the
#: furthest any pair of a prompt got names the status of a prompt without pairs.
_FAILED_TIE, _FAILED_MARGIN, _FAILED_LENGTH = 1, 2, 3
_STATUS_OF = {
    0: PairStatus.TIE,
    _FAILED_TIE: PairStatus.TIE,
    _FAILED_MARGIN: PairStatus.BELOW_MIN_MARGIN,
    _FAILED_LENGTH: PairStatus.LENGTH_LIMITS,
}


def select_pairs(
    scores: Sequence[float],
    offsets: Sequence[int],
    *,
    method: str,
    lengths: Sequence[float] | None,  # floats or integers
    length_penalty: float,
    seed: int,
    first_key: int,
    pairs_per_prompt: int,
    filters: Filters,
    duplicate_of: Sequence[int] | None,
    keys: Sequence[int] | None,
) -> tuple[list[PairStatus], list[int], list[int], list[int]]:
    """Per prompt a status; ``pair_offsets`` (``n_prompts + 1``); per pair the flat indices
    of chosen and rejected."""
    check_request(scores, offsets, lengths, length_penalty, first_key, duplicate_of, keys)
    statuses: list[PairStatus] = []
    pair_offsets = [0]
    chosen: list[int] = []
    rejected: list[int] = []
    for p in range(len(offsets) - 1):
        start, end = offsets[p], offsets[p + 1]
        prompt = _Prompt(
            scores=list(scores[start:end]),
            lengths=None if lengths is None else [float(n) for n in lengths[start:end]],
            length_penalty=length_penalty,
            duplicate_of=None if duplicate_of is None else list(duplicate_of[start:end]),
            filters=filters,
        )
        key = first_key + p if keys is None else keys[p]
        status, pairs = prompt.select(method, pairs_per_prompt, PromptRng(seed, key))
        statuses.append(status)
        for c, r in pairs:
            chosen.append(start + c)
            rejected.append(start + r)
        pair_offsets.append(len(chosen))
    return statuses, pair_offsets, chosen, rejected


@dataclass
class _Prompt:
    scores: list[float]
    lengths: list[float] | None
    length_penalty: float
    duplicate_of: list[int] | None
    filters: Filters

    def __post_init__(self) -> None:
        if self.lengths is None:
            self.rewards = list(self.scores)
        else:
            pairs = zip(self.scores, self.lengths, strict=True)
            self.rewards = [s - self.length_penalty * n for s, n in pairs]
        n = len(self.scores)
        dup = self.duplicate_of
        self.candidates = [k for k in range(n) if dup is None or dup[k] == k]

    def check(self, a: int, b: int) -> tuple[int, int] | int:
        """(chosen, rejected) of the pair whose first pick is ``a``, if it passes the tie
        rule, the margin and the length limits; else the filter it failed (1, 2 or 3)."""
        f = self.filters
        ra, rb = self.rewards[a], self.rewards[b]
        if ra == rb and not f.keep_ties:
            return _FAILED_TIE
        # Of a tied pair, dpov2 chooses the first pick, LMFlow (`r0 > r1` or else) the second.
        if ra > rb or (ra == rb and f.tie_order == "dpov2"):
            c, r = a, b
        else:
            c, r = b, a
        if f.min_margin is not None:
            values = self.scores if f.margin_from == "raw" else self.rewards
            if (values[c] - values[r]) * f.margin_scale < f.min_margin:
                return _FAILED_MARGIN
        if f.max_length_ratio is not None or f.max_length_diff is not None:
            assert self.lengths is not None  # checked with the options
            long, short = (
                max(self.lengths[a], self.lengths[b]),
                min(self.lengths[a], self.lengths[b]),
            )
            if f.max_length_ratio is not None and long > f.max_length_ratio * short:
                return _FAILED_LENGTH
            if f.max_length_diff is not None and long - short > f.max_length_diff:
                return _FAILED_LENGTH
        return c, r

    def margin(self, c: int, r: int) -> float:
        rc, rr = self.rewards[c], self.rewards[r]
        return 0.0 if rc == rr else rc - rr

    def ranking(self, later_first: bool) -> list[int]:
        """Candidates best first; equal rewards lower index first, or higher with
        ``later_first`` (LMFlow's ``np.argsort``, read from the end)."""
        sign = -1 if later_first else 1
        return sorted(self.candidates, key=lambda k: (-self.rewards[k], sign * k))

    def select(
        self, method: str, k: int, rng: PromptRng
    ) -> tuple[PairStatus, list[tuple[int, int]]]:
        if len(self.scores) < 2:
            return PairStatus.TOO_FEW_RESPONSES, []
        if len(self.candidates) < 2:
            return PairStatus.DUPLICATE_RESPONSES, []
        if method == "random":
            pairs, failed = self.draw_random(k, rng)
        elif method == "max_random":
            pairs, failed = self.draw_max_random(k, rng)
        else:
            pairs, failed = self.ranked(method, k)
        if pairs:
            return PairStatus.PAIRED, pairs
        return _STATUS_OF[failed], []

    def ranked(self, method: str, k: int) -> tuple[list[tuple[int, int]], int]:
        """The method's pairs (first pick, second pick) in preference order; the first ``k``
        eligible ones, and how far the others got."""
        lmflow = self.filters.tie_order == "lmflow"
        ranked = self.ranking(later_first=lmflow and method != "max_min")
        m = len(ranked)
        if method == "max_max":
            order = [(ranked[u], ranked[v]) for u in range(m) for v in range(u + 1, m)]
        elif method == "max_min":
            # np.argmin's worst: lowest reward, equal rewards lowest index.
            worst_first = sorted(self.candidates, key=lambda j: (self.rewards[j], j))
            order = [
                (ranked[u], lower)
                for u in range(m)
                for lower in worst_first
                if ranked.index(lower) > u
            ]
        elif method == "top_bottom":
            order = [(ranked[i], ranked[m - 1 - i]) for i in range(m // 2)]
        elif method == "adjacent":
            order = [(ranked[i], ranked[i + 1]) for i in range(m - 1)]
        else:  # all_pairs
            order = [(ranked[u], ranked[v]) for u in range(m) for v in range(u + 1, m)]
        checked = [self.check(a, b) for a, b in order]
        eligible = [c for c in checked if isinstance(c, tuple)]
        failed = max([c for c in checked if isinstance(c, int)], default=0)
        if method in ("adjacent", "all_pairs"):
            # Largest margin first (a tie's is 0, also between infinite rewards); sort() is
            # stable, so equal margins keep ranking order.
            eligible.sort(key=lambda cr: -self.margin(*cr))
        return eligible[:k], failed

    def draw_random(self, k: int, rng: PromptRng) -> tuple[list[tuple[int, int]], int]:
        """``k`` distinct eligible pairs, each uniform over those not drawn yet: one draw
        over all pairs of responses, kept if eligible and new, else one draw over the
        eligible new pairs of candidates in index order."""
        n = len(self.scores)
        taken: list[tuple[int, int]] = []
        pairs: list[tuple[int, int]] = []
        failed = 0
        for _ in range(k):
            a = rng.below(n)
            b = [i for i in range(n) if i != a][rng.below(n - 1)]
            new = (min(a, b), max(a, b)) not in taken
            if a in self.candidates and b in self.candidates and new:
                checked = self.check(a, b)
                if isinstance(checked, tuple):
                    pairs.append(checked)
                    taken.append((min(a, b), max(a, b)))
                    continue
            open_pairs = []
            for i in self.candidates:
                for j in self.candidates:
                    if j <= i:
                        continue
                    checked = self.check(i, j)
                    if isinstance(checked, int):
                        failed = max(failed, checked)
                    elif (i, j) not in taken:
                        open_pairs.append(((i, j), checked))
            if not open_pairs:
                break
            ij, checked = open_pairs[rng.below(len(open_pairs))]
            pairs.append(checked)
            taken.append(ij)
        return pairs, failed

    def draw_max_random(self, k: int, rng: PromptRng) -> tuple[list[tuple[int, int]], int]:
        """``k`` distinct partners of the anchor, each uniform over the eligible ones not
        drawn yet. The anchor is the best candidate (first index of the highest reward, as
        np.argmax), or, when no pair with it is eligible, the highest-ranked candidate that
        has an eligible pair. Each draw: one draw over the best's other responses, kept if
        eligible and new, else one over the anchor's eligible new partners in index order."""
        n = len(self.scores)
        ranked = self.ranking(later_first=False)
        best = ranked[0]
        anchor: int | None = None
        anchor_found = False
        drawn: list[int] = []
        pairs: list[tuple[int, int]] = []
        failed = 0
        for _ in range(k):
            b = [i for i in range(n) if i != best][rng.below(n - 1)]
            if b in self.candidates and b not in drawn:
                checked = self.check(best, b)
                if isinstance(checked, tuple):
                    pairs.append(checked)
                    drawn.append(b)
                    continue
            if not anchor_found:
                anchor_found = True
                for x in ranked:
                    results = [self.check(x, y) for y in self.candidates if y != x]
                    failed = max([failed, *(c for c in results if isinstance(c, int))])
                    if any(isinstance(c, tuple) for c in results):
                        anchor = x
                        break
            if anchor is None:
                break
            partners = []
            for y in self.candidates:
                if y != anchor and y not in drawn:
                    checked = self.check(anchor, y)
                    if isinstance(checked, tuple):
                        partners.append((y, checked))
            if not partners:
                break
            y, checked = partners[rng.below(len(partners))]
            pairs.append(checked)
            drawn.append(y)
        return pairs, failed


def penalized_rewards(
    scores: Sequence[float], lengths: Sequence[float], length_penalty: float
) -> list[float]:
    """``score - length_penalty * length`` for each response, after the same checks."""
    check_penalty(length_penalty, has_lengths=True)
    check_same_len(scores, lengths)
    check_values(scores, lengths, [0, len(scores)], None)
    return [s - length_penalty * n for s, n in zip(scores, lengths, strict=True)]


def check_request(
    scores: Sequence[float],
    offsets: Sequence[int],
    lengths: Sequence[float] | None,
    length_penalty: float,
    first_key: int,
    duplicate_of: Sequence[int] | None,
    keys: Sequence[int] | None,
) -> None:
    """Raises ``ValueError`` for the first problem in the arrays, in the documented order
    (the options are checked before, by :func:`check_options`)."""
    check_penalty(length_penalty, has_lengths=lengths is not None)
    check_same_len(scores, lengths)
    if duplicate_of is not None and len(duplicate_of) != len(scores):
        raise ValueError(
            f"duplicate_of has {len(duplicate_of)} entries but scores has {len(scores)}; "
            "they must match"
        )
    if len(offsets) == 0:
        raise ValueError("offsets is empty; it needs n_prompts + 1 entries, starting at 0")
    if offsets[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {offsets[0]}")
    n_prompts = len(offsets) - 1
    if keys is not None and len(keys) != n_prompts:
        raise ValueError(
            f"keys has {len(keys)} entries but there are {n_prompts} prompts; they must match"
        )
    check_offsets(offsets, len(scores))
    if keys is None and n_prompts > 0 and first_key + n_prompts - 1 >= 2**64:
        raise ValueError(f"first_key={first_key} with {n_prompts} prompts runs past 2**64 - 1")
    check_values(scores, lengths, offsets, duplicate_of)


def check_options(
    method: str,
    pairs_per_prompt: int,
    length_penalty: float,
    filters: Filters,
    *,
    has_lengths: bool,
) -> None:
    """Raises ``ValueError`` for the first bad option, in the documented order."""
    check_choice(method, METHODS, "sampling method")
    check_choice(filters.tie_order, TIE_ORDERS, "tie order")
    check_choice(filters.margin_from, MARGIN_SOURCES, "margin source")
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1, got {pairs_per_prompt}")
    check_penalty(length_penalty, has_lengths=has_lengths)
    if not math.isfinite(filters.margin_scale):
        raise ValueError(f"margin_scale must be finite, got {filters.margin_scale}")
    if filters.min_margin is not None and not math.isfinite(filters.min_margin):
        raise ValueError(f"min_margin must be finite, got {filters.min_margin}")
    ratio, diff = filters.max_length_ratio, filters.max_length_diff
    if ratio is not None and not (math.isfinite(ratio) and ratio >= 1):
        what = ratio if not math.isfinite(ratio) else "below 1"
        raise ValueError(f"max_length_ratio is {what}; it must be finite and >= 1")
    if diff is not None and not (math.isfinite(diff) and diff >= 0):
        what = diff if not math.isfinite(diff) else "negative"
        raise ValueError(f"max_length_diff is {what}; it must be finite and >= 0")
    if (ratio is not None or diff is not None) and not has_lengths:
        raise ValueError(
            "max_length_ratio and max_length_diff need lengths, but no lengths were given"
        )


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} '{value}'; expected one of: {', '.join(choices)}")


def check_method(method: str) -> None:
    check_choice(method, METHODS, "sampling method")


def check_penalty(length_penalty: float, *, has_lengths: bool) -> None:
    if not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be finite, got {length_penalty}")
    if length_penalty != 0 and not has_lengths:
        raise ValueError("length_penalty is non-zero but no lengths were given")


def check_same_len(scores: Sequence[float], lengths: Sequence[float] | None) -> None:
    if lengths is not None and len(lengths) != len(scores):
        raise ValueError(
            f"lengths has {len(lengths)} entries but scores has {len(scores)}; they must match"
        )


def check_offsets(offsets: Sequence[int], n_scores: int) -> None:
    """Offsets (already known to start at 0) never decrease and end exactly at the number
    of scores."""
    for p in range(len(offsets) - 1):
        start, end = offsets[p], offsets[p + 1]
        if end < start:
            raise ValueError(
                f"offsets decrease at prompt {p}: offsets[{p}]={start} > offsets[{p + 1}]={end}"
            )
        if end > n_scores:
            raise ValueError(
                f"offsets run past the arrays at prompt {p}: offsets[{p + 1}]={end} "
                f"but there are {n_scores} scores"
            )
    if offsets[-1] != n_scores:
        raise ValueError(
            f"offsets end at {offsets[-1]} but there are {n_scores} scores; "
            "every response must belong to a prompt"
        )


def check_values(
    scores: Sequence[float],
    lengths: Sequence[float] | None,
    offsets: Sequence[int],
    duplicate_of: Sequence[int] | None,
) -> None:
    """Scores finite, lengths finite and non-negative, each copy index naming a first
    occurrence at or before it in the prompt; the first bad response is named."""
    for p in range(len(offsets) - 1):
        start = offsets[p]
        for k in range(start, offsets[p + 1]):
            local = k - start
            where = f"(prompt {p}, response {local})"
            if not math.isfinite(scores[k]):
                raise ValueError(f"scores[{k}] is {scores[k]} {where}; scores must be finite")
            if lengths is not None and not (math.isfinite(lengths[k]) and lengths[k] >= 0):
                what = lengths[k] if not math.isfinite(lengths[k]) else "negative"
                raise ValueError(f"lengths[{k}] is {what} {where}; lengths must be finite and >= 0")
            if duplicate_of is None or duplicate_of[k] == local:
                continue
            of = duplicate_of[k]
            if not (0 <= of < local and duplicate_of[start + of] == of):
                raise ValueError(
                    f"duplicate_of[{k}] is {of} {where}; it must be the index within the prompt "
                    "of a response at or before it that is its own first occurrence"
                )
