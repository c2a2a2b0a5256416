"""Pair selection: the Rust path equals the Python reference, and both mean what the README says."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpov2 import (
    METHODS,
    PairStatus,
    calc_reward_with_length_penalty,
    sampling_paired_idx_from_rewards,
    select_pairs,
)
from dpov2.pairing import TIE_ORDERS
from dpov2.pairing.rng import PromptRng

FINITE = st.floats(allow_nan=False, allow_infinity=False)
# Mostly small integers (ties are common), sometimes huge or arbitrary finite values.
SCORE = st.one_of(
    st.integers(-3, 3).map(float),
    st.sampled_from([1e300, -1e300, 5e-324, -0.0]),
    FINITE,
)
LENGTH = st.one_of(st.integers(0, 50).map(float), st.sampled_from([0.0, 1e300]), FINITE.map(abs))
PENALTY = st.one_of(st.just(0.0), st.sampled_from([0.5, -0.5, 1e-3, -2.0]), FINITE)


# Integer lengths of each dtype: small, at the dtype's limits, and (rarely) negative.
INT_LENGTH = {
    np.int32: st.one_of(st.integers(0, 50), st.sampled_from([0, 2**31 - 1]), st.integers(-2, -1)),
    np.int64: st.one_of(
        st.integers(0, 50), st.sampled_from([2**53 + 1, 2**63 - 1]), st.integers(-2, -1)
    ),
}
LENGTH_DTYPES = (np.float64, np.int64, np.int32)


#: Responses per prompt: any number up to 64.
ANY_SIZE = st.integers(0, 64)


@st.composite
def prompts(
    draw: st.DrawFn, max_prompts: int = 12, size: st.SearchStrategy[int] = ANY_SIZE
) -> tuple[list[float], list[float], list[int]]:
    """Flat scores and lengths with offsets for 0..max_prompts prompts of ``size`` responses."""
    sizes = draw(st.lists(size, max_size=max_prompts))
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    scores = draw(st.lists(SCORE, min_size=offsets[-1], max_size=offsets[-1]))
    lengths = draw(st.lists(LENGTH, min_size=offsets[-1], max_size=offsets[-1]))
    return scores, lengths, offsets


@st.composite
def typed_lengths(draw: st.DrawFn, n: int) -> np.ndarray:
    """``n`` lengths as a ``float64``, ``int64`` or ``int32`` array."""
    dtype = draw(st.sampled_from(LENGTH_DTYPES))
    element = LENGTH if dtype is np.float64 else INT_LENGTH[dtype]
    return np.array(draw(st.lists(element, min_size=n, max_size=n)), dtype=dtype)


def assert_same(a, b) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.pair_offsets, b.pair_offsets)
    np.testing.assert_array_equal(a.chosen, b.chosen)
    np.testing.assert_array_equal(a.rejected, b.rejected)
    assert a.chosen.dtype == b.chosen.dtype == a.pair_offsets.dtype == np.int64
    assert a.status.dtype == b.status.dtype == np.uint8


def pairs_of(sel, p: int) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """The (chosen, rejected) pairs of prompt ``p``."""
    lo, hi = int(sel.pair_offsets[p]), int(sel.pair_offsets[p + 1])
    return list(zip(sel.chosen[lo:hi].tolist(), sel.rejected[lo:hi].tolist(), strict=True))


@st.composite
def copies(draw: st.DrawFn, offsets: list[int]) -> list[int]:
    """A valid ``duplicate_of``: each response a first occurrence or a copy of an earlier one."""
    out: list[int] = []
    for start, end in itertools.pairwise(offsets):
        firsts: list[int] = []
        for k in range(end - start):
            if firsts and draw(st.booleans()):
                out.append(draw(st.sampled_from(firsts)))
            else:
                firsts.append(k)
                out.append(k)
    return out


#: The options that decide whether a pair is eligible, each drawn from valid values, ties
#: and extremes.
LIMITS = {
    "keep_ties": st.booleans(),
    "min_margin": st.one_of(st.none(), st.sampled_from([-1.0, 0.0, 0.5, 2.0, 1e300])),
    "margin_scale": st.sampled_from([1.0, -1.0, 0.0, 1e300]),
    "margin_from": st.sampled_from(["raw", "penalized"]),
    "max_length_ratio": st.one_of(st.none(), st.sampled_from([1.0, 1.5, 4.0, 1e300])),
    "max_length_diff": st.one_of(st.none(), st.sampled_from([0.0, 3.0, 20.0])),
}

#: The selection options beyond the method.
FILTERS = st.fixed_dictionaries(
    {},
    optional={
        **LIMITS,
        "tie_order": st.sampled_from(TIE_ORDERS),
        "pairs_per_prompt": st.one_of(st.integers(1, 4), st.just(10**6)),
    },
)


@settings(max_examples=250, deadline=None)
@given(
    data=prompts(),
    method=st.sampled_from(METHODS),
    penalty=PENALTY,
    seed=st.integers(0, 2**64 - 1),
    first_key=st.integers(0, 2**40),
    filters=FILTERS,
    with_copies=st.booleans(),
    with_keys=st.booleans(),
    draw=st.data(),
)
def test_fast_path_equals_reference_path(  # type: ignore[no-untyped-def]
    data, method, penalty, seed, first_key, filters, with_copies, with_keys, draw
):
    scores, _, offsets = data
    lengths = draw.draw(typed_lengths(len(scores)), label="lengths")
    n_prompts = len(offsets) - 1
    kwargs = dict(
        method=method,
        lengths=lengths,
        length_penalty=penalty,
        seed=seed,
        first_key=first_key,
        duplicate_of=draw.draw(copies(offsets), label="copies") if with_copies else None,
        keys=draw.draw(st.lists(st.integers(0, 2**64 - 1), min_size=n_prompts, max_size=n_prompts))
        if with_keys
        else None,
        **filters,
    )
    assert_same_outcome(
        lambda: select_pairs(scores, offsets, use_fast=True, **kwargs),
        lambda: select_pairs(scores, offsets, use_fast=False, **kwargs),
    )


@pytest.mark.parametrize(
    "method_and_k",
    [(m, 1) for m in ("random", "max_min", "max_max", "max_random", "top_bottom")]
    + [("top_bottom", 2)],
)
@settings(max_examples=200, deadline=None)
@given(
    data=prompts(size=st.one_of(st.sampled_from([2, 4, 8, 16]), st.integers(0, 17))),
    penalty=PENALTY,
    seed=st.integers(0, 2**64 - 1),
    tie_order=st.sampled_from(TIE_ORDERS),
    copies_of=st.sampled_from(["none", "distinct", "drawn"]),
    limits=st.fixed_dictionaries({}, optional=LIMITS),
    draw=st.data(),
)
def test_prompts_of_common_widths_equal_reference_path(  # type: ignore[no-untyped-def]
    data, method_and_k, penalty, seed, tie_order, copies_of, limits, draw
):
    """The one-pair methods and ``top_bottom`` with two rank prompts of 2, 4, 8 or 16
    responses over all of them at once, and take those first picks when they are eligible:
    those are most prompts here, with no duplicate indices, with indices that say every text
    is distinct, or with drawn copies; with or without limits on the pairs."""
    scores, _, offsets = data
    method, k = method_and_k
    duplicate_of = {
        "none": None,
        "distinct": [j for start, end in itertools.pairwise(offsets) for j in range(end - start)],
        "drawn": draw.draw(copies(offsets), label="copies"),
    }[copies_of]
    kwargs = dict(
        method=method,
        pairs_per_prompt=k,
        lengths=draw.draw(typed_lengths(len(scores)), label="lengths"),
        length_penalty=penalty,
        seed=seed,
        tie_order=tie_order,
        duplicate_of=duplicate_of,
        **limits,
    )
    assert_same_outcome(
        lambda: select_pairs(scores, offsets, use_fast=True, **kwargs),
        lambda: select_pairs(scores, offsets, use_fast=False, **kwargs),
    )


def assert_same_outcome(fast, slow) -> None:  # type: ignore[no-untyped-def]
    """Both calls return equal selections, or both raise the same exception and message."""
    outcomes = []
    for run in (fast, slow):
        try:
            outcomes.append(run())
        except (TypeError, ValueError) as err:
            outcomes.append(err)
    a, b = outcomes
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert (type(a), str(a)) == (type(b), str(b))
    else:
        assert_same(a, b)


@pytest.mark.parametrize("dtype", LENGTH_DTYPES)
def test_lengths_of_every_dtype_select_as_their_values(dtype: type) -> None:
    from dpov2.pairing import _as_lengths

    rng = np.random.default_rng(1)
    scores = np.round(rng.standard_normal(4000), 1)
    lengths = rng.integers(0, 300, 4000).astype(dtype)
    offsets = np.arange(0, 4001, 8)
    assert np.shares_memory(_as_lengths(lengths), lengths)  # read as is, no copy
    for method in METHODS:
        kwargs = dict(method=method, length_penalty=0.01, seed=3)
        typed = select_pairs(scores, offsets, lengths=lengths, **kwargs)
        assert_same(typed, select_pairs(scores, offsets, lengths=lengths.astype(float), **kwargs))
        small = slice(0, 801)
        assert_same(
            select_pairs(scores[:800], offsets[:101], lengths=lengths[:800], **kwargs),
            select_pairs(
                scores[:800], offsets[small][:101], lengths=lengths[:800], use_fast=False, **kwargs
            ),
        )


# Values of many types for every scalar argument: valid ones, wrong values, wrong types.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([2**64, 2**70, -(2**70), 10**400, 1024, 1025]),
    st.floats(),
    st.text(max_size=3),
    st.sampled_from(
        [*METHODS, *TIE_ORDERS, "raw", "penalized", np.int64(2), np.bool_(True), np.float32(0.5)]
    ),
    st.just([1]),
)


@settings(max_examples=300, deadline=None)
@given(
    arguments=st.fixed_dictionaries(
        {},
        optional={
            name: ANY_VALUE
            for name in (
                "method",
                "length_penalty",
                "seed",
                "first_key",
                "keep_ties",
                "tie_order",
                "pairs_per_prompt",
                "min_margin",
                "margin_scale",
                "margin_from",
                "max_length_ratio",
                "max_length_diff",
            )
        }
        | {"num_threads": st.one_of(ANY_VALUE, st.integers(1, 4))},
    ),
    with_lengths=st.booleans(),
)
def test_both_paths_accept_and_refuse_the_same_arguments(arguments, with_lengths):  # type: ignore[no-untyped-def]
    arguments.setdefault("method", "max_random")
    scores = [0.5, 1.0, 0.5, 2.0, -1.0]
    lengths = np.array([3, 1, 4, 1, 5], dtype=np.int32) if with_lengths else None
    assert_same_outcome(
        lambda: select_pairs(scores, [0, 2, 5], lengths=lengths, use_fast=True, **arguments),
        lambda: select_pairs(scores, [0, 2, 5], lengths=lengths, use_fast=False, **arguments),
    )


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        (dict(method=None), TypeError, "method must be a str, got NoneType"),
        (dict(keep_ties=1), TypeError, "keep_ties must be a bool, got int"),
        (dict(keep_ties="yes"), TypeError, "keep_ties must be a bool, got str"),
        (dict(keep_ties=None), TypeError, "keep_ties must be a bool, got NoneType"),
        (dict(length_penalty="0.1"), TypeError, "length_penalty must be a real number, got str"),
        (dict(length_penalty=10**400), ValueError, "length_penalty must be finite, got inf"),
        (dict(num_threads=-1), ValueError, "num_threads must be from 1 to 1024, got -1"),
        (dict(num_threads=2**70), ValueError, f"num_threads must be from 1 to 1024, got {2**70}"),
        (dict(num_threads=True), TypeError, "num_threads must be an integer or None, got bool"),
        (
            dict(method="best"),
            ValueError,
            "unknown sampling method 'best'; expected one of: " + ", ".join(METHODS),
        ),
        (dict(tie_order="x"), ValueError, "unknown tie order 'x'; expected one of: dpov2, lmflow"),
        (dict(tie_order=1), TypeError, "tie_order must be a str, got int"),
        (dict(pairs_per_prompt=0), ValueError, "pairs_per_prompt must be >= 1, got 0"),
        (dict(pairs_per_prompt=1.0), TypeError, "pairs_per_prompt must be an integer, got float"),
        (
            dict(pairs_per_prompt=2**64),
            ValueError,
            f"pairs_per_prompt must be < 2**64, got {2**64}",
        ),
        (
            dict(max_length_ratio=0.5),
            ValueError,
            "max_length_ratio is below 1; it must be finite and >= 1",
        ),
        (
            dict(max_length_ratio=math.inf),
            ValueError,
            "max_length_ratio is inf; it must be finite and >= 1",
        ),
        (
            dict(max_length_diff=-1),
            ValueError,
            "max_length_diff is negative; it must be finite and >= 0",
        ),
        (dict(max_length_diff="1"), TypeError, "max_length_diff must be a real number, got str"),
        (dict(min_margin=math.nan), ValueError, "min_margin must be finite, got nan"),
        (
            dict(max_length_diff=1, lengths=None),
            ValueError,
            "max_length_ratio and max_length_diff need lengths, but no lengths were given",
        ),
    ],
)
@pytest.mark.parametrize("use_fast", [True, False])
def test_bad_arguments_raise_the_same_error_on_both_paths(
    arguments: dict,
    error: type,
    message: str,
    use_fast: bool,  # type: ignore[type-arg]
) -> None:
    kwargs = {"method": "random", "lengths": [1, 2], **arguments}
    with pytest.raises(error) as info:
        select_pairs([1.0, 2.0], [0, 2], use_fast=use_fast, **kwargs)
    assert str(info.value) == message


@settings(max_examples=200, deadline=None)
@given(data=prompts(), method=st.sampled_from(METHODS), penalty=PENALTY, seed=st.integers(0, 99))
def test_chosen_beats_rejected_in_the_same_prompt(data, method, penalty, seed):  # type: ignore[no-untyped-def]
    scores, lengths, offsets = data
    sel = select_pairs(
        scores,
        offsets,
        method=method,
        lengths=lengths,
        length_penalty=penalty,
        seed=seed,
        pairs_per_prompt=2,
    )
    for p in range(len(offsets) - 1):
        start, end = offsets[p], offsets[p + 1]
        if end - start < 2:
            assert sel.status[p] == PairStatus.TOO_FEW_RESPONSES
        found = pairs_of(sel, p)
        assert (sel.status[p] == PairStatus.PAIRED) == bool(found) and len(found) <= 2
        assert len({frozenset(pair) for pair in found}) == len(found)  # distinct pairs
        for c, r in found:
            assert start <= c < end and start <= r < end and c != r
            assert scores[c] - penalty * lengths[c] > scores[r] - penalty * lengths[r]


@settings(max_examples=150, deadline=None)
@given(
    data=prompts(max_prompts=30),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**64 - 1),
    cuts=st.lists(st.integers(0, 30), max_size=4),
    use_fast=st.booleans(),
)
def test_chunked_selection_equals_whole_selection(data, method, seed, cuts, use_fast):  # type: ignore[no-untyped-def]
    scores, _, offsets = data
    n_prompts = len(offsets) - 1
    whole = select_pairs(
        scores, offsets, method=method, seed=seed, pairs_per_prompt=3, use_fast=use_fast
    )
    bounds = sorted({0, n_prompts, *(min(c, n_prompts) for c in cuts)})
    chosen, rejected = [], []
    for lo, hi in itertools.pairwise(bounds):
        base = offsets[lo]
        part = select_pairs(
            scores[base : offsets[hi]],
            [o - base for o in offsets[lo : hi + 1]],
            method=method,
            seed=seed,
            first_key=lo,
            pairs_per_prompt=3,
            use_fast=use_fast,
        )
        chosen += [c + base for c in part.chosen.tolist()]
        rejected += [r + base for r in part.rejected.tolist()]
    assert chosen == whole.chosen.tolist()
    assert rejected == whole.rejected.tolist()


def test_thread_count_does_not_change_the_result() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 80_000).astype(np.float64)
    offsets = np.arange(0, 80_001, 8)
    for method in METHODS:
        one = select_pairs(scores, offsets, method=method, num_threads=1)
        many = select_pairs(scores, offsets, method=method, num_threads=4)
        assert_same(one, many)


def test_methods_follow_the_documented_ties() -> None:
    scores = [0.0, 5.0, 0.0, 5.0, 1.0]  # maxima at 1 and 3, minima at 0 and 2
    for use_fast in (True, False):
        sel = select_pairs(scores, [0, 5], method="max_min", use_fast=use_fast)
        assert (sel.chosen[0], sel.rejected[0]) == (1, 0)
        # The tied best two are not eligible: the next pair in max_max's order is taken.
        sel = select_pairs(scores, [0, 5], method="max_max", use_fast=use_fast)
        assert pairs_of(sel, 0) == [(1, 4)]
        sel = select_pairs(scores, [0, 5], method="max_max", keep_ties=True, use_fast=use_fast)
        assert (sel.chosen[0], sel.rejected[0], sel.status[0]) == (1, 3, PairStatus.PAIRED)
        sel = select_pairs([2.0, 2.0], [0, 2], method="max_max", use_fast=use_fast)
        assert sel.status[0] == PairStatus.TIE and sel.counts()["tie"] == 1


def test_length_penalty_sign_decides_between_short_and_long() -> None:
    scores, lengths = [1.0, 1.5], [10, 100]
    short = select_pairs(scores, [0, 2], method="max_min", lengths=lengths, length_penalty=0.01)
    long = select_pairs(scores, [0, 2], method="max_min", lengths=lengths, length_penalty=-0.01)
    assert (short.chosen[0], long.chosen[0]) == (0, 1)


def test_counts_report_every_status() -> None:
    sel = select_pairs([1.0, 1.0, 2.0, 3.0], [0, 0, 1, 2, 4], method="max_min")
    assert sel.counts() == {
        "paired": 1,
        "too_few_responses": 3,
        "tie": 0,
        "duplicate_responses": 0,
        "below_min_margin": 0,
        "length_limits": 0,
    }
    assert sel.paired.tolist() == [False, False, False, True]


# Chi-square critical values at p = 1e-4 (df = 5: 25.74, df = 2: 18.42); with fixed seeds
# the tests are deterministic, and a biased sampler would exceed them by far.
CHI2_DF5 = 25.74
CHI2_DF2 = 18.42


def chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("use_fast", [True, False])
def test_random_picks_each_unordered_pair_uniformly(use_fast: bool) -> None:
    n_prompts = 6000 if use_fast else 1200
    scores = np.tile([0.0, 1.0, 2.0, 3.0], n_prompts)
    sel = select_pairs(
        scores, np.arange(0, 4 * n_prompts + 1, 4), method="random", seed=5, use_fast=use_fast
    )
    lo = np.minimum(sel.chosen % 4, sel.rejected % 4)
    hi = np.maximum(sel.chosen % 4, sel.rejected % 4)
    counts = np.bincount(hi * 4 + lo, minlength=16)[[4, 8, 9, 12, 13, 14]]
    assert counts.sum() == n_prompts
    assert chi_square(counts) < CHI2_DF5, counts


@pytest.mark.parametrize("use_fast", [True, False])
def test_max_random_picks_each_other_response_uniformly(use_fast: bool) -> None:
    n_prompts = 6000 if use_fast else 1200
    scores = np.tile([0.0, 3.0, 1.0, 2.0], n_prompts)  # best is response 1
    sel = select_pairs(
        scores, np.arange(0, 4 * n_prompts + 1, 4), method="max_random", seed=9, use_fast=use_fast
    )
    assert (sel.chosen % 4 == 1).all()
    counts = np.bincount(sel.rejected % 4, minlength=4)[[0, 2, 3]]
    assert chi_square(counts) < CHI2_DF2, counts


BAD_REQUESTS = [
    (
        dict(scores=[1.0, 2.0], offsets=[0, 2], method="best"),
        "unknown sampling method 'best'; expected one of: " + ", ".join(METHODS),
    ),
    (
        dict(
            scores=[1.0, 2.0],
            offsets=[0, 2],
            method="random",
            lengths=[1, 1],
            length_penalty=math.nan,
        ),
        "length_penalty must be finite, got nan",
    ),
    (
        dict(scores=[1.0, 2.0], offsets=[0, 2], method="random", length_penalty=0.1),
        "length_penalty is non-zero but no lengths were given",
    ),
    (
        dict(scores=[1.0, 2.0], offsets=[0, 2], method="random", lengths=[1]),
        "lengths has 1 entries but scores has 2; they must match",
    ),
    (
        dict(scores=[1.0, 2.0], offsets=[], method="random"),
        "offsets is empty; it needs n_prompts + 1 entries, starting at 0",
    ),
    (dict(scores=[1.0, 2.0], offsets=[1, 2], method="random"), "offsets[0] must be 0, got 1"),
    (
        dict(scores=[1.0, 2.0, 3.0], offsets=[0, 2, 1, 3], method="random"),
        "offsets decrease at prompt 1: offsets[1]=2 > offsets[2]=1",
    ),
    (
        dict(scores=[1.0, 2.0], offsets=[0, 1, 3], method="random"),
        "offsets run past the arrays at prompt 1: offsets[2]=3 but there are 2 scores",
    ),
    (
        dict(scores=[1.0, 2.0, 3.0], offsets=[0, 2], method="random"),
        "offsets end at 2 but there are 3 scores; every response must belong to a prompt",
    ),
    (
        dict(scores=[1.0, 2.0, 3.0], offsets=[0, 1, 3], method="random", first_key=2**64 - 1),
        f"first_key={2**64 - 1} with 2 prompts runs past 2**64 - 1",
    ),
    (
        dict(scores=[1.0, 2.0, 3.0, math.inf], offsets=[0, 2, 2, 4], method="random"),
        "scores[3] is inf (prompt 2, response 1); scores must be finite",
    ),
    (
        dict(scores=[1.0, 2.0, 3.0, -math.inf], offsets=[0, 2, 4], method="random"),
        "scores[3] is -inf (prompt 1, response 1); scores must be finite",
    ),
    (
        dict(scores=[1.0, 2.0, 3.0], offsets=[0, 1, 3], method="random", lengths=[1, 2, -1]),
        "lengths[2] is negative (prompt 1, response 1); lengths must be finite and >= 0",
    ),
    (
        dict(scores=[1.0, 2.0], offsets=[0, 2], method="random", lengths=[math.nan, 1]),
        "lengths[0] is nan (prompt 0, response 0); lengths must be finite and >= 0",
    ),
]


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize(("request_", "message"), BAD_REQUESTS)
def test_bad_input_raises_value_error_naming_the_problem(
    request_: dict, message: str, use_fast: bool
) -> None:  # type: ignore[type-arg]
    args = dict(request_)
    with pytest.raises(ValueError) as info:
        select_pairs(args.pop("scores"), args.pop("offsets"), use_fast=use_fast, **args)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(scores=[[1.0, 2.0]], offsets=[0, 2]), TypeError, r"scores must be one-dimensional"),
        (dict(scores=["a", "b"], offsets=[0, 2]), TypeError, r"scores must hold numbers"),
        (dict(scores=[1.0, 2.0], offsets=[0.0, 2.0]), TypeError, r"offsets must hold integers"),
        (
            dict(scores=[1.0, 2.0], offsets=[0, 2], seed=-1),
            ValueError,
            r"seed must be in \[0, 2\*\*64\)",
        ),
        (dict(scores=[1.0, 2.0], offsets=[0, 2], seed=1.5), TypeError, r"seed must be an integer"),
        (
            dict(scores=[1.0, 2.0], offsets=[0, 2], num_threads=0),
            ValueError,
            r"num_threads must be from 1 to 1024, got 0",
        ),
    ],
)
def test_wrong_types_are_refused_before_selection(kwargs: dict, error: type, message: str) -> None:  # type: ignore[type-arg]
    args = dict(kwargs)
    with pytest.raises(error, match=message):
        select_pairs(args.pop("scores"), args.pop("offsets"), method="random", **args)


@settings(max_examples=200, deadline=None)
@given(
    rewards=st.lists(SCORE, min_size=2, max_size=64),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**64 - 1),
)
def test_per_prompt_api_matches_between_paths_and_keeps_ties(rewards, method, seed):  # type: ignore[no-untyped-def]
    fast = sampling_paired_idx_from_rewards(rewards, method, use_fast=True, seed=seed)
    slow = sampling_paired_idx_from_rewards(rewards, method, use_fast=False, seed=seed)
    assert fast == slow
    chosen, rejected = fast
    assert chosen != rejected and rewards[chosen] >= rewards[rejected]


def test_per_prompt_api_needs_two_rewards() -> None:
    with pytest.raises(ValueError, match="need at least two rewards to form a pair, got 1"):
        sampling_paired_idx_from_rewards([1.0], "max_min")


def test_per_prompt_api_without_seed_still_returns_a_valid_pair() -> None:
    chosen, rejected = sampling_paired_idx_from_rewards([0.0, 1.0, 2.0], "random")
    assert {chosen, rejected} <= {0, 1, 2} and chosen > rejected


@settings(max_examples=200, deadline=None)
@given(
    rewards=st.lists(SCORE, max_size=64),
    penalty=PENALTY,
    draw=st.data(),
)
def test_length_penalty_arithmetic_matches_between_paths(rewards, penalty, draw):  # type: ignore[no-untyped-def]
    lengths = draw.draw(typed_lengths(len(rewards)), label="lengths")
    outcomes = []
    for use_fast in (True, False):
        try:
            outcomes.append(calc_reward_with_length_penalty(rewards, lengths, penalty, use_fast))
        except ValueError as err:
            outcomes.append(err)
    fast, slow = outcomes
    if isinstance(fast, ValueError) or isinstance(slow, ValueError):
        assert (type(fast), str(fast)) == (type(slow), str(slow))
        return
    np.testing.assert_array_equal(fast, slow)
    expected = [s - penalty * n for s, n in zip(rewards, lengths.tolist(), strict=True)]
    np.testing.assert_array_equal(fast, expected)


@pytest.mark.parametrize("use_fast", [True, False])
def test_length_penalty_arithmetic_rejects_bad_lengths(use_fast: bool) -> None:
    with pytest.raises(ValueError, match=r"lengths has 1 entries but scores has 2"):
        calc_reward_with_length_penalty([1.0, 2.0], [3.0], 0.1, use_fast=use_fast)
    with pytest.raises(ValueError, match=r"lengths\[1\] is inf \(prompt 0, response 1\)"):
        calc_reward_with_length_penalty([1.0, 2.0], [3.0, math.inf], 0.1, use_fast=use_fast)


def test_native_module_refuses_wrong_arrays_with_python_errors() -> None:
    from dpov2 import _core

    offsets = np.array([0, 2], dtype=np.int64)
    with pytest.raises(TypeError):
        _core.select_pairs(np.zeros(2, dtype=np.float32), offsets, method="random", seed=0)
    with pytest.raises(ValueError, match="scores must be a contiguous 1-D array"):
        _core.select_pairs(np.zeros(4)[::2], offsets, method="random", seed=0)
    with pytest.raises(ValueError, match="offsets decrease at prompt 0"):
        _core.select_pairs(np.zeros(2), np.array([0, -1, 2]), method="random", seed=0)
    with pytest.raises(OverflowError):
        _core.select_pairs(np.zeros(2), offsets, method="random", seed=-1)


class ScriptedRng(PromptRng):
    """The reference stream with its 64-bit draws replaced by a script."""

    def __init__(self, draws: list[int]) -> None:
        super().__init__(0, 0)
        self.draws = draws

    def next_u64(self) -> int:
        return self.draws.pop(0)


def test_reference_below_redraws_values_in_the_biased_tail() -> None:
    n = 2**63 + 1  # 2**64 % n == 2**63 - 1: draws below that are redrawn
    rng = ScriptedRng([5, 2**63 - 2, 2**63 + 7, 0])
    assert rng.below(n) == 6  # plain modulo would give 5
    assert rng.draws == [0]


class CountingRng(PromptRng):
    """The reference stream, counting its 64-bit draws."""

    draws = 0

    def next_u64(self) -> int:
        self.draws += 1
        return super().next_u64()


@pytest.mark.parametrize(("n", "min_rejected"), [(2**63 + 1, 100), (3 * 2**62, 80), (5, 0)])
def test_rust_and_python_streams_draw_alike_where_rejection_is_common(
    n: int, min_rejected: int
) -> None:
    from dpov2 import _core

    bounds = np.full(400, n, dtype=np.uint64)
    bounds[1::2] = n // 2 + 1  # alternate bounds, so draws after a rejection are compared too
    fast = _core.prompt_rng_below(7, 11, bounds).tolist()
    reference = CountingRng(7, 11)
    assert fast == [reference.below(int(b)) for b in bounds]
    # The comparison reached the rejection branch, many times (about 1 in 3 draws).
    assert reference.draws - len(bounds) >= min_rejected


def test_bounded_draw_refuses_an_empty_range() -> None:
    from dpov2 import _core

    with pytest.raises(ValueError, match=r"bounds\[1\] is 0; bounds must be >= 1"):
        _core.prompt_rng_below(0, 0, np.array([3, 0], dtype=np.uint64))


def lmflow_pair(rewards: list[float], method: str, draws: tuple[int, int]) -> tuple[int, int]:
    """LMFlow's ``_sampling_paired_idx_from_rewards`` (src/lmflow/pipeline/dpov2_aligner.py),
    transcribed from reading it, with its ``np.random.choice`` results passed in as
    ``draws``: for ``random`` the two distinct indices, for ``max_random`` (second entry) the
    index among the others of the best."""
    if method == "random":
        idx_0, idx_1 = draws
    elif method == "max_min":
        idx_0, idx_1 = int(np.argmax(rewards)), int(np.argmin(rewards))
    elif method == "max_max":
        # LMFlow calls np.argsort with the default kind, whose order of equal values NumPy
        # leaves unspecified: NumPy 2 on AVX2/AVX-512 CPUs sorts with x86-simd-sort, which
        # gives [3, 2, 1, 0] for [1, 1, 0, 0] but [1, 2, 0] for [5, 3, 3]. What is
        # reproducible is the stable order (what the default gives where it keeps ties in
        # index order, as NumPy's insertion sort for short arrays does).
        sorted_indices = np.argsort(rewards, kind="stable")
        idx_0, idx_1 = int(sorted_indices[-1]), int(sorted_indices[-2])
    else:  # max_random
        idx_0 = int(np.argmax(rewards))
        idx_1 = [i for i in range(len(rewards)) if i != idx_0][draws[1]]
    return (idx_0, idx_1) if rewards[idx_0] > rewards[idx_1] else (idx_1, idx_0)


@settings(max_examples=300, deadline=None)
@given(
    rewards=st.lists(st.integers(0, 3).map(float), min_size=2, max_size=12),
    method=st.sampled_from(["random", "max_min", "max_max", "max_random"]),
    seed=st.integers(0, 2**64 - 1),
    use_fast=st.booleans(),
)
def test_lmflow_tie_order_gives_lmflows_pairs_on_repeated_scores(  # type: ignore[no-untyped-def]
    rewards, method, seed, use_fast
):
    if method == "max_min" and len(set(rewards)) == 1:
        return  # LMFlow pairs response 0 with itself there; dpov2 never does (see below)
    n = len(rewards)
    rng = PromptRng(seed, 0)  # the draws dpov2 makes: the same for both orders
    if method == "random":
        a = rng.below(n)
        draws = (a, [i for i in range(n) if i != a][rng.below(n - 1)])
    else:
        draws = (0, rng.below(n - 1))
    sel = select_pairs(
        rewards,
        [0, n],
        method=method,
        keep_ties=True,
        tie_order="lmflow",
        seed=seed,
        use_fast=use_fast,
    )
    assert pairs_of(sel, 0) == [lmflow_pair(rewards, method, draws)]
    # LMFlow's per-prompt API keeps LMFlow's order too.
    per_prompt = sampling_paired_idx_from_rewards(rewards, method, use_fast=use_fast, seed=seed)
    assert per_prompt == lmflow_pair(rewards, method, draws)


@pytest.mark.parametrize("use_fast", [True, False])
def test_tie_orders_differ_where_the_readme_says(use_fast: bool) -> None:
    def pair(rewards: list[float], method: str, order: str) -> list[tuple[int, int]]:
        sel = select_pairs(
            rewards,
            [0, len(rewards)],
            method=method,
            keep_ties=True,
            tie_order=order,
            use_fast=use_fast,
        )
        return pairs_of(sel, 0)

    assert pair([5, 3, 3], "max_max", "dpov2") == [(0, 1)]
    assert pair([5, 3, 3], "max_max", "lmflow") == [(0, 2)]
    # All equal: LMFlow's max_min would pair 0 with itself; dpov2 takes 0 and 1, and
    # under LMFlow's order chooses the second pick.
    assert pair([2, 2, 2], "max_min", "dpov2") == [(0, 1)]
    assert pair([2, 2, 2], "max_min", "lmflow") == [(1, 0)]


def test_statuses_are_the_cores() -> None:
    from dpov2 import _core

    assert dict(_core.STATUSES) == {s.name.lower(): int(s) for s in PairStatus}
    assert tuple(_core.METHODS) == METHODS and tuple(_core.TIE_ORDERS) == TIE_ORDERS


@pytest.mark.parametrize("use_fast", [True, False])
def test_each_status_names_the_filter_that_left_no_pair(use_fast: bool) -> None:
    scores = [1.0, 1.0, 3.0, 1.0, 3.0, 0.0, 5.0, 0.0, 5.0]
    lengths = [1, 1, 1, 1, 1, 1, 10, 1, 1]
    sel = select_pairs(
        scores,
        [0, 2, 4, 6, 8, 9],
        method="max_min",
        lengths=lengths,
        duplicate_of=[0, 1, 0, 1, 0, 0, 0, 1, 0],
        min_margin=2.5,
        max_length_ratio=2.0,
        use_fast=use_fast,
    )
    assert sel.status.tolist() == [
        PairStatus.TIE,
        PairStatus.BELOW_MIN_MARGIN,
        PairStatus.DUPLICATE_RESPONSES,
        PairStatus.LENGTH_LIMITS,
        PairStatus.TOO_FEW_RESPONSES,
    ]


@pytest.mark.parametrize("use_fast", [True, False])
def test_random_methods_draw_uniformly_among_eligible_pairs_only(use_fast: bool) -> None:
    n_prompts = 6000 if use_fast else 1500
    # Response 5 copies response 0; min_margin 2 leaves 6 of the 10 candidate pairs:
    # (2,0), (3,0), (3,1), (4,0), (4,1), (4,2) by (chosen, rejected).
    scores = np.tile([0.0, 1.0, 2.0, 3.0, 4.0, 0.0], n_prompts)
    offsets = np.arange(0, 6 * n_prompts + 1, 6)
    copies = np.tile([0, 1, 2, 3, 4, 0], n_prompts)
    sel = select_pairs(
        scores,
        offsets,
        method="random",
        min_margin=2.0,
        duplicate_of=copies,
        seed=3,
        use_fast=use_fast,
    )
    assert (sel.status == PairStatus.PAIRED).all() and len(sel.chosen) == n_prompts
    codes = (sel.chosen % 6) * 6 + sel.rejected % 6
    eligible = [2 * 6 + 0, 3 * 6 + 0, 3 * 6 + 1, 4 * 6 + 0, 4 * 6 + 1, 4 * 6 + 2]
    counts = np.bincount(codes, minlength=36)
    assert counts.sum() == counts[eligible].sum()
    assert chi_square(counts[eligible]) < CHI2_DF5, counts[eligible]
    sel = select_pairs(
        scores,
        offsets,
        method="max_random",
        min_margin=2.0,
        duplicate_of=copies,
        seed=4,
        use_fast=use_fast,
    )
    assert (sel.chosen % 6 == 4).all()
    counts = np.bincount(sel.rejected % 6, minlength=6)
    assert counts[[3, 5]].sum() == 0
    assert chi_square(counts[[0, 1, 2]]) < CHI2_DF2, counts


@pytest.mark.parametrize("use_fast", [True, False])
def test_several_pairs_follow_each_methods_order(use_fast: bool) -> None:
    scores = [0.5, 3.0, -1.0, 2.0, 2.0]  # ranking 1, 3, 4, 0, 2

    def pairs(method: str, k: int, **kwargs: Any) -> list[tuple[int, int]]:
        sel = select_pairs(
            scores, [0, 5], method=method, pairs_per_prompt=k, use_fast=use_fast, **kwargs
        )
        return pairs_of(sel, 0)

    assert pairs("top_bottom", 5) == [(1, 2), (3, 0)]  # 4 against itself would be next
    assert pairs("adjacent", 5) == [(4, 0), (0, 2), (1, 3)]  # margins 1.5, 1.5, 1 (3-4 tie)
    assert pairs("all_pairs", 3) == [(1, 2), (3, 2), (4, 2)]
    assert len(pairs("all_pairs", 100)) == 9  # 10 pairs of 5, less the tie
    assert pairs("max_min", 2) == [(1, 2), (1, 0)]
    assert pairs("max_max", 2) == [(1, 3), (1, 4)]
    drawn = pairs("random", 100, seed=1)
    assert len(drawn) == 9 and len(set(drawn)) == 9
    assert sorted(pairs("max_random", 100)) == [(1, 0), (1, 2), (1, 3), (1, 4)]


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("width", [4, 5, 8])
def test_top_bottom_passes_over_an_ineligible_second_pair(use_fast: bool, width: int) -> None:
    # Best against worst is eligible, second best against second worst is too long apart,
    # so the second pair is the third best against the third worst (or none of five).
    scores = [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0][:width]
    lengths = [10.0, 100.0] + [10.0] * (width - 2)
    sel = select_pairs(
        scores,
        [0, width],
        method="top_bottom",
        pairs_per_prompt=2,
        lengths=lengths,
        max_length_diff=20.0,
        use_fast=use_fast,
    )
    second = {4: [], 5: [], 8: [(2, 5)]}[width]
    assert pairs_of(sel, 0) == [(0, width - 1), *second]


@pytest.mark.parametrize("use_fast", [True, False])
def test_negative_zero_ties_with_zero_in_every_ranking(use_fast: bool) -> None:
    # -0.0 == 0.0, so equal rewards order by index: max_min's worst first is 1 then 3, and
    # the all_pairs and top_bottom rankings put 1 above 3 (below them under lmflow).
    scores = [5.0, 0.0, 3.0, -0.0, 0.0, 4.0]

    def pairs(method: str, k: int, **kwargs: Any) -> list[tuple[int, int]]:
        sel = select_pairs(
            scores, [0, 6], method=method, pairs_per_prompt=k, use_fast=use_fast, **kwargs
        )
        return pairs_of(sel, 0)

    assert pairs("max_min", 3) == [(0, 1), (0, 3), (0, 4)]
    assert pairs("all_pairs", 4) == [(0, 1), (0, 3), (0, 4), (5, 1)]
    assert pairs("all_pairs", 4, tie_order="lmflow") == [(0, 4), (0, 3), (0, 1), (5, 4)]
    assert pairs("top_bottom", 3) == [(0, 4), (5, 3), (2, 1)]


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("limits", [{}, {"max_length_ratio": 1e300}])
def test_all_pairs_orders_margins_that_differ_in_the_last_bit(
    use_fast: bool, limits: dict[str, float]
) -> None:
    # Margins 2, 1 + 2**-52 and 1: the second and third differ only in their last bit, and
    # were found in the other order. Without and with a length limit (two code paths).
    scores = [1.0, 0.0, -(1.0 + 2.0**-52)]
    sel = select_pairs(
        scores,
        [0, 3],
        method="all_pairs",
        pairs_per_prompt=3,
        lengths=[1.0, 1.0, 1.0],
        use_fast=use_fast,
        **limits,
    )
    assert pairs_of(sel, 0) == [(0, 2), (1, 2), (0, 1)]


@pytest.mark.parametrize("use_fast", [True, False])
def test_kept_ties_of_four_equal_rewards_keep_lmflow_ranking_order(use_fast: bool) -> None:
    # LMFlow ranks 3, 2, 1, 0 and chooses the second pick of a tie: the pairs found are
    # (3, 2), (3, 1), (3, 0), (2, 1), ... and each is written lower index first. Ordering
    # them by chosen then rejected in ranking order would put (1, 2) before (0, 3).
    sel = select_pairs(
        [1.0, 1.0, 1.0, 1.0],
        [0, 4],
        method="all_pairs",
        pairs_per_prompt=6,
        keep_ties=True,
        tie_order="lmflow",
        use_fast=use_fast,
    )
    assert pairs_of(sel, 0) == [(2, 3), (1, 3), (0, 3), (1, 2), (0, 2), (0, 1)]


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("tie_order", TIE_ORDERS)
def test_a_kept_tie_of_negative_and_positive_zero_chooses_the_lower_index(
    use_fast: bool, tie_order: str
) -> None:
    # -0.0 == 0.0, but -0.0 - 0.0 is -0.0: a sign of the difference must not orient a tie.
    sel = select_pairs(
        [-0.0, 0.0],
        [0, 2],
        method="all_pairs",
        keep_ties=True,
        tie_order=tie_order,
        use_fast=use_fast,
    )
    assert pairs_of(sel, 0) == [(0, 1)]


@settings(max_examples=100, deadline=None)
@given(
    texts=st.lists(
        st.lists(st.sampled_from(["", "a", "a ", "é", "a\x00", "\U0001f600"]), max_size=6),
        max_size=6,
    ),
    chat=st.booleans(),
)
def test_copies_and_content_keys_agree_between_rust_and_python(texts, chat) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    from dpov2.pairing import content, content_keys, duplicate_of

    offsets = np.cumsum([0] + [len(t) for t in texts])
    flat = pa.array([t for group in texts for t in group], pa.string())
    expected = [k for group in texts for k in content.duplicate_of(group)]
    assert duplicate_of(flat, offsets).tolist() == expected
    if chat:
        prompts = [[{"role": "user", "content": g[0] if g else "?"}] for g in texts]
    else:
        prompts = ["".join(g) for g in texts]
    keys = content_keys(pa.array(prompts), flat, offsets)
    assert keys.tolist() == [content.content_key(p, g) for p, g in zip(prompts, texts, strict=True)]


def test_content_key_is_fnv1a_over_length_prefixed_pieces() -> None:
    from dpov2.pairing import content

    assert content.fnv1a(b"foobar") == 0x85944171F73967E8  # FNV reference test vector
    assert content.content_key("ab", ["c"]) != content.content_key("a", ["bc"])
    assert content.content_key("p", ["x", "y"]) != content.content_key("p", ["y", "x"])
