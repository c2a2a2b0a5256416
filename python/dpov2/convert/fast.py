"""The fast path: one batch of scored instances to pairs with Arrow kernels and the Rust core.

Nothing here loops over rows in Python. Scores and per-instance offsets are read from the
Arrow list and struct buffers, lengths in characters counted in Rust, invalid rows found
with vectorised null and finiteness checks, copies of a response text and content keys found
by the Rust core in the text buffers, the pairs selected by ``dpov2.select_pairs`` and the
texts gathered in Rust, in parallel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from dpov2 import _core
from dpov2.arrays import from_numpy, mask, nulls, one_array, to_numpy
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
from dpov2.pairing import content_keys, duplicate_of, select_pairs

__all__ = ["pair_batch"]


def pair_batch(
    batch: ScoredBatch, options: PairOptions, file: str, *, key_offset: int = 0
) -> PairedBatch:
    """The pairs of one batch, with an outcome for every instance.

    Row ``i`` of the batch draws with the key ``key_offset + batch.first_row + i`` (see
    :func:`dpov2.convert.pair_batches`); errors name the row within ``file``.

    Raises:
        InputError: the first invalid row or pair whose margin overflows, unless
            ``options.skip_invalid`` (then they are dropped and counted).
    """
    prompts = one_array(batch.table.column("input"))
    outputs = one_array(batch.table.column("output"))
    # The list offsets index the child array; a sliced array starts past its first value.
    list_offsets = to_numpy(outputs.offsets, np.int64)
    first, last = int(list_offsets[0]), int(list_offsets[-1])
    responses = outputs.values.slice(first, last - first)
    offsets = list_offsets - first
    sizes = np.diff(offsets)
    texts = responses.field("text")
    scores = to_numpy(responses.field("score"), np.float64)  # nulls read as NaN

    invalid = _invalid_rows(batch, prompts, outputs, responses, texts, scores, offsets)
    if invalid.any():
        # Invalid rows keep their place (their random draws depend on their index) with no
        # responses; `flat` maps the remaining responses back to their place in `responses`.
        valid_responses = np.repeat(~invalid, sizes)
        flat = np.flatnonzero(valid_responses)
        kept_offsets = _offsets(np.where(invalid, 0, sizes))
        kept_texts = texts.filter(mask(valid_responses))
    else:  # the common case: every response is kept, no text is gathered
        flat, kept_offsets, kept_texts = np.arange(len(scores)), offsets, texts
    lengths = None  # of every response, beside `scores`
    if options.needs_lengths:
        lengths = np.zeros(len(scores))
        lengths[flat] = options.length_unit.measure(kept_texts, num_threads=options.num_threads)
    keys = None
    if options.key == "content":
        keys = content_keys(prompts, kept_texts, kept_offsets)
    selection = select_pairs(
        scores[flat],
        kept_offsets,
        lengths=None if lengths is None else lengths[flat],
        first_key=key_offset + batch.first_row,
        duplicate_of=duplicate_of(kept_texts, kept_offsets, num_threads=options.num_threads),
        keys=keys,
        num_threads=options.num_threads,
        **options.selection_arguments(),
    )
    outcomes = selection.status.copy()
    outcomes[invalid] = INVALID
    rows = selection.pair_prompts()  # the row in the batch of every pair
    chosen = flat[selection.chosen]
    rejected = flat[selection.rejected]

    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is found and reported below
        if options.margin_from == "penalized" and lengths is not None:
            penalty = options.length_penalty
            chosen_reward = scores[chosen] - penalty * lengths[chosen]
            rejected_reward = scores[rejected] - penalty * lengths[rejected]
            margins = (chosen_reward - rejected_reward) * options.margin_scale
        else:
            margins = (scores[chosen] - scores[rejected]) * options.margin_scale
    overflowed = ~np.isfinite(margins)
    if not options.skip_invalid and (invalid.any() or overflowed.any()):
        raise _first_error(
            batch, invalid, overflowed, (rows, chosen, rejected), (offsets, scores), file, options
        )
    if overflowed.any():
        kept = ~overflowed
        # A row whose every pair overflowed yields nothing; the others keep their good pairs.
        left = np.bincount(rows[kept], minlength=len(outcomes))
        outcomes[(outcomes == PAIRED) & (left == 0)] = NON_FINITE_MARGIN
        rows, chosen, rejected, margins = rows[kept], chosen[kept], rejected[kept], margins[kept]

    columns: list[pa.Array] = [
        _gather(prompts, rows, options.num_threads),
        _gather(texts, chosen, options.num_threads),
        _gather(texts, rejected, options.num_threads),
        from_numpy(margins),
    ]
    if options.provenance:
        starts = offsets[rows]
        columns += [
            from_numpy(scores[chosen]),
            from_numpy(scores[rejected]),
            from_numpy(chosen - starts),
            from_numpy(rejected - starts),
        ]
    schema = pairs_schema(prompts.type, options.provenance)
    table = pa.Table.from_arrays(columns, schema=schema)
    return PairedBatch(table, outcomes, margins, rows + (key_offset + batch.first_row))


def _invalid_rows(
    batch: ScoredBatch,
    prompts: pa.Array,
    outputs: pa.Array,
    responses: pa.StructArray,
    texts: pa.Array,
    scores: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Rows that :func:`scored_row_problem` would reject, found without leaving Arrow: a
    null prompt, output, response or text, or a null or non-finite score."""
    bad = ~np.isfinite(scores)
    if responses.null_count:
        bad |= nulls(responses)
    if texts.null_count:
        bad |= nulls(texts)
    bad_before = np.concatenate([[0], np.cumsum(bad)])
    invalid = np.asarray(bad_before[offsets[1:]] > bad_before[offsets[:-1]])
    if prompts.null_count:
        invalid |= nulls(prompts)
    if outputs.null_count:
        invalid |= nulls(outputs)
    if batch.problems:
        invalid[list(batch.problems)] = True
    return invalid


