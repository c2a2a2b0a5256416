"""The reference path: one batch of scored instances to pairs, one row at a time, in Python.

This is the definition the fast path (:mod:`dpov2.convert.fast`) must match row for row:
plain loops over Python dicts, the selection done by the pure-Python reference of
:func:`dpov2.select_pairs`, one prompt per call. It is meant to be read, not to be fast.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from dpov2.convert.options import (
    BELOW_MIN_MARGIN,
    INVALID,
    NON_FINITE_MARGIN,
    PAIRED,
    PairOptions,
    non_finite_margin_error,
    pairs_schema,
)
from dpov2.convert.result import PairedBatch
from dpov2.formats import ScoredBatch, scored_row_problem
from dpov2.pairing import select_pairs

__all__ = ["pair_batch"]


def pair_batch(
    batch: ScoredBatch, options: PairOptions, file: str, *, key_offset: int = 0
) -> PairedBatch:
    """The pairs of one batch, with an outcome for every instance; row ``i`` draws with the
    key ``key_offset + batch.first_row + i``, errors name the row within ``file``.

    Raises:
        InputError: the first invalid row or pair whose margin overflows, unless
            ``options.skip_invalid`` (then they are dropped and counted).
    """
    pairs: list[dict[str, object]] = []
    outcomes: list[int] = []  # Outcome codes, as plain ints (see dpov2.convert.options)
    margins: list[float] = []
    pair_rows: list[int] = []
    for i, instance in enumerate(batch.table.to_pylist()):
        row = batch.first_row + i
        key = key_offset + row
        problem = batch.problems.get(i) or scored_row_problem(instance)
        if problem is not None:
            if not options.skip_invalid:
                raise problem.error(file, row)
            outcomes.append(INVALID)
            continue
        responses = instance["output"]
        scores = [response["score"] for response in responses]
        lengths = None
        if options.needs_lengths:
            lengths = [options.length_unit.measure_one(r["text"]) for r in responses]
        selection = select_pairs(
            scores,
            [0, len(scores)],
            method=options.method,
            lengths=lengths,
            length_penalty=options.length_penalty,
            seed=options.seed,
            first_key=key,
            keep_ties=options.keep_ties,
            use_fast=False,
        )
        status = int(selection.status[0])
        if status != PAIRED:
            outcomes.append(status)
            continue
        c, r = int(selection.chosen[0]), int(selection.rejected[0])
        if options.margin_from == "penalized" and lengths is not None:
            chosen_reward = scores[c] - options.length_penalty * lengths[c]
            rejected_reward = scores[r] - options.length_penalty * lengths[r]
            margin = (chosen_reward - rejected_reward) * options.margin_scale
        else:
            margin = (scores[c] - scores[r]) * options.margin_scale
        if not math.isfinite(margin):
            if not options.skip_invalid:
                raise non_finite_margin_error(file, row, (c, scores[c]), (r, scores[r]), options)
            outcomes.append(NON_FINITE_MARGIN)
            continue
        if options.min_margin is not None and margin < options.min_margin:
            outcomes.append(BELOW_MIN_MARGIN)
            continue
        pair = {
            "prompt": instance["input"],
            "chosen": responses[c]["text"],
            "rejected": responses[r]["text"],
            "margin": margin,
        }
        if options.provenance:
            pair |= {
                "chosen_score": scores[c],
                "rejected_score": scores[r],
                "chosen_index": c,
                "rejected_index": r,
            }
        pairs.append(pair)
        outcomes.append(PAIRED)
        margins.append(margin)
        pair_rows.append(key)
    schema = pairs_schema(batch.table.schema.field("input").type, options.provenance)
    return PairedBatch(
        pa.Table.from_pylist(pairs, schema=schema),
        np.array(outcomes, dtype=np.uint8),
        np.array(margins, dtype=np.float64),
        np.array(pair_rows, dtype=np.int64),
    )
