"""Fuzzing every reader: random bytes and mutations of valid files, in every input format.

Hypothesis draws a batch of files (random bytes, or a valid file truncated, with flipped
bytes, deep nesting, invalid UTF-8 or huge numbers spliced in); a fresh subprocess reads each
through ``dpov2.formats.open_scored`` and ``dpov2.formats.kinds.dataset_type``/``read_pairs``,
so a segfault or a hang is a failure naming the file, not a dead pytest. Asserted: no crash,
no exception but ``InputError`` escapes, every accepted row is valid UTF-8 and every accepted
score finite.

``DPOV2_FUZZ_EXAMPLES`` sets the number of batches (default 5: about half a minute);
``make fuzz`` runs many more. The fixed cases at the end are classes the random search meets
only rarely (20,000-deep nesting, invalid UTF-8, numbers beyond float64, a junk first line),
each of which broke one of the JSON readers that the one Rust reader replaced, and Parquet
files (``tests/data/parquet``) on which arrow-rs panicked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("DPOV2_FUZZ_EXAMPLES", "5"))
FILES_PER_BATCH = 12
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "python")}

# Run in the subprocess: reads every file named on stdin (one JSON [path, format] a line),
# printing "START path" before and one JSON verdict after each.
READER = r"""
import json, math, sys
from dpov2.errors import InputError
from dpov2.formats import open_scored
from dpov2.formats.instances import scored_row_problem
from dpov2.formats.kinds import dataset_type, read_pairs
from dpov2.formats.parquet import parquet_tables
from pathlib import Path

def check_scored(path, fmt):
    source = open_scored(path, input_format=fmt, batch_size=7)
    for batch in source.batches:
        for i, row in enumerate(batch.table.to_pylist()):  # decodes every string
            if i in batch.problems or scored_row_problem(row) is not None:
                continue
            for response in row["output"]:
                if not math.isfinite(response["score"]):
                    return f"row {batch.first_row + i}: accepted score {response['score']}"
    return None

def check_pairs(path):
    pairs = read_pairs(path)
    for row in pairs.to_list():
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # strings are valid UTF-8
    return None

for line in sys.stdin:
    path, fmt = json.loads(line)
    print("START", path, flush=True)
    verdict = {"path": path, "problem": None}
    for step in ("open_scored", "all_columns", "dataset_type"):
        try:
            if step == "open_scored":
                verdict["problem"] = check_scored(path, fmt)
            elif step == "all_columns":  # every column, as paired Parquet files are read
                if fmt == "parquet":
                    list(parquet_tables(Path(path)))
            elif dataset_type(path) == "paired_text_to_text":
                verdict["problem"] = check_pairs(path)
        except InputError:
            pass
        except BaseException as err:
            verdict["problem"] = f"{step}: {type(err).__name__}: {str(err)[:300]}"
        if verdict["problem"]:
            break
    print("VERDICT", json.dumps(verdict), flush=True)
"""

SCORED_ROWS = [
    {"input": f"prompt {i}", "output": [{"text": f"r{i}.{k}", "score": 0.5 * k} for k in range(3)]}
    for i in range(4)
]
PAIRED_ROWS = [
    {
        "prompt": "p",
        "chosen": "a",
        "rejected": "b",
        "margin": 1.0,
        "chosen_index": 2,
        "ref_logps_tag": "t",
    }
] * 3


def _valid_files() -> dict[str, tuple[str, bytes]]:
    """Valid files of every format, as (format, bytes), to mutate."""
    jsonl = "".join(json.dumps(r) + "\n" for r in SCORED_ROWS).encode()
    lmflow = json.dumps({"type": "text_to_scored_textlist", "instances": SCORED_ROWS}).encode()
    paired = "".join(json.dumps(r) + "\n" for r in PAIRED_ROWS).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(SCORED_ROWS), sink)
    return {
        "scored.jsonl": ("jsonl", jsonl),
        "scored.json": ("json", lmflow),
        "paired.jsonl": ("jsonl", paired),
        "scored.parquet": ("parquet", sink.getvalue().to_pybytes()),
    }


VALID = _valid_files()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(file name, format, content): random bytes, or a valid file mutated."""
    name = draw(st.sampled_from(sorted(VALID)))
    fmt, data = VALID[name]
    kind = draw(st.sampled_from(["random", "truncate", "flip", "nest", "utf8", "number"]))
    if kind == "random":
        return name, fmt, draw(st.binary(min_size=1, max_size=300))
    if kind == "truncate":
        return name, fmt, data[: draw(st.integers(1, max(1, len(data) - 1)))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(out) - 1))
            out[at] = draw(st.integers(0, 255))
        return name, fmt, bytes(out)
    if fmt == "parquet":  # the textual mutations need text: use the JSON Lines file
        name, fmt, data = "scored.jsonl", *VALID["scored.jsonl"]
    if kind == "nest":  # moderately deep: the 20,000-deep case is a fixed test below
        depth = draw(st.integers(10, 2_000))
        splice = b"[" * depth + b"1" + b"]" * depth
        return name, fmt, data.replace(b"0.5", splice, 1)
    if kind == "utf8":
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return name, fmt, data.replace(b'"r', b'"' + junk + b"r", draw(st.integers(1, 3)))
    number = draw(st.sampled_from([b"1e400", b"-1e400", b"123456789" * 40, b"1e-400", b"NaN"]))
    return name, fmt, data.replace(b"0.5", number, draw(st.integers(1, 3)))


