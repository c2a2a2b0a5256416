"""The summary's statistics: those of a direct NumPy computation on the same pairs, exact where
they are sums, and the same for every batching; prompts and pairs counted apart."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpov2.convert.options import Outcome
from dpov2.convert.summary import (
    JSON_VERSION,
    SAMPLE_SIZE,
    PairStats,
    PairSummary,
    _ExactSum,
    text_lengths,
)
from dpov2.errors import InputError

pairs_strategy = st.integers(2, 300).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.integers(0, 2**32 - 1),  # seed of the data
        st.sampled_from([1.0, 1e-6, 1e8]),  # scale of the margins
        st.lists(st.integers(1, 97), min_size=1, max_size=4),  # batch sizes, cycled
    )
)


def random_pairs(n: int, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Margins loosely tied to the length difference (so the correlation is neither 0 nor 1),
    and lengths in characters."""
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, 3000, n).astype(np.float64)
    rejected = rng.integers(0, 3000, n).astype(np.float64)
    margins = (rng.normal(size=n) + (chosen - rejected) / 1000) * scale
    return margins, chosen, rejected


def stats_in_batches(
    margins: np.ndarray, chosen: np.ndarray, rejected: np.ndarray, sizes: list[int]
) -> PairStats:
    stats, start, k = PairStats(), 0, 0
    while start < len(margins):
        part = slice(start, start + sizes[k % len(sizes)])
        keys = np.arange(len(margins))[part]
        stats.add(keys, margins[part], chosen[part], rejected[part])
        start, k = part.stop, k + 1
    return stats


@settings(max_examples=40, deadline=None)
@given(case=pairs_strategy)
def test_statistics_are_numpys_for_every_batching(
    case: tuple[int, int, float, list[int]],
) -> None:
    n, seed, scale, sizes = case
    margins, chosen, rejected = random_pairs(n, seed, scale)
    stats = stats_in_batches(margins, chosen, rejected, sizes)
    whole = stats_in_batches(margins, chosen, rejected, [n])
    difference = chosen - rejected

    assert stats.pairs == stats.margin_count == stats.length_count == n
    exact_mean = sum(map(Fraction, margins.tolist()), Fraction(0)) / n
    assert stats.margin_mean == float(exact_mean) == pytest.approx(margins.mean(), rel=1e-12)
    assert (stats.margin_min, stats.margin_max) == (margins.min(), margins.max())
    quantiles = stats.margin_quantiles()
    assert list(quantiles.values()) == np.quantile(margins, list(quantiles)).tolist()
    assert stats.chosen_longer == np.count_nonzero(difference > 0)
    assert stats.rejected_longer == np.count_nonzero(difference < 0)
    assert stats.chosen_longer_share == np.mean(difference > 0)
    assert stats.length_difference_mean == pytest.approx(difference.mean(), rel=1e-12, abs=1e-12)
    expected = np.corrcoef(difference, margins)[0, 1]
    assert stats.length_margin_correlation == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert stats.to_json() == whole.to_json()  # every figure, bit for bit, whatever the batches


def test_correlation_survives_means_that_dwarf_the_spread() -> None:
    """Margins of 1e9 +- 1e-3: the one-pass textbook formula in float64 loses every digit
    (n Σy² and (Σy)² agree to 18 digits); the exact sums do not."""
    margins, chosen, rejected = random_pairs(2000, 7, 1e-3)
    margins = margins + 1e9
    stats = stats_in_batches(margins, chosen, rejected, [333])
    expected = np.corrcoef(chosen - rejected, margins - 1e9)[0, 1]  # two-pass, centred
    assert stats.length_margin_correlation == pytest.approx(expected, rel=1e-6)
    n, y = len(margins), margins
    naive_spread = n * (y * y).sum() - y.sum() ** 2
    assert naive_spread != pytest.approx(n * n * y.var(), rel=0.5)  # the naive way is wrong


def test_correlation_is_nan_when_lengths_or_margins_are_constant_and_json_null() -> None:
    stats = PairStats()
    stats.add(np.arange(3), np.array([1.0, 2.0, 3.0]), np.full(3, 5.0), np.full(3, 2.0))
    assert math.isnan(stats.length_margin_correlation)
    assert stats.to_json()["length"]["difference_margin_correlation"] is None
    assert stats.to_json()["length"]["chosen_longer_share"] == 1.0
    assert "correlation with margin n/a" in stats.lines()[-1]


@settings(max_examples=60, deadline=None)
@given(
    a=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
    b=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20),
)
def test_sums_of_products_are_exact_even_for_huge_and_tiny_numbers(
    a: list[float], b: list[float]
) -> None:
    size = min(len(a), len(b))
    x, y = np.array(a[:size]), np.array(b[:size])
    total = _ExactSum()
    total.add_products(x, y)
    assert total.exact() == sum(
        (Fraction(p) * Fraction(q) for p, q in zip(a[:size], b[:size], strict=True)),
        Fraction(0),
    )


