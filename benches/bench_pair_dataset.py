"""Benchmark: pairing a whole scored dataset with ``dpov2 pair`` against DuckDB and polars.

The job is ``dpov2 pair IN OUT --method max_min --length-penalty P`` (0.0005 by default):
one (chosen, rejected, margin) pair per prompt, ties and prompts with fewer than two
responses dropped, rows in input order. Contenders, each in its own subprocess, wall time and
peak RSS from ``wait4``:

- ``dpov2 pair`` on JSON Lines, Parquet and LMFlow JSON inputs (the same dataset), rayon on
  ``--threads`` threads (its ``--threads``: parsing, selection and writing) plus the thread
  that reads the next batch while one is paired;
- what a user would write without dpov2: a DuckDB query (``duckdb_pairing.py``, ``SET
  threads``) and a polars lazy query (``polars_pairing.py``, ``POLARS_MAX_THREADS``), on JSON
  Lines and Parquet by default; ``--contender-inputs jsonl,parquet,json`` adds LMFlow JSON,
  which DuckDB reads only up to 4 GiB and polars only whole into memory;
- with ``--with-lmflow``, the LMFlow way, as ``DPOv2Aligner.convert_to_paired_dataset`` does
  it: ``json.load``, ``datasets.Dataset.from_list``, a Python loop over rows with NumPy's
  ``argmax``/``argmin`` of the penalised rewards, ``Dataset.from_list`` of the pairs (in
  memory, nothing written; it keeps ties, so its rows are not compared). It needs about 9x
  its file size in memory, so it runs on the first ``--lmflow-prompts`` prompts and its time
  is extrapolated per prompt (said in the table).

Every contender writes Parquet and JSON Lines. Before any figure is printed, every output is
read back with pyarrow and compared with the pairs of ``dpov2 pair`` on JSON Lines: the same
rows in the same order, prompt, chosen and rejected equal, margins exactly equal (or within
1e-12 relative, said in the table). A contender whose tool cannot read an input gets a row
saying why instead of figures. "vs fastest" is the time of the faster of DuckDB and polars
on the same input and output over this run's time: above 1x, this run is faster.

First, all three pair a small dataset full of ties (equal penalised rewards, equal maxima
and minima, prompts of 0 and 1 responses) and the rows are compared the same way: the
generated benchmark data has almost no ties. Those runs also time each contender's fixed
cost (interpreter start, imports), printed after the table: on small datasets it dominates.

Peak RSS: the kernel carries a parent's high-water mark into its children, so this process
keeps itself small (pyarrow loads only in its check and LMFlow workers) and prints its own
peak, the floor under every figure.

Datasets are generated once by ``make_scored_dataset.py`` into ``--data`` (git-ignored
``bench-out/`` by default) and reused; each input is read once before every run, so each
contender reads from the page cache. Prints a Markdown table and the goals.

    python benches/bench_pair_dataset.py                    # 1M prompts x 8 responses
    python benches/bench_pair_dataset.py --prompts 20000    # a smoke run
"""

from __future__ import annotations

# Only light modules here: this process must stay small (see measure()); NumPy, pyarrow and
# datasets are imported by the workers that need them.
import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

HERE = Path(__file__).resolve().parent
FORMATS = {"jsonl": "JSON Lines", "parquet": "Parquet", "json": "LMFlow JSON"}
OUTPUTS = ("parquet", "jsonl")
TOOLS = ("DuckDB", "polars")
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "margin")
MARGIN_RTOL = 1e-12
TIE_PROMPTS = 3000
# The goals set for dpov2 pair: 5x the faster of DuckDB and polars, 1 GB/s of JSON Lines in,
# LMFlow JSON and Parquet input within 1.2x the time of JSON Lines, peak RSS under 500 MB.
GOAL_VS_TOOLS = 5.0
GOAL_MB_PER_S = 1000.0
GOAL_VS_LMFLOW = 20.0
GOAL_INPUT_VS_JSONL = 1.2
GOAL_RSS_MB = 500.0