def _read_in_subprocess(files: list[tuple[Path, str]], timeout: float = 300) -> list[str]:
    """The problems found reading ``files`` in a fresh interpreter (a crash names its file)."""
    stdin = "".join(json.dumps([str(path), fmt]) + "\n" for path, fmt in files)
    try:
        result = subprocess.run(
            [sys.executable, "-c", READER],
            input=stdin,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        started = [
            line for line in (err.stdout or b"").decode().splitlines() if line.startswith("START")
        ]
        return [f"hang reading {started[-1][6:] if started else '?'}"]
    problems = []
    last_started = None
    for line in result.stdout.splitlines():
        if line.startswith("START "):
            last_started = line[6:]
        elif line.startswith("VERDICT "):
            verdict = json.loads(line[8:])
            last_started = None
            if verdict["problem"]:
                problems.append(f"{verdict['path']}: {verdict['problem']}")
    if result.returncode != 0:
        problems.append(
            f"reader process died (code {result.returncode}) reading {last_started}: "
            f"{result.stderr[-500:]}"
        )
    return problems


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(mutated(), min_size=FILES_PER_BATCH, max_size=FILES_PER_BATCH))
def test_readers_accept_only_valid_rows_and_refuse_the_rest_with_input_error(
    tmp_path_factory: pytest.TempPathFactory, batch: list[tuple[str, str, bytes]]
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    files = []
    for k, (name, fmt, content) in enumerate(batch):
        path = folder / f"{k:02d}-{name}"
        path.write_bytes(content)
        files.append((path, fmt))
    assert _read_in_subprocess(files) == []


# Fixed cases, each a class the random search finds only rarely.
DEEP = 20_000
DAMAGED_PARQUET = Path(__file__).parent / "data" / "parquet"


def _fixed_cases() -> dict[str, tuple[str, bytes]]:
    jsonl = VALID["scored.jsonl"][1]
    lmflow = VALID["scored.json"][1]
    paired = VALID["paired.jsonl"][1]
    nest = b"[" * DEEP + b"1" + b"]" * DEEP
    return {
        "deep.jsonl": ("jsonl", jsonl.replace(b"0.5", nest, 1)),
        "deep.json": ("json", lmflow.replace(b"0.5", nest, 1)),
        "deep-paired.jsonl": ("jsonl", paired.replace(b"1.0", nest, 1)),
        "utf8.jsonl": ("jsonl", jsonl.replace(b'"r0', b'"\xffr0', 1)),
        "utf8.json": ("json", lmflow.replace(b'"r0', b'"\xffr0', 1)),
        "utf8-paired.jsonl": ("jsonl", paired.replace(b'"a"', b'"\xff"', 1)),
        "huge.jsonl": ("jsonl", jsonl.replace(b"0.5", b"1e400", 1)),
        "huge-int.jsonl": ("jsonl", jsonl.replace(b"0.5", b"9" * 400, 1)),
        "huge.json": ("json", lmflow.replace(b"0.5", b"1e400", 1)),
        "junk.jsonl": ("jsonl", b"\x80\x00 not UTF-8"),
        # Parquet files on which arrow-rs panicked (found by flipping bytes of valid files): a
        # column chunk said to start before the file; a validity bitmap shorter than its page.
        **{
            f"{damaged.stem}.parquet": ("parquet", damaged.read_bytes())
            for damaged in sorted(DAMAGED_PARQUET.glob("*.parquet"))
        },
    }


@pytest.mark.parametrize(
    "name",
    sorted(_fixed_cases()),
)
def test_fixed_hostile_files_are_read_or_refused_with_input_error(
    tmp_path: Path, name: str
) -> None:
    fmt, content = _fixed_cases()[name]
    path = tmp_path / name
    path.write_bytes(content)
    assert _read_in_subprocess([(path, fmt)]) == []
