"""Reading a scored Parquet file's ``input`` and ``output`` columns: dpov2's Rust reader
against pyarrow's.

One run, one machine, one file (by default the 1,000,000-prompt x 8-response dataset of
``bench_pair_dataset.py``, 1.96 GB of snappy-compressed Parquet), the batch size ``dpov2 pair``
reads it in, every contender timed in turn, ``--repeat`` times, the best time kept:

- pyarrow: ``ParquetFile.iter_batches`` (column chunks read through a 1 MiB buffer, as dpov2
  read them with pyarrow) on Arrow's CPU pool (``use_threads=True``, a thread per core), and on
  the calling thread only (``use_threads=False``); it does not check that strings are UTF-8;
- dpov2: ``_core.ParquetReader`` with each column's pages read and decompressed ahead in
  threads of their own (``num_threads=2``), and on the calling thread only (``num_threads=1``);
  it checks every string.

Before any figure is printed, every contender's batches are compared with pyarrow's, batch by
batch, in one pass that is not timed.

    python benches/bench_parquet_read.py                       # the 1M x 8 file
    python benches/bench_parquet_read.py scored.parquet --repeat 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dpov2 import _core
from dpov2.formats.instances import batch_rows

COLUMNS = ["input", "output"]
DEFAULT = Path("bench-out/scored-1000000x8.parquet")

Reader = Callable[[Path, int], Iterator[pa.RecordBatch]]


def pyarrow_reader(use_threads: bool) -> Reader:
    def read(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
        # As dpov2 read with pyarrow before: pre-buffering whole row groups was slower here.
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        yield from parquet.iter_batches(batch_size=rows, columns=COLUMNS, use_threads=use_threads)

    return read


def dpov2_reader(threads: int) -> Reader:
    def read(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
        reader = _core.ParquetReader(
            str(path), batch_rows=rows, columns=COLUMNS, num_threads=threads
        )
        while (item := reader.next_batch()) is not None:
            batch, not_utf8 = item
            assert not not_utf8, not_utf8
            yield pa.record_batch(batch)

    return read


CONTENDERS: dict[str, tuple[Reader, str]] = {
    "pyarrow, Arrow's pool": (pyarrow_reader(True), f"{pa.cpu_count()} (Arrow pool)"),
    "pyarrow, one thread": (pyarrow_reader(False), "1"),
    "dpov2, pages ahead": (dpov2_reader(2), "1 + 1 per column chunk"),
    "dpov2, one thread": (dpov2_reader(1), "1"),
}


def batch_size_of(path: Path) -> int:
    """The rows per batch ``dpov2 pair`` reads the file in (its default batch size)."""
    metadata = pq.ParquetFile(path).metadata
    data = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return batch_rows(8192, data / max(1, metadata.num_rows))


def check(path: Path, rows: int) -> None:
    """Every contender's batches equal pyarrow's (on Arrow's pool), one by one."""
    reference, _ = CONTENDERS["pyarrow, Arrow's pool"]
    for name, (read, _) in CONTENDERS.items():
        n = 0
        for i, (want, got) in enumerate(zip(reference(path, rows), read(path, rows), strict=True)):
            if not got.equals(want):
                raise SystemExit(f"{name}: batch {i} differs from pyarrow's")
            n += got.num_rows
        print(f"checked: {name} gives pyarrow's {n:,} rows", flush=True)


def timed(read: Reader, path: Path, rows: int) -> float:
    start = time.perf_counter()
    n = sum(batch.num_rows for batch in read(path, rows))
    elapsed = time.perf_counter() - start
    assert n == pq.ParquetFile(path).metadata.num_rows
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.path.exists():
        if args.path != DEFAULT:
            raise SystemExit(f"{args.path}: no such file")
        maker = Path(__file__).with_name("make_scored_dataset.py")
        size = ["--prompts", "1000000", "--responses", "8", "--seed", "1"]
        subprocess.run([sys.executable, str(maker), str(args.path), *size], check=True)
    rows = batch_size_of(args.path)
    size = args.path.stat().st_size
    n_rows = pq.ParquetFile(args.path).metadata.num_rows
    print(f"{args.path}: {size / 1e9:.2f} GB, {n_rows:,} rows, batches of {rows:,} rows")
    print(f"machine: {os.cpu_count()} CPUs; pyarrow {pa.__version__}")
    check(args.path, rows)
    best = {name: float("inf") for name in CONTENDERS}
    for _ in range(args.repeat):  # in turn, so that a slow spell of the machine hits all
        for name, (read, _) in CONTENDERS.items():
            best[name] = min(best[name], timed(read, args.path, rows))
    base = best["pyarrow, Arrow's pool"]
    print()
    print("| reader | threads | time (s) | file MB/s | rows/s | vs pyarrow (Arrow's pool) |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (_, threads) in CONTENDERS.items():
        t = best[name]
        print(
            f"| {name} | {threads} | {t:.2f} | {size / 1e6 / t:,.0f} | {n_rows / t:,.0f} "
            f"| {base / t:.2f}x |"
        )


if __name__ == "__main__":
    main()
