"""Scored datasets (``text_to_scored_textlist``) to DPO pair datasets (``paired_text_to_text``).

Each instance yields at most one pair, chosen by :func:`dpov2.select_pairs` with the
instance's index as its random key, so the output is the same for any batch size, thread
count, or path: ``use_fast=True`` (Arrow and the Rust core, :mod:`dpov2.convert.fast`) or
``use_fast=False`` (plain Python, :mod:`dpov2.convert.reference`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dpov2.convert import fast, reference
from dpov2.convert.lengths import length_unit
from dpov2.convert.options import MARGIN_SOURCES, Outcome, PairOptions, pairs_schema
from dpov2.convert.result import PairedBatch
from dpov2.convert.summary import PairSummary
from dpov2.formats import ScoredSource, as_conversational, open_scored, open_writer, to_dataset
from dpov2.formats.atomic import check_apart
from dpov2.formats.prefetch import WriteBehind, prefetch

if TYPE_CHECKING:
    import datasets

__all__ = [
    "MARGIN_SOURCES",
    "Outcome",
    "PairOptions",
    "PairSummary",
    "PairedBatch",
    "convert_to_paired_dataset",
    "pair_batches",
    "write_pairs",
]


def pair_batches(
    source: ScoredSource, options: PairOptions, *, use_fast: bool = True, key_offset: int = 0
) -> Iterator[tuple[PairedBatch, int]]:
    """Each batch's pairs, with the progress (bytes or rows of the source) it stands for.

    Instance ``r`` of the source draws with the key ``key_offset + r``. A dataset split into
    shards is paired shard by shard with ``key_offset`` the number of instances in the shards
    before, which gives every instance the key it has in the concatenated file, whoever pairs
    it (see :mod:`dpov2.convert.ray_engine`). The next batch is read in a background thread
    while this one is paired. With length limits, each batch is also paired without them
    (:attr:`PairedBatch.before_limits`), which the summary reports.
    """
    pair = fast.pair_batch if use_fast else reference.pair_batch
    unlimited = options.without_length_limits()
    for batch in prefetch(source.batches):
        paired = pair(batch, options, source.name, key_offset=key_offset)
        if unlimited is not None:
            before = pair(batch, unlimited, source.name, key_offset=key_offset)
            paired = dataclasses.replace(paired, before_limits=before)
        yield paired, batch.progress


def write_pairs(
    source: ScoredSource,
    output: str | os.PathLike[str],
    options: PairOptions,
    *,
    use_fast: bool = True,
    output_format: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PairSummary:
    """Pairs ``source`` into the file ``output`` (JSON Lines, LMFlow JSON or Parquet), batch
    by batch; the file appears only once complete, and never over (or inside) the source.
    Each batch is written in a background thread while the next is paired.
    ``progress`` is called after each batch is paired with the amount of the source it
    consumed (bytes or rows) and its number of prompts."""
    if source.path is not None:
        check_apart(Path(output), [source.path])
    summary = PairSummary()
    prompt_type: pa.DataType = pa.string()
    with open_writer(
        output, output_format, overwrite=overwrite, threads=options.num_threads
    ) as writer:
        with WriteBehind(writer.write) as behind:
            for paired, consumed in pair_batches(source, options, use_fast=use_fast):
                if paired.table.num_rows:
                    behind.put(paired.table)
                    prompt_type = paired.table.schema.field("prompt").type
                summary.add_batch(paired)
                if progress is not None:
                    progress(consumed, len(paired.outcomes))
        writer.finish(pairs_schema(prompt_type, options.provenance))
    return summary


def convert_to_paired_dataset(
    source: str | os.PathLike[str] | datasets.Dataset,
    *,
    sampling_paired_method: str = "random",
    length_penalty: float = 0.0,
    margin_scale: float = 1.0,
    seed: int = 42,
    use_fast: bool = True,
    keep_ties: bool = False,
    min_margin: float | None = None,
    margin_from: str = "raw",
    tie_order: str = "dpov2",
    pairs_per_prompt: int = 1,
    max_length_ratio: float | None = None,
    max_length_diff: float | None = None,
    key: str = "row",
    tokenizer: str | os.PathLike[str] | Any | None = None,
    skip_invalid: bool = False,
    provenance: bool = False,
    input_format: str | None = None,
    batch_size: int = 8192,
    max_samples: int | None = None,
) -> datasets.Dataset:
    """A ``datasets.Dataset`` of ``prompt``, ``chosen``, ``rejected``, ``margin`` (ready for
    TRL's ``DPOTrainer``) from a scored dataset: a file or folder path, or a
    ``datasets.Dataset``.

    As LMFlow's method of the same name: responses ranked by ``score - length_penalty *
    length`` (length in characters, or in tokens of ``tokenizer``, a tokenizer or a local
    folder), pairs by ``sampling_paired_method`` (LMFlow's ``random``, ``max_min``,
    ``max_max``, ``max_random``, one pair per prompt; or ``all_pairs``, ``adjacent``,
    ``top_bottom``), ``margin = (raw chosen score - raw rejected score) * margin_scale``.
    Unlike LMFlow, the draws are reproducible from ``seed``, ties (equal penalised rewards)
    are not pairs unless ``keep_ties``, and identical response texts are one candidate. The
    options of ``dpov2 pair`` are the keywords of the same names (``tie_order``,
    ``pairs_per_prompt``, ``max_length_ratio``, ``max_length_diff``, ``key``, ...); see
    :class:`PairOptions` and the README's "Pair selection" for their meaning.

    A prompt given as chat messages stays as it is, and ``chosen``/``rejected`` become
    one-message conversations, ``[{"role": "assistant", "content": text}]``: TRL's
    conversational preference format, which its ``DPOTrainer`` renders with the tokenizer's
    chat template (it refuses a message-list prompt beside plain-text completions).

    Raises:
        InputError: an unreadable source, an invalid option or (unless ``skip_invalid``) an
            invalid row, named by file, row and field.
    """
    options = PairOptions(
        method=sampling_paired_method,
        length_penalty=length_penalty,
        length_unit=length_unit(tokenizer),
        margin_scale=margin_scale,
        margin_from=margin_from,
        seed=seed,
        min_margin=min_margin,
        keep_ties=keep_ties,
        tie_order=tie_order,
        pairs_per_prompt=pairs_per_prompt,
        max_length_ratio=max_length_ratio,
        max_length_diff=max_length_diff,
        key=key,
        skip_invalid=skip_invalid,
        provenance=provenance,
    )
    scored = open_scored(
        source, input_format=input_format, batch_size=batch_size, max_samples=max_samples
    )
    tables = []
    prompt_type: pa.DataType = pa.string()
    for paired, _ in pair_batches(scored, options, use_fast=use_fast):
        if paired.table.num_rows:
            tables.append(paired.table)
            prompt_type = paired.table.schema.field("prompt").type
    schema = pairs_schema(prompt_type, options.provenance)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    return to_dataset(as_conversational(table))
