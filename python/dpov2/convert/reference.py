"""The reference path: one batch of scored instances to pairs, one row at a time, in Python.

This is the definition the fast path (:mod:`dpov2.convert.fast`) must match row for row:
plain loops over Python dicts, copies and content keys found by
:mod:`dpov2.pairing.content`, the selection done by the pure-Python reference of
:func:`dpov2.select_pairs`, one prompt per call. It is meant to be read, not to be fast.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from dpov2.convert.options import (
    INVALID,
    NON_FINITE_MARGIN,
    PAIRED,
    PairOptions,
    non_finite_margin_error,
    pairs_schema,
)
from dpov2.convert.result import PairedBatch
from dpov2.formats import ScoredBatch, scored_row_problem
from dpov2.pairing import content, select_pairs

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
                raise problem.error(*batch.locate(i, file))
            outcomes.append(INVALID)
            continue
        responses = instance["output"]
        scores = [response["score"] for response in responses]
        texts = [response["text"] for response in responses]
        lengths = None
        if options.needs_lengths:
            lengths = [options.length_unit.measure_one(text) for text in texts]
        selection = select_pairs(
            scores,
            [0, len(scores)],
            lengths=lengths,
            first_key=key,
            duplicate_of=content.duplicate_of(texts),
            keys=[content.content_key(instance["input"], texts)]
            if options.key == "content"
            else None,
            use_fast=False,
            **options.selection_arguments(),
        )
        status = int(selection.status[0])
        if status != PAIRED:
            outcomes.append(status)
            continue
        written = 0
        for c, r in zip(selection.chosen.tolist(), selection.rejected.tolist(), strict=True):
            if options.margin_from == "penalized" and lengths is not None:
                chosen_reward = scores[c] - options.length_penalty * lengths[c]
                rejected_reward = scores[r] - options.length_penalty * lengths[r]
                margin = (chosen_reward - rejected_reward) * options.margin_scale
            else:
                margin = (scores[c] - scores[r]) * options.margin_scale
            if not math.isfinite(margin):
                if not options.skip_invalid:
                    raise non_finite_margin_error(
                        *batch.locate(i, file), (c, scores[c]), (r, scores[r]), options
                    )
                continue
            pair = {
                "prompt": instance["input"],
                "chosen": texts[c],
                "rejected": texts[r],
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
            margins.append(margin)
            pair_rows.append(key)
            written += 1
        outcomes.append(PAIRED if written else NON_FINITE_MARGIN)
    schema = pairs_schema(batch.table.schema.field("input").type, options.provenance)
    return PairedBatch(
        pa.Table.from_pylist(pairs, schema=schema),
        np.array(outcomes, dtype=np.uint8),
        np.array(margins, dtype=np.float64),
        np.array(pair_rows, dtype=np.int64),
    )
