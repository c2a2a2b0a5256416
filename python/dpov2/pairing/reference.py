"""The readable reference for pair selection: one prompt at a time, plain Python.

This is the definition the Rust core must match element for element (the tests compare the
two on random inputs); it favours being checkable against the README over being fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dpov2.pairing.rng import PromptRng
from dpov2.pairing.status import PairStatus

METHODS = ("random", "max_min", "max_max", "max_random")


def select_pairs(
    scores: Sequence[float],
    offsets: Sequence[int],
    *,
    method: str,
    lengths: Sequence[float] | None,  # floats or integers
    length_penalty: float,
    seed: int,
    first_key: int,
    keep_ties: bool,
) -> tuple[list[int], list[int], list[PairStatus]]:
    """Per prompt: flat indices of (chosen, rejected), ``-1`` when unpaired, and a status."""
    check_request(scores, offsets, method, lengths, length_penalty, first_key)
    chosen: list[int] = []
    rejected: list[int] = []
    status: list[PairStatus] = []
    for p in range(len(offsets) - 1):
        start, end = offsets[p], offsets[p + 1]
        if lengths is None:
            rewards = list(scores[start:end])
        else:
            pairs = zip(scores[start:end], lengths[start:end], strict=True)
            rewards = [s - length_penalty * n for s, n in pairs]
        pair = select_one(rewards, method, PromptRng(seed, first_key + p), keep_ties)
        if isinstance(pair, PairStatus):
            chosen.append(-1)
            rejected.append(-1)
            status.append(pair)
        else:
            chosen.append(start + pair[0])
            rejected.append(start + pair[1])
            status.append(PairStatus.PAIRED)
    return chosen, rejected, status


def select_one(
    rewards: list[float], method: str, rng: PromptRng, keep_ties: bool
) -> tuple[int, int] | PairStatus:
    """The (chosen, rejected) local indices for one prompt's penalised rewards, or why not."""
    n = len(rewards)
    if n < 2:
        return PairStatus.TOO_FEW_RESPONSES
    best = max(range(n), key=lambda i: rewards[i])  # max() keeps the first of equal maxima
    if method == "max_min":
        first = best
        second = min((i for i in range(n) if i != best), key=lambda i: rewards[i])
    elif method == "max_max":
        # sorted() is stable, also with reverse=True: equal rewards keep index order.
        first, second = sorted(range(n), key=lambda i: rewards[i], reverse=True)[:2]
    elif method == "max_random":
        first = best
        second = [i for i in range(n) if i != best][rng.below(n - 1)]
    else:  # random
        first = rng.below(n)
        second = [i for i in range(n) if i != first][rng.below(n - 1)]
    if rewards[second] > rewards[first]:
        first, second = second, first
    if rewards[first] == rewards[second] and not keep_ties:
        return PairStatus.TIE
    return first, second


def penalized_rewards(
    scores: Sequence[float], lengths: Sequence[float], length_penalty: float
) -> list[float]:
    """``score - length_penalty * length`` for each response, after the same checks."""
    check_penalty(length_penalty, has_lengths=True)
    check_same_len(scores, lengths)
    check_values(scores, lengths, [0, len(scores)])
    return [s - length_penalty * n for s, n in zip(scores, lengths, strict=True)]


def check_request(
    scores: Sequence[float],
    offsets: Sequence[int],
    method: str,
    lengths: Sequence[float] | None,
    length_penalty: float,
    first_key: int,
) -> None:
    """Raises ``ValueError`` for the first problem found, in the documented order."""
    check_method(method)
    check_penalty(length_penalty, has_lengths=lengths is not None)
    check_same_len(scores, lengths)
    check_offsets(offsets, len(scores))
    n_prompts = len(offsets) - 1
    if n_prompts > 0 and first_key + n_prompts - 1 >= 2**64:
        raise ValueError(f"first_key={first_key} with {n_prompts} prompts runs past 2**64 - 1")
    check_values(scores, lengths, offsets)


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(
            f"unknown sampling method '{method}'; expected one of: {', '.join(METHODS)}"
        )


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
    """Offsets start at 0, never decrease, and end exactly at the number of scores."""
    if len(offsets) == 0:
        raise ValueError("offsets is empty; it needs n_prompts + 1 entries, starting at 0")
    if offsets[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {offsets[0]}")
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
    scores: Sequence[float], lengths: Sequence[float] | None, offsets: Sequence[int]
) -> None:
    """Scores finite, lengths finite and non-negative; the first bad response is named."""
    for p in range(len(offsets) - 1):
        for k in range(offsets[p], offsets[p + 1]):
            where = f"(prompt {p}, response {k - offsets[p]})"
            if not math.isfinite(scores[k]):
                raise ValueError(f"scores[{k}] is {scores[k]} {where}; scores must be finite")
            if lengths is not None and not (math.isfinite(lengths[k]) and lengths[k] >= 0):
                what = lengths[k] if not math.isfinite(lengths[k]) else "negative"
                raise ValueError(f"lengths[{k}] is {what} {where}; lengths must be finite and >= 0")
