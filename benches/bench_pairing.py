"""Pair selection speed: the Rust core against the memory-bandwidth floor, NumPy and Python.

One run, one machine, the same arrays for every contender (1,000,000 prompts x 8 responses,
``int64`` lengths, a length penalty), so the ratios are comparable even on a noisy machine:

- read floor: ``np.sum`` of the scores and of the lengths, the time just to read the inputs
  once (what a one-pass selection cannot beat);
- the Rust core (``select_pairs``) on every thread ``resolve_threads()`` gives, and on one,
  for every method with one pair per prompt, and ``top_bottom`` with two;
- NumPy: whole-array NumPy with the same semantics (``numpy_pairing.py``), for the methods
  it implements;
- Python: the per-prompt reference on a sample of prompts, its time extrapolated.

Every contender's output is checked equal to the Rust path's before any figure is printed.
Then the goals of issues #13 and #10 are checked, each printed as met or not:

- ``all_pairs`` is output-bound: its time per output byte (``chosen`` and ``rejected``) is
  at most 3x that of the NumPy floor, which writes the same-sized index arrays with no
  selection (``np.triu_indices`` broadcast against the offsets: ``all_pairs_floor``);
- ``top_bottom`` with two pairs per prompt takes at most 1.5x the time of ``max_min``;
- (issue #10) each one-pair method (``random``, ``max_min``, ``max_max``, ``max_random``)
  on the default threads takes at most 2x the read floor's time: a one-pass selection
  should use at least half the memory bandwidth that merely reading its inputs does;
- with ``--before CORE`` (the ``_core`` extension built from an earlier commit), the
  one-pair methods are no slower than that core on the same arrays, the two timed in turn
  in the same run (whichever is timed later would otherwise gain from the allocator's
  state); its whole selection (statuses, pair offsets, pairs) is checked equal to today's.

Peak memory of the Rust path is measured in a fresh child process: the resident high-water
mark is reset (``/proc/self/clear_refs``) after the inputs are built, so what it reports is
the memory the selection itself added, to compare with the size of its outputs.

    python benches/bench_pairing.py                  # 1,000,000 prompts x 8 responses
    python benches/bench_pairing.py --prompts 20000  # a quick look
    python benches/bench_pairing.py --before OLD/_core.abi3.so  # also against an earlier build
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
from numpy_pairing import (  # beside this script, on sys.path when run
    NUMPY_METHODS,
    all_pairs_floor,
    select_pairs_numpy,
)

LENGTH_PENALTY = 1e-3


def variants(n_responses: int) -> list[tuple[str, int]]:
    """What is timed, as (method, pairs_per_prompt): every method with one pair per prompt,
    except ``all_pairs`` with all of them, and ``top_bottom`` also with two."""
    every = n_responses * (n_responses - 1) // 2
    one = [(method, every if method == "all_pairs" else 1) for method in METHODS]
    return [*one, ("top_bottom", 2)]


#: The methods with one pair per prompt: held to the read floor, and compared with an
#: earlier core (``--before``).
ONE_PAIR_METHODS = ("random", "max_min", "max_max", "max_random")
#: The goals' limits: all_pairs time per output byte over the NumPy floor's,
#: top_bottom (2 pairs) time over max_min's, and a one-pair method's time over the read
#: floor's.
ALL_PAIRS_LIMIT = 3.0
TOP_BOTTOM_LIMIT = 1.5
READ_FLOOR_LIMIT = 2.0


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


def timed_alternately(
    first: Callable[[], Any], second: Callable[[], Any], repeat: int
) -> tuple[float, float, Any]:
    """Best wall times of two runs timed in turn, and the second's last result: neither then
    profits from the allocator's state (a large free the other left) by coming later."""
    best_first = best_second = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        first()
        best_first = min(best_first, time.perf_counter() - start)
        start = time.perf_counter()
        result = second()
        best_second = min(best_second, time.perf_counter() - start)
    return best_first, best_second, result


def same(a: PairSelection, b: PairSelection) -> bool:
    return all(
        np.array_equal(getattr(a, field), getattr(b, field))
        for field in ("status", "pair_offsets", "chosen", "rejected")
    )


