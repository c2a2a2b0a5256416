"""``dpov2 pair IN OUT --method max_min --length-penalty P`` as a polars user would write it.

A lazy query with polars' list expressions, run by the streaming engine (``sink_parquet`` /
``sink_ndjson``): per row the penalised rewards ``r = score - P * len_chars(text)``
(``len_chars`` counts Unicode code points, as Python's ``len`` does), the chosen response at
``r.list.arg_max()`` and the rejected one at ``r.list.arg_min()``, both the first of equal
extremes. That is dpov2's max_min: when the rewards are not all equal, the first minimum is
never the best, so it is also the lowest index among equal minima of the other responses;
when they are all equal, dpov2 drops the tie, and so does ``max(r) > min(r)``, which also
drops prompts with fewer than two responses. ``margin`` is the raw chosen score minus the raw
rejected score. Rows stay in input order (the sinks' ``maintain_order``, on by default).

Inputs: JSON Lines (``.jsonl``/``.ndjson``, ``scan_ndjson`` with the schema given), Parquet
(``scan_parquet``), and LMFlow JSON (``.json``, ``{"type": ..., "instances": [...]}``):
polars has no streaming reader for a JSON document, so ``read_json`` loads it whole and
``instances`` is exploded in memory. Output: Parquet (``.parquet``) or JSON Lines
(``.jsonl``), columns prompt, chosen, rejected, margin, in input order. ``--threads`` sets
``POLARS_MAX_THREADS``, which polars reads once, when it is imported.

    python benches/polars_pairing.py scored.jsonl pairs.parquet --length-penalty 0.0005 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help=".jsonl/.ndjson, .parquet or LMFlow .json")
    parser.add_argument("output", type=Path, help=".parquet or .jsonl")
    parser.add_argument("--length-penalty", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.output.suffix not in (".parquet", ".jsonl"):
        parser.error(f"{args.output}: expected a .parquet or .jsonl output")
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)
    import polars as pl

    if pl.thread_pool_size() != args.threads:
        raise SystemExit(
            f"polars runs {pl.thread_pool_size()} threads, not --threads {args.threads}: "
            "it was imported before POLARS_MAX_THREADS was set"
        )
    pairs = pair(scored_rows(args.input), args.length_penalty)
    if args.output.suffix == ".parquet":
        pairs.sink_parquet(args.output)
    else:
        pairs.sink_ndjson(args.output)
    return 0


def scored_rows(path: Path) -> pl.LazyFrame:
    """The scored rows (``input``, ``output``) of the file, read by its extension."""
    import polars as pl

    response = pl.Struct({"text": pl.String, "score": pl.Float64})
    schema = pl.Schema({"input": pl.String(), "output": pl.List(response)})
    suffix = path.suffix
    if suffix in (".jsonl", ".ndjson"):
        return pl.scan_ndjson(path, schema=schema)
    if suffix in (".parquet", ".pq"):
        return pl.scan_parquet(path)
    if suffix == ".json":
        document = pl.read_json(path, schema={"instances": pl.List(pl.Struct(schema))})
        return document.lazy().explode("instances").unnest("instances")
    raise SystemExit(f"{path}: expected a .jsonl, .ndjson, .parquet or .json input")


def pair(rows: pl.LazyFrame, length_penalty: float) -> pl.LazyFrame:
    """One max_min pair per row that has one, as (prompt, chosen, rejected, margin)."""
    import polars as pl

    response = pl.element().struct
    r = pl.col("output").list.eval(
        response.field("score") - length_penalty * response.field("text").str.len_chars()
    )
    best = pl.col("output").list.get(pl.col("r").list.arg_max())
    worst = pl.col("output").list.get(pl.col("r").list.arg_min())
    return (
        rows.with_columns(r=r)
        .filter(pl.col("r").list.max() > pl.col("r").list.min())
        .select(
            prompt=pl.col("input"),
            chosen=best.struct.field("text"),
            rejected=worst.struct.field("text"),
            margin=best.struct.field("score") - worst.struct.field("score"),
        )
    )


if __name__ == "__main__":
    sys.exit(main())