def _first_error(
    batch: ScoredBatch,
    invalid: npt.NDArray[np.bool_],
    overflowed: npt.NDArray[np.bool_],
    pairs: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]],
    responses: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    file: str,
    options: PairOptions,
) -> Exception:
    """The error for the first row that stops the run, the one the reference path meets
    first: an invalid row, or a pair whose margin overflows. ``pairs`` holds each pair's row
    in the batch and its chosen and rejected positions among the batch's responses,
    ``responses`` the rows' offsets into them and their scores."""
    rows, chosen, rejected = pairs
    offsets, scores = responses
    first_invalid = int(np.argmax(invalid)) if invalid.any() else len(invalid)
    if not overflowed.any() or first_invalid < rows[np.argmax(overflowed)]:
        return _first_problem(batch, invalid, file)
    k = int(np.argmax(overflowed))
    start, c, r = int(offsets[rows[k]]), int(chosen[k]), int(rejected[k])
    return non_finite_margin_error(
        *batch.locate(int(rows[k]), file),
        (c - start, float(scores[c])),
        (r - start, float(scores[r])),
        options,
    )


def _first_problem(batch: ScoredBatch, invalid: npt.NDArray[np.bool_], file: str) -> Exception:
    """The error for the first invalid row, worded by the shared definition of a valid row."""
    i = int(np.argmax(invalid))
    problem = batch.problems.get(i) or scored_row_problem(batch.table.slice(i, 1).to_pylist()[0])
    if problem is None:
        raise AssertionError(f"{file}: row {batch.first_row + i} flagged invalid but is valid")
    return problem.error(*batch.locate(i, file))


def _gather(values: pa.Array, indices: npt.NDArray[np.int64], num_threads: int | None) -> pa.Array:
    """``values.take(indices)``: for strings in Rust, in one parallel pass (``take`` runs on
    one thread); other types (chat-message prompts) by ``take``."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        gathered = _core.gather_strings(values, indices, num_threads=num_threads)
        return pa.record_batch(gathered).column(0)
    return values.take(from_numpy(indices))


def _offsets(sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets
