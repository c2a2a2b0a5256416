"""Why a prompt did or did not yield pairs."""

from __future__ import annotations

import enum


class PairStatus(enum.IntEnum):
    """Per-prompt outcome; the values are the ``uint8`` codes the Rust core returns.

    A prompt is unpaired only when no pair passes the filters; the status names the first
    filter, in this order, that left none.
    """

    PAIRED = 0
    #: Fewer than two responses: nothing to compare.
    TOO_FEW_RESPONSES = 1
    #: Every pair of candidates has equal penalised rewards, and ties are dropped.
    TIE = 2
    #: Two responses or more, but fewer than two distinct texts.
    DUPLICATE_RESPONSES = 3
    #: No pair's margin reaches ``min_margin``.
    BELOW_MIN_MARGIN = 4
    #: No pair is within ``max_length_ratio`` and ``max_length_diff``.
    LENGTH_LIMITS = 5