@dataclass
class Run:
    name: str
    input: str
    output: str
    threads: str
    prompts: int
    input_bytes: int
    seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    note: str = ""
    failed: bool = False

    @property
    def rate(self) -> float:
        return self.prompts / self.seconds

    @property
    def mb_per_s(self) -> float:
        """Megabytes of input per second."""
        return self.input_bytes / 1e6 / self.seconds


def main() -> int:
    args = parse_args()
    if args.lmflow_worker:
        return lmflow_worker(Path(args.lmflow_worker), args.length_penalty)
    if args.check_worker:
        return check_worker(*args.check_worker)
    data = args.data
    data.mkdir(parents=True, exist_ok=True)
    stem = f"scored-{args.prompts}x{args.responses}"
    inputs = {
        fmt: ensure_dataset(data / f"{stem}.{fmt}", args.prompts, args.responses) for fmt in FORMATS
    }

    tie_runs = check_ties(data / "ties.jsonl", args)
    reference = data / "pairs-reference.parquet"
    runs = [run_contender("dpov2 pair", inputs["jsonl"], reference, args)]
    pairs, _ = check(reference, reference, "dpov2 pair from JSON Lines")
    if not 0.99 * args.prompts <= pairs <= args.prompts:  # a few ties are dropped
        raise SystemExit(f"dpov2 pair wrote {pairs} pairs for {args.prompts} prompts")
    for fmt, path in inputs.items():
        names = ["dpov2 pair", *(TOOLS if fmt in args.contender_inputs else ())]
        for output in OUTPUTS:
            for name in names:
                if (name, fmt, output) == ("dpov2 pair", "jsonl", "parquet"):
                    continue  # the reference run
                out = data / f"pairs-{name.split()[0].lower()}-from-{fmt}.{output}"
                run = run_contender(name, path, out, args)
                if not run.failed:
                    _, run.note = check(reference, out, f"{name} from {FORMATS[fmt]}")
                    out.unlink()
                runs.append(run)
    reference.unlink()
    lmflow = run_lmflow(args) if args.with_lmflow else None
    print_table(runs, lmflow, args)
    costs = ", ".join(f"{run.name} {run.seconds:.2f} s" for run in tie_runs)
    size = tie_runs[0].input_bytes / 1e3
    print(
        f"\nFixed cost of a process (start-up, imports), as timed on the tie check ({size:,.0f} kB "
        f"of JSON Lines to Parquet, {TIE_PROMPTS:,} prompts, rows checked equal): {costs}."
    )
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nThis process peaked at {floor:,.0f} MB, a floor under every peak RSS above.")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=8)
    parser.add_argument("--length-penalty", type=float, default=0.0005)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="per contender (default: cores)"
    )
    parser.add_argument(
        "--contender-inputs",
        type=_formats,
        default=("jsonl", "parquet"),
        help="inputs DuckDB and polars run on, from jsonl,parquet,json (default: jsonl,parquet)",
    )
    parser.add_argument("--batch-size", type=int, help="dpov2 pair --batch-size (default: its own)")
    parser.add_argument("--with-lmflow", action="store_true", help="also time the LMFlow way")
    parser.add_argument("--lmflow-prompts", type=int, default=100_000, help="LMFlow subset")
    parser.add_argument("--data", type=Path, default=HERE.parent / "bench-out")
    parser.add_argument("--lmflow-worker", help=argparse.SUPPRESS)
    parser.add_argument("--check-worker", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args()


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown input format {', '.join(unknown)}; expected some of {','.join(FORMATS)}"
        )
    return names


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


