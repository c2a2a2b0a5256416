"""Benchmark: ``dpov2 pair --engine ray`` on Parquet shards against the single-machine run.

The same generated dataset (1M prompts x 8 responses by default) is paired, Parquet to
Parquet, method ``random``; the Ray runs read it split into ``--shards`` Parquet files of
consecutive rows, and each is checked to write byte for byte the single-machine file.

- End to end, as a user runs the command (one subprocess each, wall time around it):
  ``dpov2 pair`` on the whole file, and ``dpov2 pair --engine ray`` with 1 and 2 workers on a
  Ray instance the command starts and stops (start-up included).
- On a running Ray instance (one subprocess that starts Ray, then pairs a small dataset so
  that the workers are up, then times each run with the Python API): ``write_pairs`` on the
  whole file, and ``write_pairs_on_ray`` with 1 and 2 workers, writing one file from the driver
  or, with ``output_shards``, one part per shard from the workers. This is the per-run cost on
  a cluster that is already there.

Every input is read once before its run (page cache). Datasets and shards go to ``--data``
(git-ignored ``bench-out/``) and are reused. Prints Markdown tables.

    python benches/bench_ray_pairing.py                    # 1M prompts
    python benches/bench_ray_pairing.py --prompts 20000    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_pair_dataset import ensure_dataset, measure, warm  # noqa: E402

WORKERS = (1, 2)


@dataclass
class Run:
    engine: str
    workers: str
    prompts: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.prompts / self.seconds


def main() -> int:
    args = parse_args()
    if args.steady_worker:
        return steady_worker(args)
    args.data.mkdir(parents=True, exist_ok=True)
    stem = f"scored-{args.prompts}x{args.responses}"
    whole = ensure_dataset(args.data / f"{stem}.parquet", args.prompts, args.responses)
    shards = split(whole, args.data / f"{stem}-{args.shards}-shards", args.shards)[0].parent
    split(whole, args.data / "scored-1000-shards", 1, rows=1000)

    pair = [sys.executable, "-m", "dpov2.cli", "pair", "--quiet", "--overwrite"]
    reference = args.data / "pairs-single.parquet"
    warm(whole)
    seconds, _ = measure([*pair, str(whole), str(reference)])
    end_to_end = [Run("single machine", "-", args.prompts, seconds)]
    for workers in WORKERS:
        out = args.data / f"pairs-ray-{workers}.parquet"
        for shard in shards.iterdir():
            warm(shard)
        command = [*pair, str(shards), str(out), "--engine", "ray", "--workers", str(workers)]
        seconds, _ = measure(command)
        end_to_end.append(Run("--engine ray", str(workers), args.prompts, seconds))
        check_same(out, reference)

    command = [sys.executable, __file__, "--steady-worker", "--data", str(args.data)]
    command += ["--prompts", str(args.prompts), "--responses", str(args.responses)]
    command += ["--shards", str(args.shards)]
    report = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    steady = [Run(**run) for run in json.loads(report.splitlines()[-1])]
    for workers in WORKERS:
        check_same(args.data / f"pairs-steady-{workers}.parquet", reference)
        parts = pq.read_table(args.data / f"pairs-steady-parts-{workers}")
        if not parts.equals(pq.read_table(reference)):
            raise SystemExit(f"the output shards of {workers} worker(s) differ from {reference}")
    print_tables(end_to_end, steady, args)
    return 0


def steady_worker(args: argparse.Namespace) -> int:
    """The runs on a running Ray instance; prints them as JSON on the last line."""
    import ray

    from dpov2.convert import PairOptions, write_pairs
    from dpov2.convert.ray_engine import write_pairs_on_ray
    from dpov2.formats import open_scored

    stem = f"scored-{args.prompts}x{args.responses}"
    whole = args.data / f"{stem}.parquet"
    shards = args.data / f"{stem}-{args.shards}-shards"
    options = PairOptions()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    tiny = args.data / "scored-1000-shards"
    write_pairs_on_ray(tiny, args.data / "pairs-tiny.parquet", options, overwrite=True)
    warm(whole)
    start = time.perf_counter()
    write_pairs(
        open_scored(whole), args.data / "pairs-steady-single.parquet", options, overwrite=True
    )
    runs = [Run("single machine", "-", args.prompts, time.perf_counter() - start)]
    for workers in WORKERS:
        for shard in shards.iterdir():
            warm(shard)
        out = args.data / f"pairs-steady-{workers}.parquet"
        start = time.perf_counter()
        write_pairs_on_ray(shards, out, options, workers=workers, overwrite=True)
        runs.append(Run("--engine ray", str(workers), args.prompts, time.perf_counter() - start))
    for workers in WORKERS:
        for shard in shards.iterdir():
            warm(shard)
        out = args.data / f"pairs-steady-parts-{workers}"
        start = time.perf_counter()
        write_pairs_on_ray(
            shards, out, options, workers=workers, overwrite=True, output_shards=True
        )
        seconds = time.perf_counter() - start
        runs.append(Run("--engine ray --output-shards", str(workers), args.prompts, seconds))
    ray.shutdown()
    print(json.dumps([run.__dict__ for run in runs]))
    return 0


def check_same(out: Path, reference: Path) -> None:
    if out.read_bytes() != reference.read_bytes():
        raise SystemExit(f"{out} differs from {reference}")


def split(whole: Path, folder: Path, n: int, rows: int | None = None) -> list[Path]:
    """The first ``rows`` (default: all) of ``whole`` as ``n`` Parquet files of consecutive
    rows, about equal in size (written once and reused)."""
    paths = [folder / f"part-{k:05d}.parquet" for k in range(n)]
    if all(p.exists() for p in paths):
        return paths
    folder.mkdir(exist_ok=True)
    source = pq.ParquetFile(whole)
    total = source.metadata.num_rows if rows is None else rows
    batches = source.iter_batches(batch_size=16_384)
    pending = pa.Table.from_batches([], schema=source.schema_arrow)
    for k, path in enumerate(paths):
        size = (k + 1) * total // n - k * total // n
        tmp = path.with_suffix(".partial")
        with pq.ParquetWriter(tmp, source.schema_arrow) as writer:
            while size > 0:
                if pending.num_rows == 0:
                    pending = pa.Table.from_batches([next(batches)])
                part = pending.slice(0, size)
                writer.write_table(part, row_group_size=65_536)
                pending, size = pending.slice(part.num_rows), size - part.num_rows
        tmp.rename(path)
    return paths


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--shards", type=int, default=8, help="Parquet files to split into")
    parser.add_argument("--data", type=Path, default=HERE.parent / "bench-out")
    parser.add_argument("--steady-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def print_tables(end_to_end: list[Run], steady: list[Run], args: argparse.Namespace) -> None:
    print(
        f"\nPairing {args.prompts:,} prompts x {args.responses} responses, Parquet to Parquet, "
        f"method random, {os.cpu_count()} cores; Ray reads {args.shards} Parquet shards; every "
        "output checked against the single-machine file (its bytes; its rows for output "
        "shards)\n"
    )
    print("| run | engine | workers | time (s) | prompts/s | time vs single machine |")
    print("|---|---|---:|---:|---:|---:|")
    for title, runs in (("end to end", end_to_end), ("Ray already running", steady)):
        single = runs[0]
        for run in runs:
            cells = [
                title,
                run.engine,
                run.workers,
                f"{run.seconds:,.1f}",
                f"{run.rate:,.0f}",
                f"{run.seconds / single.seconds:.2f}x",
            ]
            print("| " + " | ".join(cells) + " |")
    print()
    for title, runs in (("end to end", end_to_end), ("Ray already running", steady)):
        for engine in sorted({run.engine for run in runs} - {"single machine"}):
            one, two = (next(r for r in runs if (r.engine, r.workers) == (engine, w)) for w in "12")
            gain = one.seconds / two.seconds
            print(f"- {title}, {engine}: 2 workers have {gain:.2f}x the throughput of 1")


if __name__ == "__main__":
    sys.exit(main())
