"""Counts and margin statistics of a conversion, in memory that does not grow with the data.

Quantiles come from a bottom-k sample: every pair gets a pseudo-random priority, a hash of its
instance index, and the :data:`SAMPLE_SIZE` pairs with the smallest priorities are kept. Up to
that many pairs the quantiles are exact; beyond, they are those of a uniform sample of 65,536
margins, within about 0.2 percentile points (the standard error of a sample quantile,
``sqrt(q (1 - q) / k)``, at the median). Because the priority depends only on the instance,
the sample, like everything else, is the same for any batch size, and it takes 1 MiB where
keeping every margin as float32 would take 4 bytes a pair.

The mean is exact too: margins are summed as integers (see :class:`_ExactSum`), so it is the
correctly rounded mean of the written margins, the same however they were grouped into
batches or shards and in whatever order they were added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dpov2.convert.options import Outcome

__all__ = ["SAMPLE_SIZE", "PairSummary"]

SAMPLE_SIZE = 1 << 16
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class _ExactSum:
    """The exact sum of float64 values, independent of the order and grouping of ``add``.

    A finite float is ``m * 2**e`` with ``m`` an integer, ``|m| < 2**53``, and ``e`` in
    ``[-1126, 971]``. Per exponent, the high and low halves of ``m`` (below ``2**26`` and
    ``2**27`` in size) are added into int64 counters, which stay exact for 2**36 values.
    Infinities (a margin can overflow) are summed apart, as floats: they decide the result.
    """

    _BIAS = 1126  # -(smallest e): a subnormal's frexp exponent is at least -1073, minus 53
    _LOW_BITS = 27

    def __init__(self) -> None:
        size = self._BIAS + 972
        self._high = np.zeros(size, np.int64)
        self._low = np.zeros(size, np.int64)
        self._infinite = 0.0

    def add(self, values: npt.NDArray[np.float64]) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            self._infinite += float(values[~finite].sum())
            values = values[finite]
        fractions, exponents = np.frexp(values)
        mantissas = np.ldexp(fractions, 53).astype(np.int64)  # exact: |m| < 2**53
        bins = exponents.astype(np.int64) - 53 + self._BIAS
        np.add.at(self._high, bins, mantissas >> self._LOW_BITS)
        np.add.at(self._low, bins, mantissas & ((1 << self._LOW_BITS) - 1))

    def divided_by(self, n: int) -> float:
        """The sum divided by ``n``, correctly rounded (Python divides integers exactly)."""
        if self._infinite != 0 or math.isnan(self._infinite):
            return self._infinite
        total = 0
        for e in np.flatnonzero(self._high | self._low):
            mantissa = (int(self._high[e]) << self._LOW_BITS) + int(self._low[e])
            total += mantissa << int(e)
        return total / (n << self._BIAS)


@dataclass
class PairSummary:
    """What a conversion did: instances read, pairs written, instances dropped by reason, and
    the written margins' mean, extremes and quantiles."""

    prompts_read: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    _margin_sum: _ExactSum = field(default_factory=_ExactSum, repr=False)
    margin_min: float = math.inf
    margin_max: float = -math.inf
    # Candidates for the sample (at most 2 * SAMPLE_SIZE), and the priority at or above which
    # a pair can no longer enter it: SAMPLE_SIZE candidates already have smaller ones.
    _priorities: npt.NDArray[np.uint64] = field(default_factory=lambda: np.empty(0, np.uint64))
    _margins: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    _cutoff: int = 2**64

    @property
    def pairs_written(self) -> int:
        return self.outcomes[Outcome.PAIRED]

    @property
    def dropped(self) -> dict[str, int]:
        """Instances that yielded no pair, by lower-case reason."""
        return {o.name.lower(): n for o, n in self.outcomes.items() if o != Outcome.PAIRED}

    def add(
        self,
        outcomes: npt.NDArray[np.uint8],
        margins: npt.NDArray[np.float64],
        rows: npt.NDArray[np.int64],
    ) -> None:
        """Counts one batch: an outcome per instance, and the margin and instance index of
        every written pair."""
        self.prompts_read += len(outcomes)
        for outcome, count in enumerate(np.bincount(outcomes, minlength=len(Outcome))):
            self.outcomes[Outcome(outcome)] += int(count)
        if len(margins) == 0:
            return
        self._margin_sum.add(margins)
        self.margin_min = min(self.margin_min, float(margins.min()))
        self.margin_max = max(self.margin_max, float(margins.max()))
        priorities = _priority(rows)
        if self._cutoff < 2**64:
            entering = priorities < np.uint64(self._cutoff)
            priorities, margins = priorities[entering], margins[entering]
        self._priorities = np.concatenate([self._priorities, priorities])
        self._margins = np.concatenate([self._margins, margins])
        if len(self._priorities) > 2 * SAMPLE_SIZE:
            self._shrink()

    def _shrink(self) -> None:
        """Keeps the SAMPLE_SIZE candidates of smallest priority."""
        if len(self._priorities) > SAMPLE_SIZE:
            smallest = np.argpartition(self._priorities, SAMPLE_SIZE - 1)[:SAMPLE_SIZE]
            self._priorities, self._margins = self._priorities[smallest], self._margins[smallest]
            self._cutoff = int(self._priorities.max())

    @property
    def margin_mean(self) -> float:
        if not self.pairs_written:
            return math.nan
        return self._margin_sum.divided_by(self.pairs_written)

    def margin_quantiles(self, qs: tuple[float, ...] = QUANTILES) -> dict[float, float]:
        """Quantiles of the written margins (linear interpolation), exact up to
        :data:`SAMPLE_SIZE` pairs; ``nan`` without pairs."""
        if len(self._margins) == 0:
            return dict.fromkeys(qs, math.nan)
        self._shrink()
        values = np.quantile(self._margins, qs)
        if not np.isfinite(values).all():  # finite margins, but their spread overflows
            values = _spread_safe_quantiles(self._margins, qs)
        return {q: float(v) for q, v in zip(qs, values, strict=True)}

    def lines(self) -> list[str]:
        """The summary as printed by ``dpov2 pair``."""
        dropped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.dropped.items())
        out = [
            f"prompts read: {self.prompts_read}",
            f"pairs written: {self.pairs_written}",
            f"prompts dropped: {sum(self.dropped.values())} ({dropped})",
        ]
        if self.pairs_written:
            quantiles = "  ".join(
                f"p{round(q * 100)} {v:.4g}" for q, v in self.margin_quantiles().items()
            )
            exact = "" if self.pairs_written <= SAMPLE_SIZE else f" (of {SAMPLE_SIZE} sampled)"
            out.append(
                f"margin: mean {self.margin_mean:.4g}  min {self.margin_min:.4g}  {quantiles}  "
                f"max {self.margin_max:.4g}{exact}"
            )
        return out


def _spread_safe_quantiles(
    values: npt.NDArray[np.float64], qs: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """NumPy's linear quantiles, interpolated as ``a * (1 - t) + b * t``: ``a + (b - a) * t``
    overflows when ``b - a`` exceeds the float64 range (margins near +-1.7e308)."""
    ordered = np.sort(values)
    position = np.asarray(qs) * (len(ordered) - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    t = position - below
    a, b = ordered[below], ordered[above]
    return np.clip(a * (1 - t) + b * t, a, b)  # type: ignore[no-any-return]


def _priority(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """A well-mixed 64-bit hash of each instance index (SplitMix64's finaliser)."""
    z = rows.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))  # type: ignore[no-any-return]
