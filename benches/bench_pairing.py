"""Pair selection speed: the Rust core against the memory-bandwidth floor, NumPy and Python.

One run, one machine, the same arrays for every contender (1,000,000 prompts x 8 responses,
``int64`` lengths, a length penalty), so the ratios are comparable even on a noisy machine:

- read floor: ``np.sum`` of the scores and of the lengths, the time just to read the inputs
  once (what a one-pass selection cannot beat);
- the Rust core (``select_pairs``) on every thread ``resolve_threads()`` gives, and on one;
- NumPy: whole-array NumPy with the same semantics (``numpy_pairing.py``);
- Python: the per-prompt reference on a sample of prompts, its time extrapolated.

Every contender's output is checked equal to the Rust path's before any figure is printed.
Peak memory of the Rust path is measured in a fresh child process: the resident high-water
mark is reset (``/proc/self/clear_refs``) after the inputs are built, so what it reports is
the memory the selection itself added, to compare with the size of its outputs.

    python benches/bench_pairing.py                  # 1,000,000 prompts x 8 responses
    python benches/bench_pairing.py --prompts 20000  # a quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dpov2 import METHODS, PairSelection, select_pairs
from dpov2.threads import resolve_threads
from numpy_pairing import select_pairs_numpy  # beside this script, on sys.path when run

LENGTH_PENALTY = 1e-3


def make_inputs(n_prompts: int, n_responses: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores ~ N(0, 1) rounded to 2 decimals (so ties happen, as with real reward models),
    ``int64`` lengths 10..2000 characters, every prompt with ``n_responses`` responses."""
    rng = np.random.default_rng(seed)
    n = n_prompts * n_responses
    return {
        "scores": np.round(rng.standard_normal(n), 2),
        "lengths": rng.integers(10, 2000, n, dtype=np.int64),
        "offsets": np.arange(0, n + 1, n_responses, dtype=np.int64),
    }


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
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


def prefix(sel: PairSelection, n: int) -> PairSelection:
    return PairSelection(sel.chosen[:n], sel.rejected[:n], sel.status[:n])


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


def memory_in_child(args: argparse.Namespace, method: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--prompts", str(args.prompts)]
    command += ["--responses", str(args.responses), "--memory-child", method]
    child = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(child.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the fast contenders")
    parser.add_argument(
        "--python-sample", type=int, default=50_000, help="prompts the Python path runs on"
    )
    parser.add_argument("--memory-child", metavar="METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(measure_memory(args.prompts, args.responses, args.memory_child)))
        return

    inputs = make_inputs(args.prompts, args.responses)
    scores, lengths, offsets = inputs["scores"], inputs["lengths"], inputs["offsets"]
    common: dict[str, Any] = dict(lengths=lengths, length_penalty=LENGTH_PENALTY, seed=42)
    n, sample = args.prompts, min(args.python_sample, args.prompts)
    threads = resolve_threads(None)
    print(
        f"{n:,} prompts x {args.responses} responses, int64 lengths, "
        f"length_penalty={LENGTH_PENALTY}; Rust default threads: {threads}\n"
    )
    t_floor, _ = timed(lambda: (np.sum(scores), np.sum(lengths)), args.repeat)
    rows = []
    for method in METHODS:
        t_rust, fast = timed(
            lambda m=method: select_pairs(scores, offsets, method=m, **common), args.repeat
        )
        t_rust1, one = timed(
            lambda m=method: select_pairs(scores, offsets, method=m, num_threads=1, **common),
            args.repeat,
        )
        t_numpy, vec = timed(
            lambda m=method: select_pairs_numpy(scores, offsets, method=m, **common), args.repeat
        )
        cut = args.responses * sample
        sampled = {**common, "lengths": lengths[:cut]}
        t_python, ref = timed(
            lambda m=method, s=scores[:cut], o=offsets[: sample + 1], kw=sampled: select_pairs(
                s, o, method=m, use_fast=False, **kw
            ),
            1,
        )
        if not (same(fast, one) and same(fast, vec) and same(prefix(fast, sample), ref)):
            raise SystemExit(f"{method}: the contenders disagree; timings would be meaningless")
        contenders = [
            ("read floor (np.sum of scores and lengths)", 1, t_floor),
            ("Rust select_pairs", threads, t_rust),
            ("Rust select_pairs", 1, t_rust1),
            ("NumPy vectorised", 1, t_numpy),
            (f"Python per-prompt ({sample:,} prompts, extrapolated)", 1, t_python * n / sample),
        ]
        rows.append((method, contenders, memory_in_child(args, method)))

    print("| method | contender | threads | prompts/s | time (ms) | time vs Rust |")
    print("|---|---|---:|---:|---:|---:|")
    for method, contenders, _ in rows:
        t_ref = contenders[1][2]
        for name, count, t in contenders:
            print(
                f"| {method} | {name} | {count} | {n / t:,.0f} | {t * 1e3:,.1f} "
                f"| {t / t_ref:,.2f}x |"
            )
    print("\n| method | Rust extra peak RSS (MiB) | outputs (MiB) |")
    print("|---|---:|---:|")
    for method, _, memory in rows:
        print(f"| {method} | {memory['extra_peak_mib']:.1f} | {memory['output_mib']:.1f} |")
    print(
        f"\ninputs: {rows[0][2]['input_mib']:.0f} MiB (scores float64, lengths and offsets int64)"
    )


if __name__ == "__main__":
    main()