def test_prompts_and_pairs_are_counted_apart() -> None:
    """Three prompts paired, one of them twice more: 3 prompts paired, 5 pairs."""
    summary = PairSummary()
    outcomes = np.array([Outcome.PAIRED, Outcome.TIE, Outcome.PAIRED, Outcome.PAIRED], np.uint8)
    rows = np.array([0, 2, 2, 2, 3])
    margins = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    summary.add(outcomes, margins, rows, (np.full(5, 4.0), np.full(5, 3.0)))
    assert summary.prompts_read == 4 and summary.pairs_written == 5
    report = summary.to_json()
    assert report["version"] == JSON_VERSION
    assert report["prompts"]["read"] == 4 and report["prompts"]["paired"] == 3
    assert report["pairs"] == 5 and report["margin"]["count"] == 5
    assert report["margin"]["quantiles"]["p50"] == 3.0
    assert summary.lines()[1] == "pairs written: 5"


def test_drop_reasons_are_every_outcome_but_paired() -> None:
    """Counted from the Outcome enum, so a new outcome code appears without change here."""
    summary = PairSummary()
    outcomes = np.arange(len(Outcome), dtype=np.uint8)
    summary.add(outcomes, np.array([0.5]), np.array([0]))
    dropped = summary.to_json()["prompts"]["dropped"]
    assert dropped == {o.name.lower(): 1 for o in Outcome if o != Outcome.PAIRED}
    assert summary.to_json()["prompts"]["paired"] == 1


def test_sample_of_several_pairs_per_prompt_is_the_same_for_every_batching() -> None:
    """Beyond the sample size, with three pairs per prompt: the pairs of one prompt get
    distinct priorities, so which are sampled does not depend on where batches end."""
    n = 3 * SAMPLE_SIZE
    rng = np.random.default_rng(3)
    margins = rng.normal(size=n)
    keys = np.arange(n) // 3
    results = []
    for batch_prompts in (1000, 4097):
        stats, start = PairStats(), 0
        while start < n:
            part = slice(start, start + 3 * batch_prompts)
            stats.add(keys[part], margins[part])
            start = part.stop
        results.append((stats.margin_quantiles(), stats.sample()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])  # (NaN lengths: equal)
    sampled = results[0][1][:, 0]
    assert len(np.unique(sampled)) == len(sampled) == SAMPLE_SIZE  # distinct pairs


def test_pairs_without_margins_or_lengths_count_only_as_pairs() -> None:
    stats = PairStats()
    stats.add(np.arange(2), np.array([np.nan, 2.0]), np.array([3.0, 1.0]), np.array([1.0, 1.0]))
    stats.add(np.arange(2, 4), None, np.array([5.0, 5.0]), np.array([6.0, 6.0]))
    stats.add(np.arange(4, 5), np.array([4.0]))
    report = stats.to_json()
    assert report["pairs"] == 5 and report["margin"]["count"] == 2
    assert report["margin"]["mean"] == 3.0 and report["length"]["count"] == 4
    assert report["length"]["chosen_longer"] == 1 and report["length"]["equal"] == 1
    assert report["length"]["difference_mean"] == (2 + 0 - 1 - 1) / 4
    assert stats.lines()[0].startswith("margin (of 2 pairs): mean 3")
    empty = PairStats().to_json()
    assert empty == {"pairs": 0, "margin": None, "length": None}


def test_text_lengths_count_characters_of_texts_and_of_message_contents() -> None:
    texts = pa.array(["héllo", "", "日本"])
    assert text_lengths(texts, "chosen").tolist() == [5.0, 0.0, 2.0]
    messages = pa.array(
        [[{"role": "assistant", "content": "ab"}, {"role": "user", "content": "çd"}], []]
    )
    assert text_lengths(messages, "chosen").tolist() == [4.0, 0.0]
    with pytest.raises(InputError, match="null; expected a text") as raised:
        text_lengths(pa.array(["a", None]), "rejected")
    assert (raised.value.row, raised.value.field) == (1, "rejected")
    chunked = pa.chunked_array([pa.array(["ab", "c"]), pa.array(["déf", None])])
    with pytest.raises(InputError, match="null; expected a text") as raised:
        text_lengths(chunked, "chosen")
    assert raised.value.row == 3  # counted over the chunks
    assert text_lengths(chunked[:3], "chosen").tolist() == [2.0, 1.0, 3.0]
    with pytest.raises(InputError, match="has type int64; expected texts"):
        text_lengths(pa.array([1, 2]), "chosen")
