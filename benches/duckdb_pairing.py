"""``dpov2 pair IN OUT --method max_min --length-penalty P`` as a DuckDB user would write it.

One SQL statement over the scored rows, with DuckDB's list functions and lambdas: per row the
penalised rewards ``r = score - P * length(text)`` (``length`` counts Unicode code points, as
Python's ``len`` does), the chosen response at the first position of ``list_max(r)``, the
rejected one at the first position of ``list_min(r)``. That is dpov2's max_min: when the
rewards are not all equal, the first minimum is never the best, so it is also the lowest index
among equal minima of the other responses; when they are all equal, dpov2 drops the tie, and
so does ``list_max(r) > list_min(r)``, which also drops prompts with fewer than two responses.
``margin`` is the raw chosen score minus the raw rejected score. A row-wise projection keeps
the input order (``preserve_insertion_order``, on by default) without a row number or a
``GROUP BY``, and streams.

Inputs: JSON Lines (``.jsonl``/``.ndjson``, ``read_json`` with the columns given), Parquet
(``read_parquet``), and LMFlow JSON (``.json``, ``{"type": ..., "instances": [...]}``) by
``unnest`` of ``instances``: DuckDB reads that file as one JSON value, which must fit
``maximum_object_size`` (at most 4 GiB - 1), so LMFlow files above that size are refused.
Output: Parquet (``.parquet``) or JSON Lines (``.jsonl``), columns prompt, chosen, rejected,
margin, in input order.

    python benches/duckdb_pairing.py scored.jsonl pairs.parquet --length-penalty 0.0005 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import duckdb

RESPONSE = "STRUCT(text VARCHAR, score DOUBLE)[]"
MAX_OBJECT_SIZE = 2**32 - 1  # read_json's maximum_object_size is a 32-bit unsigned integer

PAIRS = """
WITH scored AS (
    SELECT input, output, list_transform(output, lambda o: o.score - $penalty * length(o.text)) AS r
    FROM {source}
), picked AS (
    SELECT input, output,
           list_position(r, list_max(r)) AS best,
           list_position(r, list_min(r)) AS worst
    FROM scored
    WHERE list_max(r) > list_min(r)
)
SELECT input AS prompt,
       output[best].text AS chosen,
       output[worst].text AS rejected,
       output[best].score - output[worst].score AS margin
FROM picked
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help=".jsonl/.ndjson, .parquet or LMFlow .json")
    parser.add_argument("output", type=Path, help=".parquet or .jsonl")
    parser.add_argument("--length-penalty", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    source = source_sql(args.input)
    output_format = {".parquet": "parquet", ".jsonl": "json"}.get(args.output.suffix)
    if output_format is None:
        parser.error(f"{args.output}: expected a .parquet or .jsonl output")
    with duckdb.connect() as con:
        con.execute(f"SET threads = {args.threads}")
        query = PAIRS.format(source=source)
        con.execute(
            f"COPY ({query}) TO $out (FORMAT {output_format})",
            {"path": str(args.input), "penalty": args.length_penalty, "out": str(args.output)},
        )
    return 0


def source_sql(path: Path) -> str:
    """The scored rows (``input``, ``output``) of the file, read by its extension."""
    columns = f"columns = {{'input': 'VARCHAR', 'output': '{RESPONSE}'}}"
    suffix = path.suffix
    if suffix in (".jsonl", ".ndjson"):
        return f"read_json($path, format = 'newline_delimited', {columns})"
    if suffix in (".parquet", ".pq"):
        return "read_parquet($path)"
    if suffix == ".json":
        size = path.stat().st_size
        if size > MAX_OBJECT_SIZE:
            raise SystemExit(
                f"{path}: an LMFlow JSON file is one JSON object for DuckDB, and this one is "
                f"{size:,} bytes, over read_json's maximum_object_size limit of "
                f"{MAX_OBJECT_SIZE:,}; convert it to JSON Lines or Parquet"
            )
        instances = f"STRUCT(input VARCHAR, output {RESPONSE})[]"
        return (
            "(SELECT i.input, i.output FROM (SELECT unnest(instances) AS i FROM read_json($path, "
            f"format = 'unstructured', columns = {{'instances': '{instances}'}}, "
            f"maximum_object_size = {MAX_OBJECT_SIZE})))"
        )
    raise SystemExit(f"{path}: expected a .jsonl, .ndjson, .parquet or .json input")


if __name__ == "__main__":
    sys.exit(main())
