"""Counts, margin and length statistics of pairs, in memory that does not grow with the data.

:class:`PairStats` describes pairs, wherever they come from (``dpov2 pair`` as it writes them,
``dpov2 inspect`` reading a pair file); :class:`PairSummary` adds what a conversion knows about
prompts: how many were read, and what became of each (an :class:`Outcome`). A prompt may yield
several pairs, so prompts and pairs are counted apart.

Every statistic is the same for any batch size and order of batches:

- **Exact sums.** Counts and sums of lengths are integers. Margins, and the sums of squares
  and products the correlation needs, are summed exactly (see :class:`_ExactSum`), so the
  mean margin is the correctly rounded mean, and the correlation of the length difference
  ``x`` with the margin ``y`` comes from the exact ``n``, ``Σx``, ``Σy``, ``Σx²``, ``Σy²``,
  ``Σxy``: ``n Σxy - Σx Σy`` and the two variances are computed in exact rational arithmetic,
  so the textbook formula's cancellation (catastrophic in float64 when a mean dwarfs the
  spread, as with margins near 1e9 that differ by 1e-3) cannot happen, and the one rounding
  left is that of the final division and square root. Compensated
  (Kahan or pairwise) sums would shrink the error but still depend on the grouping; a
  streaming Welford update depends on the order. Exact sums cost about the same (a few
  vector passes over each batch) and depend on neither.
- **A bounded sample** for quantiles and plots: every pair gets a pseudo-random priority, a
  hash of its key (the instance index, and its rank among the instance's pairs), and the
  :data:`SAMPLE_SIZE` pairs with the smallest priorities are kept. Up to that many pairs the
  quantiles are exact; beyond, they are those of a uniform sample of 65,536 pairs, within
  about 0.2 percentile points (the standard error of a sample quantile, ``sqrt(q (1 - q) /
  k)``, at the median). The priority depends only on the key, so the sample is the same for
  any batching; with the candidates not yet merged in, it takes at most 4 MiB.

Lengths are Unicode characters of the ``chosen`` and ``rejected`` texts (for chat messages,
of their contents): what a pair file holds, so ``dpov2 inspect`` on the written file gives
what ``dpov2 pair`` reported, whatever unit the length penalty used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from dpov2.arrays import nulls, to_numpy
from dpov2.convert.lengths import CHARACTERS
from dpov2.convert.options import Outcome
from dpov2.convert.result import PairedBatch
from dpov2.errors import InputError

__all__ = [
    "JSON_VERSION",
    "LENGTH_UNIT",
    "QUANTILES",
    "SAMPLE_SIZE",
    "PairStats",
    "PairSummary",
    "stats_json",
    "text_lengths",
]

SAMPLE_SIZE = 1 << 16
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: The ``version`` of :meth:`PairSummary.to_json`'s schema (README: "The summary as JSON").
JSON_VERSION = 1
#: The unit of the length statistics.
LENGTH_UNIT = CHARACTERS.name

FloatArray = npt.NDArray[np.float64]


class _ExactSum:
    """The exact sum of float64 values, or of exact products of two, independent of the order
    and grouping of the additions.

    A finite float is ``m * 2**e`` with ``m`` an integer, ``|m| < 2**53``. Per exponent, the
    high and low halves of ``m`` (below ``2**26`` and ``2**27`` in size) are added into int64
    counters, which stay exact for 2**36 values; a batch is binned with ``np.bincount``, whose
    float64 partial sums of such halves are exact integers for up to 2**26 values. A product
    ``a * b`` is split exactly into two floats (Dekker's two-product on the frexp fractions,
    which can neither overflow nor underflow) at the exponent ``ea + eb``, so even squares of
    1e300 are summed exactly. Non-finite values (a margin can overflow) are summed apart, as
    floats: they decide the result.
    """

    # Bin 0 is the exponent -_BIAS: products of two subnormals reach about -2 * 1126 - 54.
    _BIAS = 2400
    _SIZE = _BIAS + 2100  # the largest exponent, that of a product near 2**2048, is 1995
    _LOW_BITS = 27
    _CHUNK = 1 << 26

    def __init__(self) -> None:
        self._high = np.zeros(self._SIZE, np.int64)
        self._low = np.zeros(self._SIZE, np.int64)
        self._non_finite = 0.0
        self._has_non_finite = False

    def add(self, values: FloatArray) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            self._non_finite += float(values[~finite].sum())
            self._has_non_finite = True
            values = values[finite]
        self._add_scaled(values, np.zeros(len(values), np.int64))

    def add_products(self, a: FloatArray, b: FloatArray) -> None:
        """Adds ``a * b``, elementwise, exactly."""
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            self._non_finite += float((a[~finite] * b[~finite]).sum())
            self._has_non_finite = True
            a, b = a[finite], b[finite]
        fa, ea = np.frexp(a)
        fb, eb = np.frexp(b)
        product, error = _two_product(fa, fb)
        shift = ea.astype(np.int64) + eb
        self._add_scaled(product, shift)
        self._add_scaled(error, shift)

    def _add_scaled(self, values: FloatArray, shift: npt.NDArray[np.int64]) -> None:
        """Adds ``values * 2**shift`` exactly (``values`` finite)."""
        fractions, exponents = np.frexp(values)
        mantissas = (fractions * 2.0**53).astype(np.int64)  # exact: |m| < 2**53
        bins = exponents.astype(np.int64) + shift + (self._BIAS - 53)
        high = (mantissas >> self._LOW_BITS).astype(np.float64)
        low = (mantissas & ((1 << self._LOW_BITS) - 1)).astype(np.float64)
        for start in range(0, len(values), self._CHUNK):
            part = slice(start, start + self._CHUNK)
            for counters, halves in ((self._high, high), (self._low, low)):
                counts = np.bincount(bins[part], halves[part], minlength=self._SIZE)
                counters += counts.astype(np.int64)

    def exact(self) -> Fraction | None:
        """The sum as an exact rational; ``None`` if a non-finite value was added."""
        if self._has_non_finite:
            return None
        return Fraction(self._scaled_total(), 1 << self._BIAS)

    def divided_by(self, n: int) -> float:
        """The sum divided by ``n``, correctly rounded (Python divides integers exactly)."""
        if self._has_non_finite:
            return self._non_finite
        return self._scaled_total() / (n << self._BIAS)

    def _scaled_total(self) -> int:
        total = 0
        for e in np.flatnonzero(self._high | self._low):
            mantissa = (int(self._high[e]) << self._LOW_BITS) + int(self._low[e])
            total += mantissa << int(e)
        return total


def _square_sum(values: npt.NDArray[np.int64]) -> int:
    """The exact sum of squares of integers, in int64 chunks small enough not to overflow
    (Python integers for values of 2**31 and more, whose squares int64 cannot hold)."""
    if len(values) == 0:
        return 0
    largest = int(np.abs(values).max())
    if largest >= 2**31:
        return sum(int(v) ** 2 for v in values)
    chunk = (2**63 - 1) // max(1, largest * largest)
    parts = np.array_split(values, -(-len(values) // chunk))
    return sum(int((part * part).sum()) for part in parts)


def _difference(a: Fraction | None, b: Fraction | None) -> Fraction | None:
    return None if a is None or b is None else a - b


def _two_product(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``p, e`` with ``p + e == a * b`` exactly (Dekker; Veltkamp's split at 27 bits), for
    ``a`` and ``b`` of moderate size, as frexp fractions are."""
    p = a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    e = ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low
    return p, e