def run_contender(name: str, source: Path, out: Path, args: argparse.Namespace) -> Run:
    """Times ``name`` pairing ``source`` into ``out``; only DuckDB and polars may fail (a tool
    that cannot read the input), which the returned run says."""
    penalty = ["--length-penalty", repr(args.length_penalty)]
    env = dict(os.environ)
    if name == "dpov2 pair":
        command = ["-m", "dpov2", "pair", str(source), str(out), "--method", "max_min"]
        command += [*penalty, "--quiet", "--overwrite"]
        if args.batch_size:
            command += ["--batch-size", str(args.batch_size)]
        command += ["--threads", str(args.threads)]
        threads = f"{args.threads} + 1 prefetch + 1 writer"
    else:
        script = HERE / f"{name.lower()}_pairing.py"
        command = [str(script), str(source), str(out), *penalty, "--threads", str(args.threads)]
        threads = str(args.threads)
    formats = FORMATS[source.suffix[1:]], FORMATS[out.suffix[1:]]
    run = Run(name, *formats, threads, args.prompts, source.stat().st_size)
    warm(source)
    code, seconds, rss, errors = measure([sys.executable, *command], env)
    if code != 0:
        if name == "dpov2 pair":
            raise SystemExit(f"{' '.join(command)} failed with exit code {code}:\n{errors}")
        run.failed = True
        run.note = f"failed (exit code {code}): {errors.splitlines()[-1] if errors else ''}"
        return run
    run.seconds, run.peak_rss_mb = seconds, rss
    return run


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, peak resident memory (MiB) and stderr of a subprocess.

    The kernel starts a child's high-water mark at its parent's (Python spawns with vfork,
    and exec keeps the mark), so the figure is at least this process's peak: this process
    stays small, and the main loop prints its peak as the floor.
    """
    start = time.perf_counter()
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE) as process:
        errors = process.stderr.read() if process.stderr else b""
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    text = errors.decode(errors="replace").strip()
    return process.returncode, seconds, usage.ru_maxrss / 1024, text  # Linux reports KiB


def warm(path: Path) -> None:
    """Reads the file once, so that the timed run reads it from the page cache."""
    with open(path, "rb", buffering=0) as file:
        while file.read(16 << 20):
            pass


def check(reference: Path, path: Path, what: str) -> tuple[int, str]:
    """The number of pairs in ``path``, and a note on its margins, after checking in a
    subprocess (see ``measure``) that its rows are those of ``reference``."""
    command = [sys.executable, __file__, "--check-worker", str(reference), str(path), what]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr.strip() or f"{' '.join(command)} failed")
    result = json.loads(done.stdout)
    return int(result["pairs"]), str(result["note"])


def check_worker(reference_path: str, path: str, what: str) -> int:
    """Prints ``{"pairs": N, "note": ...}`` for the file at ``path`` if its rows are those of
    ``reference_path`` (Parquet), else exits naming the first difference."""
    import pyarrow.parquet as pq

    schema = pairs_schema()
    reference = pq.read_table(reference_path).cast(schema)
    note = check_same_rows(reference, read_pairs(Path(path), schema), f"{what} ({path})")
    print(json.dumps({"pairs": reference.num_rows, "note": note}))
    return 0


def pairs_schema() -> pa.Schema:
    import pyarrow as pa

    strings = [pa.field(name, pa.large_string()) for name in PAIR_COLUMNS[:-1]]
    return pa.schema([*strings, pa.field(PAIR_COLUMNS[-1], pa.float64())])


def read_pairs(path: Path, schema: pa.Schema) -> pa.Table:
    """A pairs file, Parquet or JSON Lines, cast to ``schema`` after checking its columns."""
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:  # the schema given, so that no type is guessed; a missing field reads as nulls
        parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        table = pa_json.read_json(path, parse_options=parse)
    if tuple(table.column_names) != PAIR_COLUMNS:
        raise SystemExit(f"{path} has columns {table.column_names}, expected {PAIR_COLUMNS}")
    return table.cast(schema)


def check_same_rows(reference: pa.Table, table: pa.Table, what: str) -> str:
    """Raises ``SystemExit`` naming the first row and column where ``table`` differs from the
    reference pairs; returns a note when margins are equal only within ``MARGIN_RTOL``."""
    import numpy as np
    import pyarrow.compute as pc

    if table.num_rows != reference.num_rows:
        raise SystemExit(f"{what}: {table.num_rows} pairs, dpov2 wrote {reference.num_rows}")
    note = ""
    for column in PAIR_COLUMNS:
        expected, got = reference.column(column), table.column(column)
        if got.equals(expected):
            continue
        if column == "margin":
            diff = np.abs(got.to_numpy() - expected.to_numpy())
            scale = np.maximum(np.abs(got.to_numpy()), np.abs(expected.to_numpy()))
            worst = float(np.max(diff / np.where(scale == 0, 1.0, scale)))
            if worst <= MARGIN_RTOL:
                note = f"margins equal to {worst:.1e} relative, not exactly"
                continue
        row = int(pc.index(pc.equal(got, expected).fill_null(False), False).as_py())
        raise SystemExit(
            f"{what}: differs from dpov2's pairs first at row {row}, column {column}: "
            f"{got[row].as_py()!r} where dpov2 has {expected[row].as_py()!r}"
        )
    return note


def check_ties(path: Path, args: argparse.Namespace) -> list[Run]:
    """Runs dpov2, DuckDB and polars on a small dataset full of ties and checks the rows of
    the latter two against dpov2's: the generated benchmark data has almost none, so it alone
    would not show a contender that breaks ties differently. Returns the three runs, which
    time each contender's fixed cost."""
    rng = random.Random(7)
    # Distinct texts of few lengths (0, 2, 2, 2, 4, 4, 4, 4 code points): equal penalised
    # rewards abound, and no prompt has two copies of a text (dpov2 takes copies as one
    # candidate, which the queries do not model; the benchmark data has none either).
    texts = ["", "ab", "é🙂", "cd", "abcd", 'x\ny"', "wxyz", "🙂🙂🙂🙂"]
    with open(path, "w", encoding="utf-8") as file:
        for p in range(TIE_PROMPTS):
            output = [
                {"text": text, "score": rng.choice([0.0, 0.5, 1.0, 2.0])}
                for text in rng.sample(texts, rng.randint(0, 6))
            ]
            file.write(json.dumps({"input": f"prompt {p}", "output": output}) + "\n")
    tie_options = {"length_penalty": 0.25, "batch_size": None, "prompts": TIE_PROMPTS}
    tie_args = argparse.Namespace(**{**vars(args), **tie_options})
    out = path.with_name("ties-pairs.parquet")
    reference = path.with_name("ties-reference.parquet")
    runs = [run_contender("dpov2 pair", path, reference, tie_args)]
    for name in TOOLS:
        run = run_contender(name, path, out, tie_args)
        if run.failed:
            raise SystemExit(f"{name} failed on the tie check ({path}): {run.note}")
        check(reference, out, f"{name} on the tie check")
        runs.append(run)
    out.unlink()
    reference.unlink()
    return runs


