"""Why a prompt did or did not yield a pair."""

from __future__ import annotations

import enum


class PairStatus(enum.IntEnum):
    """Per-prompt outcome; the values are the ``uint8`` codes the Rust core returns."""

    PAIRED = 0
    #: Fewer than two responses: nothing to compare.
    TOO_FEW_RESPONSES = 1
    #: The two picked responses have equal penalised rewards, and ties are dropped.
    TIE = 2