def _split(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    c = 134217729.0 * a  # 2**27 + 1
    high = c - (c - a)
    return high, a - high


def text_lengths(column: pa.Array | pa.ChunkedArray, name: str) -> FloatArray:
    """The length in characters of each text of a ``chosen`` or ``rejected`` column: strings,
    or chat messages (lists of ``{role, content}``, the contents' lengths summed).

    Raises:
        InputError: a null entry (``row``: its index in the column) or a column of another
            type.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    lengths, first = [], 0
    for chunk in chunks:  # chunk by chunk: combining them would copy the texts
        try:
            lengths.append(_chunk_lengths(chunk, name))
        except InputError as err:
            row = None if err.row is None else first + err.row
            raise InputError(err.message, row=row, field=name) from None
        first += len(chunk)
    return np.concatenate(lengths) if len(lengths) != 1 else lengths[0]


def pair_lengths(table: pa.Table) -> tuple[FloatArray, FloatArray]:
    """The (chosen, rejected) lengths in characters of a table of pairs."""
    return text_lengths(table["chosen"], "chosen"), text_lengths(table["rejected"], "rejected")


def _chunk_lengths(array: pa.Array, name: str) -> FloatArray:
    if array.null_count:
        row = int(np.flatnonzero(nulls(array))[0])
        raise InputError("null; expected a text", row=row, field=name)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return CHARACTERS.measure(array)
    item = kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else None
    if item is not None and pa.types.is_struct(item) and item.get_field_index("content") >= 0:
        contents = pc.list_flatten(array).field("content")
        owners = to_numpy(pc.list_parent_indices(array), np.int64)
        lengths = CHARACTERS.measure(pc.fill_null(contents, ""))
        return np.bincount(owners, lengths, minlength=len(array)).astype(np.float64)
    raise InputError(f"has type {kind}; expected texts, or chat messages", field=name)


@dataclass
class PairStats:
    """The pairs' count, margins (mean, extremes, quantiles) and lengths (which is longer, the
    mean difference, its correlation with the margin), from batches of pairs.

    A pair without a margin (a pair file may lack them) counts among the pairs only; so does
    one whose lengths were not given.
    """

    pairs: int = 0
    margin_count: int = 0  # pairs with a margin
    length_count: int = 0  # pairs with lengths
    margin_min: float = math.inf
    margin_max: float = -math.inf
    chosen_longer: int = 0
    rejected_longer: int = 0
    chosen_length_sum: int = 0
    rejected_length_sum: int = 0
    _margin_sum: _ExactSum = field(default_factory=_ExactSum, repr=False)
    # Over the pairs with both a margin and lengths: x the length difference, y the margin.
    # Σy is the margins' sum less that of the pairs without lengths.
    _both: int = 0
    _x_sum: int = 0
    _xx_sum: int = 0
    _yy_sum: _ExactSum = field(default_factory=_ExactSum, repr=False)
    _xy_sum: _ExactSum = field(default_factory=_ExactSum, repr=False)
    _unmeasured_margin_sum: _ExactSum = field(default_factory=_ExactSum, repr=False)
    # The sample: priorities, and per pair its margin, chosen and rejected lengths (NaN where
    # not known); candidates not yet merged in (at most SAMPLE_SIZE); the priority at or above
    # which a pair can no longer enter: SAMPLE_SIZE sampled pairs already have smaller ones.
    _priorities: npt.NDArray[np.uint64] = field(default_factory=lambda: np.empty(0, np.uint64))
    _sample: FloatArray = field(default_factory=lambda: np.empty((0, 3), np.float64))
    _pending: list[tuple[npt.NDArray[np.uint64], FloatArray]] = field(default_factory=list)
    _pending_rows: int = 0
    _cutoff: int = 2**64

    def add(
        self,
        keys: npt.NDArray[np.int64],
        margins: FloatArray | None,
        chosen_lengths: FloatArray | None = None,
        rejected_lengths: FloatArray | None = None,
    ) -> None:
        """Counts a batch of pairs: each pair's key (its instance index; pairs of one instance
        must come in one batch), margin (NaN or ``None``: none) and lengths (``None``: not
        measured)."""
        n = len(keys)
        if n == 0:
            return
        self.pairs += n
        y = np.full(n, np.nan) if margins is None else np.asarray(margins, np.float64)
        has_margin = ~np.isnan(y)
        if has_margin.any():
            given = y[has_margin]
            self.margin_count += len(given)
            self._margin_sum.add(given)
            self.margin_min = min(self.margin_min, float(given.min()))
            self.margin_max = max(self.margin_max, float(given.max()))
        if chosen_lengths is None or rejected_lengths is None:
            chosen = rejected = np.full(n, np.nan)
            self._unmeasured_margin_sum.add(y[has_margin])
        else:
            chosen, rejected = chosen_lengths, rejected_lengths
            self._add_lengths(chosen, rejected, y, has_margin)
        self._add_to_sample(_priority(_unique_keys(keys)), np.stack([y, chosen, rejected], 1))

    def _add_lengths(
        self, chosen: FloatArray, rejected: FloatArray, y: FloatArray, has_margin: npt.NDArray[Any]
    ) -> None:
        # Integer sums in int64 cannot overflow: a batch's lengths add up to at most the
        # characters it holds in memory.
        chosen_int, rejected_int = chosen.astype(np.int64), rejected.astype(np.int64)
        x = chosen_int - rejected_int
        self.length_count += len(x)
        self.chosen_longer += int(np.count_nonzero(x > 0))
        self.rejected_longer += int(np.count_nonzero(x < 0))
        self.chosen_length_sum += int(chosen_int.sum())
        self.rejected_length_sum += int(rejected_int.sum())
        x, y = x[has_margin], y[has_margin]
        self._both += len(x)
        self._x_sum += int(x.sum())
        self._xx_sum += _square_sum(x)
        self._yy_sum.add_products(y, y)
        self._xy_sum.add_products(x.astype(np.float64), y)

    def _add_to_sample(self, priorities: npt.NDArray[np.uint64], rows: FloatArray) -> None:
        if self._cutoff < 2**64:
            entering = priorities < np.uint64(self._cutoff)
            priorities, rows = priorities[entering], rows[entering]
        self._pending.append((priorities, rows))
        self._pending_rows += len(priorities)
        if self._pending_rows > SAMPLE_SIZE:
            self._shrink()

    def _shrink(self) -> None:
        """Merges the pending candidates in and keeps the SAMPLE_SIZE of smallest priority."""
        if self._pending:
            self._priorities = np.concatenate([self._priorities, *(p for p, _ in self._pending)])
            self._sample = np.concatenate([self._sample, *(r for _, r in self._pending)])
            self._pending, self._pending_rows = [], 0
        if len(self._priorities) > SAMPLE_SIZE:
            smallest = np.argpartition(self._priorities, SAMPLE_SIZE - 1)[:SAMPLE_SIZE]
            self._priorities, self._sample = self._priorities[smallest], self._sample[smallest]
            self._cutoff = int(self._priorities.max())

    def sample(self) -> FloatArray:
        """The sampled pairs (all of them, up to :data:`SAMPLE_SIZE`), one row each: margin,
        chosen length, rejected length (NaN where not known), in priority order."""
        self._shrink()
        return self._sample[np.argsort(self._priorities, kind="stable")]

    @property
    def sampled(self) -> bool:
        """Whether quantiles and plots come from a sample rather than every pair."""
        return self.pairs > SAMPLE_SIZE

    @property
    def margin_mean(self) -> float:
        if not self.margin_count:
            return math.nan
        return self._margin_sum.divided_by(self.margin_count)

    def margin_quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        """Quantiles of the margins (linear interpolation), exact up to :data:`SAMPLE_SIZE`
        pairs; ``nan`` without margins."""
        self._shrink()
        margins = self._sample[:, 0]
        margins = margins[~np.isnan(margins)]
        if len(margins) == 0:
            return dict.fromkeys(qs, math.nan)
        values = np.quantile(margins, qs)
        if not np.isfinite(values).all():  # finite margins, but their spread overflows
            values = _spread_safe_quantiles(margins, qs)
        return {q: float(v) for q, v in zip(qs, values, strict=True)}

    @property
    def length_difference_mean(self) -> float:
        """Mean of chosen minus rejected length, in characters (exact, correctly rounded)."""
        if not self.length_count:
            return math.nan
        return (self.chosen_length_sum - self.rejected_length_sum) / self.length_count

    @property
    def chosen_longer_share(self) -> float:
        return self.chosen_longer / self.length_count if self.length_count else math.nan

    @property
    def length_margin_correlation(self) -> float:
        """Pearson's correlation of the length difference with the margin, over the pairs with
        both; ``nan`` when either is constant (or missing) or a margin is not finite."""
        n, sx, sxx = self._both, self._x_sum, self._xx_sum
        sy, syy, sxy = (
            _difference(self._margin_sum.exact(), self._unmeasured_margin_sum.exact()),
            self._yy_sum.exact(),
            self._xy_sum.exact(),
        )
        if n < 2 or sy is None or syy is None or sxy is None:
            return math.nan
        covariance = n * sxy - sx * sy
        x_spread, y_spread = n * sxx - sx * sx, n * syy - sy * sy
        if x_spread == 0 or y_spread == 0:
            return math.nan
        squared = float(covariance * covariance / (x_spread * y_spread))  # in [0, 1]: no overflow
        return math.copysign(math.sqrt(min(squared, 1.0)), covariance)

    def lines(self) -> list[str]:
        """The margin and length lines of the printed summaries (none without pairs)."""
        out = []
        if self.margin_count:
            quantiles = "  ".join(
                f"p{round(q * 100)} {v:.4g}" for q, v in self.margin_quantiles().items()
            )
            exact = f" (of {SAMPLE_SIZE} sampled)" if self.sampled else ""
            some = "" if self.margin_count == self.pairs else f" (of {self.margin_count} pairs)"
            out.append(
                f"margin{some}: mean {self.margin_mean:.4g}  min {self.margin_min:.4g}  "
                f"{quantiles}  max {self.margin_max:.4g}{exact}"
            )
        if self.length_count:
            correlation = self.length_margin_correlation
            shown = "n/a" if math.isnan(correlation) else f"{correlation:.3f}"
            out.append(
                f"length ({LENGTH_UNIT}): chosen longer in {self.chosen_longer_share:.1%} "
                f"({self.chosen_longer} of {self.length_count}, {self.rejected_longer} shorter)  "
                f"mean chosen - rejected {self.length_difference_mean:+.4g}  "
                f"correlation with margin {shown}"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """``pairs``, ``margin`` and ``length`` of the JSON summary (see the README)."""
        margin = None
        if self.margin_count:
            margin = {
                "count": self.margin_count,
                "mean": _number(self.margin_mean),
                "min": _number(self.margin_min),
                "max": _number(self.margin_max),
                "quantiles": {
                    f"p{round(q * 100)}": _number(v) for q, v in self.margin_quantiles().items()
                },
                "sample_size": SAMPLE_SIZE if self.sampled else None,
            }
        length = None
        if self.length_count:
            length = {
                "unit": LENGTH_UNIT,
                "count": self.length_count,
                "chosen_mean": self.chosen_length_sum / self.length_count,
                "rejected_mean": self.rejected_length_sum / self.length_count,
                "difference_mean": self.length_difference_mean,
                "chosen_longer": self.chosen_longer,
                "rejected_longer": self.rejected_longer,
                "equal": self.length_count - self.chosen_longer - self.rejected_longer,
                "chosen_longer_share": self.chosen_longer_share,
                "difference_margin_correlation": _number(self.length_margin_correlation),
            }
        return {"pairs": self.pairs, "margin": margin, "length": length}


@dataclass
class PairSummary:
    """What a conversion did: prompts read, and what became of each (an :class:`Outcome`,
    counted per prompt, so new outcomes appear without change here), beside the
    :class:`PairStats` of the pairs written (a prompt may yield several)."""

    prompts_read: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    stats: PairStats = field(default_factory=PairStats)
    #: With length limits: the pairs the same options give without them, so the report says
    #: what the limits changed (``None`` without limits).
    before_limits: PairStats | None = None

    @property
    def pairs_written(self) -> int:
        return self.stats.pairs

    @property
    def dropped(self) -> dict[str, int]:
        """Prompts that yielded no pair, by lower-case reason."""
        return {o.name.lower(): n for o, n in self.outcomes.items() if o != Outcome.PAIRED}

    def add(
        self,
        outcomes: npt.NDArray[np.uint8],
        margins: FloatArray,
        rows: npt.NDArray[np.int64],
        lengths: tuple[FloatArray, FloatArray] | None = None,
    ) -> None:
        """Counts one batch: an outcome per prompt, and the margin, instance index and
        (chosen, rejected) lengths of every written pair (``None``: not measured)."""
        self.prompts_read += len(outcomes)
        for outcome, count in enumerate(np.bincount(outcomes, minlength=len(Outcome))):
            self.outcomes[Outcome(outcome)] += int(count)
        self.stats.add(rows, margins, *(lengths or (None, None)))

    def add_before_limits(
        self,
        margins: FloatArray,
        rows: npt.NDArray[np.int64],
        lengths: tuple[FloatArray, FloatArray],
    ) -> None:
        """Counts the pairs of a batch paired without its length limits (as :meth:`add`
        counts the written ones)."""
        if self.before_limits is None:
            self.before_limits = PairStats()
        self.before_limits.add(rows, margins, *lengths)

    def add_batch(self, paired: PairedBatch) -> None:
        """Counts a converted batch, measuring its pairs' lengths."""
        self.add(paired.outcomes, paired.margins, paired.rows, pair_lengths(paired.table))
        if paired.before_limits is not None:
            before = paired.before_limits
            self.add_before_limits(before.margins, before.rows, pair_lengths(before.table))

    @property
    def margin_min(self) -> float:
        return self.stats.margin_min

    @property
    def margin_max(self) -> float:
        return self.stats.margin_max

    @property
    def margin_mean(self) -> float:
        return self.stats.margin_mean

    def margin_quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        return self.stats.margin_quantiles(qs)

    def lines(self) -> list[str]:
        """The summary as printed by ``dpov2 pair``."""
        dropped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.dropped.items())
        lines = [
            f"prompts read: {self.prompts_read}",
            f"pairs written: {self.pairs_written}",
            f"prompts dropped: {sum(self.dropped.values())} ({dropped})",
            *self.stats.lines(),
        ]
        if self.before_limits is not None:
            before = self.before_limits
            lines += [
                f"before length limits ({before.pairs} pairs), {line}"
                for line in before.lines()
                if line.startswith("length")
            ]
        return lines

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON (schema ``version`` :data:`JSON_VERSION`, in the README)."""
        prompts = {
            "read": self.prompts_read,
            "paired": self.outcomes[Outcome.PAIRED],
            "dropped": self.dropped,
        }
        before = None if self.before_limits is None else self.before_limits.to_json()
        return {
            "version": JSON_VERSION,
            "prompts": prompts,
            **self.stats.to_json(),
            "before_length_limits": before,
        }


def stats_json(stats: PairStats) -> dict[str, Any]:
    """The JSON summary of pairs alone (``prompts`` null): what ``dpov2 inspect`` gives."""
    return {"version": JSON_VERSION, "prompts": None, **stats.to_json()}


def _number(value: float) -> float | None:
    """JSON has no NaN or infinity: ``null`` stands for them."""
    return value if math.isfinite(value) else None


def _spread_safe_quantiles(values: FloatArray, qs: tuple[float, ...]) -> FloatArray:
    """NumPy's linear quantiles, interpolated as ``a * (1 - t) + b * t``: ``a + (b - a) * t``
    overflows when ``b - a`` exceeds the float64 range (margins near +-1.7e308)."""
    ordered = np.sort(values)
    position = np.asarray(qs) * (len(ordered) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    t = position - below
    a, b = ordered[below], ordered[above]
    return np.clip(a * (1 - t) + b * t, a, b)  # type: ignore[no-any-return]


# Keys of the pairs of one instance: the instance index plus the pair's rank among them, times
# 2**40, distinct for indices below 2**40 (a trillion instances) and 2**24 pairs per instance.
_RANK_SHIFT = 40


def _unique_keys(keys: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """Each key made distinct by its rank among equal keys of the batch (in batch order), so
    that the pairs of one instance get different priorities; unchanged when keys are distinct."""
    keys = np.asarray(keys, np.int64)
    if (keys[1:] > keys[:-1]).all():  # increasing, as a batch's instances come: distinct
        return keys.astype(np.uint64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    if (ordered[1:] != ordered[:-1]).all():
        return keys.astype(np.uint64)
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    run_lengths = np.diff(np.r_[starts, len(keys)])
    ranks = np.empty(len(keys), np.uint64)
    ranks[order] = np.arange(len(keys)) - np.repeat(starts, run_lengths)
    shifted: npt.NDArray[np.uint64] = ranks << np.uint64(_RANK_SHIFT)
    return keys.astype(np.uint64) + shifted


def _priority(keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A well-mixed 64-bit hash of each key (SplitMix64's finaliser, a bijection)."""
    z = keys + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))  # type: ignore[no-any-return]