def run_lmflow(args: argparse.Namespace) -> Run:
    lmflow_prompts = min(args.lmflow_prompts, args.prompts)
    path = ensure_dataset(
        args.data / f"scored-{lmflow_prompts}x{args.responses}.json", lmflow_prompts, args.responses
    )
    warm(path)
    command = [sys.executable, __file__, "--lmflow-worker", str(path)]
    command += ["--length-penalty", repr(args.length_penalty)]
    code, seconds, rss, errors = measure(command)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}:\n{errors}")
    note = "in memory; keeps ties, rows not compared"
    if lmflow_prompts < args.prompts:
        note += (
            f"; run on {lmflow_prompts:,} prompts: time extrapolated per prompt, RSS as measured"
        )
    return Run(
        "LMFlow way",
        "LMFlow JSON",
        "datasets.Dataset",
        "1",
        lmflow_prompts,
        path.stat().st_size,
        seconds,
        rss,
        note,
    )


def lmflow_worker(path: Path, length_penalty: float) -> int:
    """The LMFlow way, end to end, as LMFlow's DPOv2 aligner does it (max_min method)."""
    import datasets
    import numpy as np

    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    source = datasets.Dataset.from_list(data["instances"])
    del data
    margin_scale = 1.0
    instances = []
    for sample in source:
        lengths = [len(output["text"]) for output in sample["output"]]
        rewards = [
            o["score"] - length_penalty * n for o, n in zip(sample["output"], lengths, strict=True)
        ]
        chosen, rejected = int(np.argmax(rewards)), int(np.argmin(rewards))
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


