"""How scored instances become pairs: the options, and what became of each instance."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dpov2.convert.lengths import CHARACTERS, LengthUnit
from dpov2.errors import InputError
from dpov2.formats.instances import PROVENANCE_EXTRAS
from dpov2.pairing import METHODS, TIE_ORDERS, PairStatus, reference
from dpov2.threads import resolve_threads

__all__ = [
    "INVALID",
    "KEYS",
    "MARGIN_SOURCES",
    "NON_FINITE_MARGIN",
    "PAIRED",
    "Outcome",
    "PairOptions",
    "non_finite_margin_error",
    "pairs_schema",
]

MARGIN_SOURCES = reference.MARGIN_SOURCES
#: What keys an instance's random draws: its row in the dataset, or its content.
KEYS = ("row", "content")


class Outcome(enum.IntEnum):
    """Per instance: the :class:`dpov2.PairStatus` codes (one source, the selection's), then
    what only a conversion can meet."""

    PAIRED = PairStatus.PAIRED
    TOO_FEW_RESPONSES = PairStatus.TOO_FEW_RESPONSES
    TIE = PairStatus.TIE
    DUPLICATE_RESPONSES = PairStatus.DUPLICATE_RESPONSES
    BELOW_MIN_MARGIN = PairStatus.BELOW_MIN_MARGIN
    LENGTH_LIMITS = PairStatus.LENGTH_LIMITS
    #: The row broke the input format and was skipped (only with ``skip_invalid``).
    INVALID = len(PairStatus)
    #: Every selected pair's margin overflowed the float64 range (only with
    #: ``skip_invalid``; such pairs are dropped one by one).
    NON_FINITE_MARGIN = len(PairStatus) + 1


# The codes as plain ints, for comparisons with NumPy arrays and in per-row loops: comparing an
# array with an enum member makes NumPy run Python code on the enum type, which can swallow a
# KeyboardInterrupt that arrives meanwhile.
PAIRED = int(Outcome.PAIRED)
INVALID = int(Outcome.INVALID)
NON_FINITE_MARGIN = int(Outcome.NON_FINITE_MARGIN)


@dataclass(frozen=True)
class PairOptions:
    """Everything that decides which pairs an instance yields, if any.

    ``length_penalty`` ranks responses by ``score - length_penalty * length`` with lengths in
    ``length_unit`` (characters unless a tokenizer is given). The written ``margin`` is
    ``(chosen - rejected) * margin_scale`` over raw scores (LMFlow's definition) or, with
    ``margin_from="penalized"``, over penalised rewards. Selection (:func:`dpov2.select_pairs`)
    takes up to ``pairs_per_prompt`` pairs among the eligible ones: of distinct response
    texts (byte-equal copies are one candidate), not tied unless ``keep_ties``, with a margin
    of at least ``min_margin``, within ``max_length_ratio`` and ``max_length_diff`` (in
    ``length_unit``). ``key`` keys the random draws by the instance's row (default) or its
    content (prompt and response texts: the same pairs however the rows are ordered or
    sharded). Invalid rows stop the run unless ``skip_invalid``. ``provenance`` adds the two
    scores and response indices. ``num_threads`` is the Rust core's thread count
    (:func:`dpov2.threads.resolve_threads`). An invalid option is an :class:`InputError`
    whose ``field`` is the option's name.
    """

    method: str = "random"
    length_penalty: float = 0.0
    length_unit: LengthUnit = field(default=CHARACTERS)
    margin_scale: float = 1.0
    margin_from: str = "raw"
    seed: int = 42
    min_margin: float | None = None
    keep_ties: bool = False
    tie_order: str = "dpov2"
    pairs_per_prompt: int = 1
    max_length_ratio: float | None = None
    max_length_diff: float | None = None
    key: str = "row"
    skip_invalid: bool = False
    provenance: bool = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(
                f"unknown sampling method '{self.method}'; expected one of: {', '.join(METHODS)}",
                field="method",
            )
        if self.tie_order not in TIE_ORDERS:
            raise InputError(
                f"unknown tie order '{self.tie_order}'; expected one of: {', '.join(TIE_ORDERS)}",
                field="tie_order",
            )
        if self.key not in KEYS:
            raise InputError(
                f"unknown key '{self.key}'; expected one of: {', '.join(KEYS)}", field="key"
            )
        k = self.pairs_per_prompt
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(
                f"pairs per prompt must be at least 1, got {self.pairs_per_prompt}",
                field="pairs_per_prompt",
            )
        ratio, diff = self.max_length_ratio, self.max_length_diff
        if ratio is not None and not (math.isfinite(ratio) and ratio >= 1):
            raise InputError(
                f"maximum length ratio must be a finite number >= 1, got {ratio}",
                field="max_length_ratio",
            )
        if diff is not None and not (math.isfinite(diff) and diff >= 0):
            raise InputError(
                f"maximum length difference must be a finite number >= 0, got {diff}",
                field="max_length_diff",
            )
        if self.margin_from not in MARGIN_SOURCES:
            raise InputError(
                f"unknown margin source '{self.margin_from}'; expected one of: "
                f"{', '.join(MARGIN_SOURCES)}"
            )
        numbers = {"length penalty": self.length_penalty, "margin scale": self.margin_scale}
        if self.min_margin is not None:
            numbers["minimum margin"] = self.min_margin
        for name, value in numbers.items():
            if not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value}")
        if isinstance(self.seed, bool) or not 0 <= self.seed < 2**64:
            raise InputError(f"seed must be an integer in [0, 2**64), got {self.seed}")
        try:
            resolve_threads(self.num_threads)
        except (TypeError, ValueError) as err:
            raise InputError(str(err)) from None

    @property
    def needs_lengths(self) -> bool:
        return (
            self.length_penalty != 0
            or self.max_length_ratio is not None
            or self.max_length_diff is not None
        )

    def without_length_limits(self) -> PairOptions | None:
        """These options without their length limits, for the length-bias report of what the
        limits changed (``None`` when there are none). Rows the limited run accepted are
        valid, so pairs whose margin overflows are only dropped here, never an error."""
        if self.max_length_ratio is None and self.max_length_diff is None:
            return None
        return dataclasses.replace(
            self, max_length_ratio=None, max_length_diff=None, skip_invalid=True
        )

    def selection_arguments(self) -> dict[str, Any]:
        """The keywords of :func:`dpov2.select_pairs` these options set, the same for every
        batch and on both paths (the arrays, the first key and the thread count aside)."""
        return {
            "method": self.method,
            "length_penalty": self.length_penalty,
            "seed": self.seed,
            "keep_ties": self.keep_ties,
            "tie_order": self.tie_order,
            "pairs_per_prompt": self.pairs_per_prompt,
            "min_margin": self.min_margin,
            "margin_scale": self.margin_scale,
            "margin_from": self.margin_from,
            "max_length_ratio": self.max_length_ratio,
            "max_length_diff": self.max_length_diff,
        }


def non_finite_margin_error(
    file: str,
    row: int,
    chosen: tuple[int, float],
    rejected: tuple[int, float],
    options: PairOptions,
) -> InputError:
    """The error for a pair whose margin overflows the float64 range; ``chosen`` and
    ``rejected`` are (response index, raw score). Both paths raise exactly this."""
    (c, chosen_score), (r, rejected_score) = chosen, rejected
    source = "penalised rewards" if options.margin_from == "penalized" else "scores"
    return InputError(
        f"the margin of output[{c}] (score {chosen_score!r}) over output[{r}] (score "
        f"{rejected_score!r}) from {source} times margin scale {options.margin_scale!r} "
        "overflows the float64 range; rescale the scores or lower --margin-scale "
        "(--skip-invalid drops such rows)",
        file=file,
        row=row,
        field="margin",
    )


def pairs_schema(prompt_type: pa.DataType, provenance: bool) -> pa.Schema:
    """``prompt`` (as in the input), ``chosen``, ``rejected``, ``margin`` and, with
    ``provenance``, the raw scores and the indices of the two responses in the instance."""
    fields = [
        pa.field("prompt", prompt_type),
        pa.field("chosen", pa.string()),
        pa.field("rejected", pa.string()),
        pa.field("margin", pa.float64()),
    ]
    if provenance:
        fields += [
            pa.field(name, pa.type_for_alias(kind)) for name, kind in PROVENANCE_EXTRAS.items()
        ]
    return pa.schema(fields)