def prefix(sel: PairSelection, n: int) -> PairSelection:
    """The selection of the first ``n`` prompts."""
    end = int(sel.pair_offsets[n])
    return PairSelection(
        sel.status[:n], sel.pair_offsets[: n + 1], sel.chosen[:end], sel.rejected[:end]
    )


def out_bytes(sel: PairSelection) -> int:
    return sel.status.nbytes + sel.pair_offsets.nbytes + sel.chosen.nbytes + sel.rejected.nbytes


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_memory(n_prompts: int, n_responses: int, method: str, k: int) -> dict[str, float]:
    """In this (fresh) process: extra resident memory of one Rust selection, in MiB."""
    inputs = make_inputs(n_prompts, n_responses)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = rss_kib("VmRSS")
    sel = select_pairs(
        inputs["scores"],
        inputs["offsets"],
        method=method,
        pairs_per_prompt=k,
        lengths=inputs["lengths"],
        length_penalty=LENGTH_PENALTY,
    )
    peak = rss_kib("VmHWM")
    return {
        "input_mib": sum(a.nbytes for a in inputs.values()) / 2**20,
        "output_mib": out_bytes(sel) / 2**20,
        "extra_peak_mib": (peak - before) / 1024,
    }


def memory_in_child(args: argparse.Namespace, method: str, k: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--prompts", str(args.prompts)]
    command += ["--responses", str(args.responses), "--memory-child", f"{method}:{k}"]
    child = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(child.stdout)
    return result


def label(method: str, k: int) -> str:
    return method if k == 1 else f"{method} (k={k})"


def goal(text: str, met: bool) -> str:
    return f"- {text}: {'met' if met else 'NOT met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="runs of the fast contenders")
    parser.add_argument(
        "--python-sample", type=int, default=50_000, help="prompts the Python path runs on"
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="CORE",
        help="an earlier build's dpov2 _core extension (.so) to time the one-pair methods against",
    )
    parser.add_argument("--memory-child", metavar="METHOD:K", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        method, k = args.memory_child.split(":")
        print(json.dumps(measure_memory(args.prompts, args.responses, method, int(k))))
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
    rust_ms: dict[tuple[str, int], float] = {}
    all_pairs_sel: PairSelection | None = None
    every = args.responses * (args.responses - 1) // 2
    for method, k in variants(args.responses):
        run_kw: dict[str, Any] = {**common, "method": method, "pairs_per_prompt": k}
        t_rust, fast = timed(lambda kw=run_kw: select_pairs(scores, offsets, **kw), args.repeat)
        t_rust1, one = timed(
            lambda kw=run_kw: select_pairs(scores, offsets, num_threads=1, **kw), args.repeat
        )
        cut = int(offsets[sample])
        sampled = {**run_kw, "lengths": lengths[:cut]}
        t_python, ref = timed(
            lambda s=scores[:cut], o=offsets[: sample + 1], kw=sampled: select_pairs(
                s, o, use_fast=False, **kw
            ),
            1,
        )
        agree = same(fast, one) and same(prefix(fast, sample), ref)
        contenders = [
            ("read floor (np.sum of scores and lengths)", 1, t_floor),
            ("Rust select_pairs", threads, t_rust),
            ("Rust select_pairs", 1, t_rust1),
        ]
        if method in NUMPY_METHODS and k == 1:
            t_numpy, vec = timed(
                lambda m=method: select_pairs_numpy(scores, offsets, method=m, **common),
                args.repeat,
            )
            agree = agree and same(fast, vec)
            contenders.append(("NumPy vectorised", 1, t_numpy))
        if not agree:
            raise SystemExit(
                f"{label(method, k)}: the contenders disagree; timings would be meaningless"
            )
        contenders.append(
            (f"Python per-prompt ({sample:,} prompts, extrapolated)", 1, t_python * n / sample)
        )
        rust_ms[method, k] = t_rust * 1e3
        if method == "all_pairs":
            all_pairs_sel = fast
        rows.append((label(method, k), contenders, memory_in_child(args, method, k)))
    assert all_pairs_sel is not None
    t_np_floor, (floor_c, floor_r) = timed(lambda: all_pairs_floor(offsets), args.repeat)

    print("| method | contender | threads | prompts/s | time (ms) | time vs Rust |")
    print("|---|---|---:|---:|---:|---:|")
    for name, contenders, _ in rows:
        t_ref = contenders[1][2]
        for contender, count, t in contenders:
            print(
                f"| {name} | {contender} | {count} | {n / t:,.0f} | {t * 1e3:,.1f} "
                f"| {t / t_ref:,.2f}x |"
            )
    print("\n| method | Rust extra peak RSS (MiB) | outputs (MiB) |")
    print("|---|---:|---:|")
    for name, _, memory in rows:
        print(f"| {name} | {memory['extra_peak_mib']:.1f} | {memory['output_mib']:.1f} |")
    print(
        f"\ninputs: {rows[0][2]['input_mib']:.0f} MiB (scores float64, lengths and offsets int64)"
    )

    # Goals (issues #13 and #10).
    t_all = rust_ms["all_pairs", every]
    ours_bytes = all_pairs_sel.chosen.nbytes + all_pairs_sel.rejected.nbytes
    floor_bytes = floor_c.nbytes + floor_r.nbytes
    ours_ns = t_all * 1e6 / ours_bytes
    floor_ns = t_np_floor * 1e9 / floor_bytes
    per_byte = ours_ns / floor_ns
    tb_ratio = rust_ms["top_bottom", 2] / rust_ms["max_min", 1]
    print(f"\nGoals ({threads} Rust threads, NumPy 1):")
    print(
        goal(
            f"all_pairs: {len(all_pairs_sel.chosen):,} pairs in {t_all:,.1f} ms,"
            f" {ours_ns:.3f} ns per output byte; NumPy floor (np.triu_indices broadcast,"
            f" {len(floor_c):,} pairs) {t_np_floor * 1e3:,.1f} ms, {floor_ns:.3f} ns per byte;"
            f" ratio {per_byte:.2f}x (goal <= {ALL_PAIRS_LIMIT:g}x)",
            per_byte <= ALL_PAIRS_LIMIT,
        )
    )
    print(
        goal(
            f"top_bottom (k=2) {rust_ms['top_bottom', 2]:,.1f} ms vs max_min"
            f" {rust_ms['max_min', 1]:,.1f} ms: {tb_ratio:.2f}x (goal <= {TOP_BOTTOM_LIMIT:g}x)",
            tb_ratio <= TOP_BOTTOM_LIMIT,
        )
    )
    floor_ms = t_floor * 1e3
    for method in ONE_PAIR_METHODS:
        ratio = rust_ms[method, 1] / floor_ms
        print(
            goal(
                f"{method} ({threads} threads) {rust_ms[method, 1]:,.1f} ms vs the read floor"
                f" (1 thread) {floor_ms:,.1f} ms: {ratio:.2f}x (goal <= {READ_FLOOR_LIMIT:g}x)",
                ratio <= READ_FLOOR_LIMIT,
            )
        )
    if args.before is None:
        print("- one-pair methods against an earlier core: not run (give --before CORE)")
        return
    before = load_core(args.before)
    for method in ONE_PAIR_METHODS:
        old_kw = {**common, "method": method, "first_key": 0, "keep_ties": False}
        t_now, t_old, was_selected = timed_alternately(
            lambda m=method: select_pairs(scores, offsets, **common, method=m),
            lambda kw=old_kw: before.select_pairs(scores, offsets, num_threads=threads, **kw),
            args.repeat,
        )
        now = select_pairs(scores, offsets, **common, method=method)
        if not same(now, PairSelection(*was_selected)):
            raise SystemExit(f"{method}: the earlier core paired some prompt differently")
        took, was = t_now * 1e3, t_old * 1e3
        print(
            goal(
                f"{method}: {took:,.1f} ms vs the earlier core's {was:,.1f} ms on the same"
                f" arrays, timed in turn ({took / was:.2f}x; goal <= 1x)",
                took <= was,
            )
        )


def load_core(path: Path) -> Any:
    """An earlier build of the ``_core`` extension, loaded beside today's under another name
    (its init function is ``PyInit__core``, so the module is named ``_core``)."""
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("_core", str(path))
    spec = importlib.util.spec_from_file_location("_core", str(path), loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
