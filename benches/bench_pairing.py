"""Pair selection speed: per-prompt Python vs vectorised NumPy vs the Rust core.

One run, one machine, the same arrays for every contender, so the ratios are comparable even
on a noisy machine. Every contender's output is checked equal to the Rust path's before its
time counts. Peak memory of the Rust path is measured in a fresh child process: the resident
high-water mark is reset (``/proc/self/clear_refs``) after the inputs are built, so what it
reports is the memory the selection itself added, to compare with the size of its outputs.

    python benches/bench_pairing.py                 # 1,000,000 prompts x 8 responses
    python benches/bench_pairing.py --prompts 20000 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dpov2 import METHODS, PairSelection, select_pairs
from numpy_pairing import select_pairs_numpy  # beside this script, on sys.path when run

LENGTH_PENALTY = 1e-3


def make_inputs(n_prompts: int, n_responses: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores ~ N(0, 1) rounded to 2 decimals (so ties happen, as with real reward models),
    lengths 10..2000 characters, every prompt with ``n_responses`` responses."""
    rng = np.random.default_rng(seed)
    n = n_prompts * n_responses
    return {
        "scores": np.round(rng.standard_normal(n), 2),
        "lengths": rng.integers(10, 2000, n).astype(np.float64),
        "offsets": np.arange(0, n + 1, n_responses, dtype=np.int64),
    }


def timed(run: Callable[[], PairSelection], repeat: int) -> tuple[float, PairSelection]:
    """Best wall time of ``repeat`` runs, and the last result."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def same(a: PairSelection, b: PairSelection) -> bool:
    return bool(
        np.array_equal(a.chosen, b.chosen)
        and np.array_equal(a.rejected, b.rejected)
        and np.array_equal(a.status, b.status)
    )


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(n_prompts: int, n_responses: int, method: str) -> dict[str, float]:
    """In this (fresh) process: extra resident memory of one Rust selection, in MiB."""
    inputs = make_inputs(n_prompts, n_responses)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_kib("VmRSS")
    sel = select_pairs(
        inputs["scores"],
        inputs["offsets"],
        method=method,
        lengths=inputs["lengths"],
        length_penalty=LENGTH_PENALTY,
    )
    peak = rss_kib("VmHWM")
    out_bytes = sel.chosen.nbytes + sel.rejected.nbytes + sel.status.nbytes
    return {
        "input_mib": sum(a.nbytes for a in inputs.values()) / 2**20,
        "output_mib": out_bytes / 2**20,
        "extra_peak_mib": (peak - before) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the fast contenders")
    parser.add_argument("--memory-child", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(measure_memory(args.prompts, args.responses, args.memory_child)))
        return

    inputs = make_inputs(args.prompts, args.responses)
    common = dict(lengths=inputs["lengths"], length_penalty=LENGTH_PENALTY, seed=42)
    scores, offsets = inputs["scores"], inputs["offsets"]
    print(
        f"{args.prompts:,} prompts x {args.responses} responses, length_penalty={LENGTH_PENALTY},"
        f" {os.cpu_count()} cores\n"
    )
    rows = []
    for method in METHODS:
        t_rust, fast = timed(
            lambda m=method: select_pairs(scores, offsets, method=m, **common), args.repeat
        )
        t_numpy, vec = timed(
            lambda m=method: select_pairs_numpy(scores, offsets, method=m, **common), args.repeat
        )
        t_python, ref = timed(
            lambda m=method: select_pairs(scores, offsets, method=m, use_fast=False, **common), 1
        )
        if not (same(fast, vec) and same(fast, ref)):
            raise SystemExit(f"{method}: the three paths disagree; timings would be meaningless")
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--prompts",
                str(args.prompts),
                "--responses",
                str(args.responses),
                "--memory-child",
                method,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        memory = json.loads(child.stdout)
        rows.append((method, t_python, t_numpy, t_rust, memory))

    n = args.prompts
    print(
        "| method | Python per-prompt (prompts/s) | NumPy vectorised (prompts/s) "
        "| Rust (prompts/s) | Rust / Python | Rust / NumPy "
        "| Rust extra peak RSS (MiB) | outputs (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for method, t_python, t_numpy, t_rust, memory in rows:
        print(
            f"| {method} | {n / t_python:,.0f} | {n / t_numpy:,.0f} | {n / t_rust:,.0f} "
            f"| {t_python / t_rust:,.0f}x | {t_numpy / t_rust:,.1f}x "
            f"| {memory['extra_peak_mib']:.1f} | {memory['output_mib']:.1f} |"
        )
    print(
        f"\ninputs: {rows[0][4]['input_mib']:.0f} MiB (scores, lengths as float64; offsets int64)"
    )


if __name__ == "__main__":
    main()