def print_table(runs: list[Run], lmflow: Run | None, args: argparse.Namespace) -> None:
    print(
        f"\nPairing {args.prompts:,} prompts x {args.responses} responses ({os.cpu_count()} "
        f"cores; max_min, length penalty {args.length_penalty}); every output checked equal "
        "to dpov2's first\n"
    )
    header = [
        "contender",
        "input",
        "output",
        "threads",
        "time (s)",
        "input MB/s",
        "prompts/s",
        "vs fastest of DuckDB, polars",
        "peak RSS (MB)",
        "note",
    ]
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for run in [*runs, *([lmflow] if lmflow else [])]:
        if run.failed:
            cells = [run.name, run.input, run.output, run.threads, *["-"] * 5, run.note]
        else:
            best = fastest_tool(runs, run)
            cells = [
                run.name,
                run.input,
                run.output,
                run.threads,
                f"{args.prompts / run.rate:,.1f}",
                f"{run.mb_per_s:,.0f}",
                f"{run.rate:,.0f}",
                f"{best.seconds / run.seconds:.2f}x" if best else "-",
                f"{run.peak_rss_mb:,.0f}",
                run.note,
            ]
        print("| " + " | ".join(cells) + " |")
    print("\nGoals:")
    for text, met in goals(runs, lmflow):
        print(f"- {text}: {'met' if met else 'MISSED'}")


def fastest_tool(runs: list[Run], like: Run) -> Run | None:
    """The fastest DuckDB or polars run on the same input and output as ``like``, if any."""
    same = [
        run
        for run in runs
        if run.name in TOOLS
        and not run.failed
        and (run.input, run.output) == (like.input, like.output)
    ]
    return min(same, key=lambda run: run.seconds, default=None)


def goals(runs: list[Run], lmflow: Run | None) -> list[tuple[str, bool]]:
    dpov2 = {(run.input, run.output): run for run in runs if run.name == "dpov2 pair"}
    checks = []
    for (source, output), run in dpov2.items():
        best = fastest_tool(runs, run)
        if best is not None:
            speedup = best.seconds / run.seconds
            checks.append(
                (
                    f"{source} to {output}: dpov2 {speedup:.2f}x the speed of {best.name} (goal "
                    f">= {GOAL_VS_TOOLS:.0f}x)",
                    speedup >= GOAL_VS_TOOLS,
                )
            )
    for output in ("Parquet", "JSON Lines"):
        run = dpov2[("JSON Lines", output)]
        checks.append(
            (
                f"JSON Lines to {output}: dpov2 reads {run.mb_per_s:,.0f} MB/s (goal >= "
                f"{GOAL_MB_PER_S:,.0f} MB/s)",
                run.mb_per_s >= GOAL_MB_PER_S,
            )
        )
    if lmflow is not None:
        for source in ("JSON Lines", "Parquet"):
            speedup = dpov2[(source, "JSON Lines")].rate / lmflow.rate
            checks.append(
                (
                    f"{source}: dpov2 {speedup:.1f}x LMFlow's throughput (goal >= "
                    f"{GOAL_VS_LMFLOW:.0f}x)",
                    speedup >= GOAL_VS_LMFLOW,
                )
            )
    for source in ("LMFlow JSON", "Parquet"):
        for output in ("Parquet", "JSON Lines"):
            ratio = dpov2[(source, output)].seconds / dpov2[("JSON Lines", output)].seconds
            checks.append(
                (
                    f"dpov2 from {source} to {output}: {ratio:.2f}x the time from JSON Lines "
                    f"(goal <= {GOAL_INPUT_VS_JSONL:.1f}x)",
                    ratio <= GOAL_INPUT_VS_JSONL,
                )
            )
    peak = max(run.peak_rss_mb for run in dpov2.values())
    checks.append(
        (f"dpov2 peak RSS: {peak:,.0f} MB (goal < {GOAL_RSS_MB:,.0f} MB)", peak < GOAL_RSS_MB)
    )
    return checks


if __name__ == "__main__":
    sys.exit(main())
