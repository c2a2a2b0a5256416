"""Benchmark: pairing a whole scored dataset with ``dpov2 pair`` against the LMFlow way.

Contenders, each in its own subprocess (wall time and peak RSS from ``wait4``):

- ``dpov2 pair`` on JSON Lines, Parquet and LMFlow JSON inputs (the same 1M-prompt dataset),
  writing JSON Lines;
- the LMFlow way, as ``DPOv2Aligner.convert_to_paired_dataset`` does it: ``json.load`` the
  LMFlow file, ``datasets.Dataset.from_list``, a Python loop over rows computing lengths,
  penalised rewards and a ``random`` pair with NumPy, then ``Dataset.from_list`` of the pairs.
  It keeps everything in memory (about 45 GB for 1M prompts), so it runs on the first
  ``--lmflow-prompts`` prompts and its time is extrapolated per prompt (said in the table).

Datasets are generated once by ``make_scored_dataset.py`` into ``--data`` (git-ignored
``bench-out/`` by default) and reused; each input is read once before its run, so every
contender reads from the page cache. Prints a Markdown table and the goals.

    python benches/bench_pair_dataset.py                    # 1M prompts x 8 responses
    python benches/bench_pair_dataset.py --prompts 20000    # a smoke run
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

HERE = Path(__file__).resolve().parent
GOAL_SPEEDUP = 20.0
GOAL_JSON_VS_JSONL = 2.0
GOAL_RSS_MB = 2048.0


@dataclass
class Run:
    name: str
    input: str
    prompts: int
    seconds: float
    peak_rss_mb: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.prompts / self.seconds


def main() -> int:
    args = parse_args()
    if args.lmflow_worker:
        return lmflow_worker(Path(args.lmflow_worker))
    data = args.data
    data.mkdir(parents=True, exist_ok=True)
    stem = f"scored-{args.prompts}x{args.responses}"
    inputs = {
        fmt: ensure_dataset(data / f"{stem}.{fmt}", args.prompts, args.responses)
        for fmt in ("jsonl", "parquet", "json")
    }
    lmflow_prompts = min(args.lmflow_prompts, args.prompts)
    lmflow_input = ensure_dataset(
        data / f"scored-{lmflow_prompts}x{args.responses}.json", lmflow_prompts, args.responses
    )

    runs = []
    for fmt, path in inputs.items():
        out = data / f"pairs-from-{fmt}.jsonl"
        command = [
            sys.executable,
            "-m",
            "dpov2.cli",
            "pair",
            str(path),
            str(out),
            "--quiet",
            "--overwrite",
        ]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        warm(path)
        seconds, rss = measure(command)
        with open(out, "rb") as file:
            written = sum(1 for _ in file)
        if not 0.99 * args.prompts <= written <= args.prompts:  # a few ties are dropped
            raise SystemExit(f"dpov2 pair wrote {written} pairs for {args.prompts} prompts")
        out.unlink()
        runs.append(Run("dpov2 pair", fmt_name(fmt), args.prompts, seconds, rss))
    warm(lmflow_input)
    seconds, rss = measure([sys.executable, __file__, "--lmflow-worker", str(lmflow_input)])
    note = ""
    if lmflow_prompts < args.prompts:
        note = f"run on {lmflow_prompts:,} prompts: time extrapolated per prompt, RSS as measured"
    lmflow = Run("LMFlow way", "LMFlow JSON", lmflow_prompts, seconds, rss, note)

    print_table(runs, lmflow, args)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--lmflow-prompts", type=int, default=100_000, help="LMFlow subset")
    parser.add_argument("--batch-size", type=int, help="dpov2 pair --batch-size (default: its own)")
    parser.add_argument("--data", type=Path, default=HERE.parent / "bench-out")
    parser.add_argument("--lmflow-worker", help=argparse.SUPPRESS)
    return parser.parse_args()


def fmt_name(fmt: str) -> str:
    return {"jsonl": "JSON Lines", "parquet": "Parquet", "json": "LMFlow JSON"}[fmt]


def ensure_dataset(path: Path, prompts: int, responses: int) -> Path:
    """Generates the dataset unless a previous run left it there."""
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                str(HERE / "make_scored_dataset.py"),
                str(path),
                "--prompts",
                str(prompts),
                "--responses",
                str(responses),
                "--seed",
                "1",
            ],
            check=True,
        )
    return path


def warm(path: Path) -> None:
    """Reads the file once, so that the timed run reads it from the page cache."""
    with open(path, "rb", buffering=0) as file:
        while file.read(16 << 20):
            pass


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of a subprocess."""
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def lmflow_worker(path: Path) -> int:
    """The LMFlow way, end to end, as LMFlow's DPOv2 aligner does it (random method)."""
    import datasets
    import numpy as np

    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    source = datasets.Dataset.from_list(data["instances"])
    del data
    length_penalty, margin_scale = 0.0, 1.0
    instances = []
    for sample in source:
        lengths = [len(output["text"]) for output in sample["output"]]
        rewards = [
            o["score"] - length_penalty * n for o, n in zip(sample["output"], lengths, strict=True)
        ]
        idx_0, idx_1 = np.random.choice(len(rewards), size=2, replace=False)
        chosen, rejected = (idx_0, idx_1) if rewards[idx_0] > rewards[idx_1] else (idx_1, idx_0)
        instances.append(
            {
                "prompt": sample["input"],
                "chosen": sample["output"][chosen]["text"],
                "rejected": sample["output"][rejected]["text"],
                "margin": (sample["output"][chosen]["score"] - sample["output"][rejected]["score"])
                * margin_scale,
            }
        )
    paired = datasets.Dataset.from_list(instances)
    assert len(paired) == len(source)
    return 0


def print_table(runs: list[Run], lmflow: Run, args: argparse.Namespace) -> None:
    print(
        f"\nPairing {args.prompts:,} prompts x {args.responses} responses "
        f"({os.cpu_count()} cores; method random; output JSON Lines)\n"
    )
    header = ["contender", "input", "prompts/s", "time (s)", "vs LMFlow", "peak RSS (MB)", "note"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---:|---:|---:|---:|---|")
    for run in [*runs, lmflow]:
        cells = [
            run.name,
            run.input,
            f"{run.rate:,.0f}",
            f"{args.prompts / run.rate:,.1f}",
            f"{run.rate / lmflow.rate:.1f}x",
            f"{run.peak_rss_mb:,.0f}",
            run.note,
        ]
        print("| " + " | ".join(cells) + " |")
    by_input = {run.input: run for run in runs}
    checks = [
        (
            f"{name}: {by_input[name].rate / lmflow.rate:.1f}x LMFlow's throughput (goal >= "
            f"{GOAL_SPEEDUP:.0f}x)",
            by_input[name].rate / lmflow.rate >= GOAL_SPEEDUP,
        )
        for name in ("JSON Lines", "Parquet")
    ]
    ratio = by_input["JSON Lines"].rate / by_input["LMFlow JSON"].rate
    checks.append(
        (
            f"LMFlow JSON: {ratio:.2f}x the time of JSON Lines (goal <= {GOAL_JSON_VS_JSONL:.0f}x)",
            ratio <= GOAL_JSON_VS_JSONL,
        )
    )
    peak = max(run.peak_rss_mb for run in runs)
    checks.append(
        (f"dpov2 peak RSS: {peak:,.0f} MB (goal < {GOAL_RSS_MB:,.0f} MB)", peak < GOAL_RSS_MB)
    )
    print("\nGoals:")
    for text, met in checks:
        print(f"- {text}: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
