"""Pairing shards on Ray: the same file and summary as the single-machine run on the whole
dataset, for every method, shard count and worker count; a bad shard fails as the
single-machine command does on it; ``ray`` is never imported by the rest of the package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from dpov2.cli import main
from dpov2.convert import Outcome, PairOptions, PairSummary, write_pairs
from dpov2.convert.ray_engine import find_shards, write_pairs_on_ray
from dpov2.errors import InputError
from dpov2.formats import open_scored
from dpov2.formats.instances import OUTPUT_TYPE

# Prompt i has i % 5 responses (0 and 1: too few); every sixth prompt's responses all score 1
# (a tie); the second response of prompts 3, 14, 36, ... (i % 11 == 3) has a null score.
ROWS = [
    {
        "input": f"prompt {i}",
        "output": [
            {
                "text": f"answer {i}.{k} " + "é" * k,
                "score": None
                if i % 11 == 3 and k == 1
                else float((i * 7 + k * 3) % 5 if i % 6 else 1),
            }
            for k in range(i % 5)
        ],
    }
    for i in range(230)
]
VALID_ROWS = [r for i, r in enumerate(ROWS) if i % 11 != 3]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module: starting one takes seconds."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def write_shard(path: Path, rows: list[dict[str, object]]) -> Path:
    if path.suffix == ".parquet":
        schema = pa.schema([("input", pa.string()), ("output", OUTPUT_TYPE)])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps({"type": "text_to_scored_textlist", "instances": rows}))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_shards(folder: Path, rows: list[dict[str, object]], n_shards: int) -> Path:
    """``rows`` cut at random places into ``n_shards`` files, in turn JSON Lines, Parquet and
    LMFlow JSON, named so that they sort in order."""
    folder.mkdir()
    rng = np.random.default_rng(n_shards)
    cuts = sorted(rng.choice(np.arange(1, len(rows)), n_shards - 1, replace=False).tolist())
    bounds = [0, *cuts, len(rows)]
    for k in range(n_shards):
        suffix = (".jsonl", ".parquet", ".json")[k % 3]
        write_shard(folder / f"part-{k:03d}{suffix}", rows[bounds[k] : bounds[k + 1]])
    return folder


def single_machine(
    tmp_path: Path, rows: list[dict[str, object]], options: PairOptions, out_name: str, **kw: int
) -> tuple[bytes, PairSummary]:
    whole = write_shard(tmp_path / "whole.jsonl", rows)
    out = tmp_path / f"single-{out_name}"
    summary = write_pairs(open_scored(whole, max_samples=kw.get("max_samples")), out, options)
    return out.read_bytes(), summary


def assert_same_summary(one: PairSummary, other: PairSummary) -> None:
    assert one.lines() == other.lines()
    assert (one.prompts_read, one.outcomes) == (other.prompts_read, other.outcomes)
    assert (one.margin_min, one.margin_max) == (other.margin_min, other.margin_max)
    assert one.margin_quantiles() == other.margin_quantiles()
    assert one.margin_mean == other.margin_mean or one.pairs_written == 0


CASES = {
    "random": {},
    "max_min": {"length_penalty": 0.05, "margin_from": "penalized", "provenance": True},
    "max_max": {"keep_ties": True, "min_margin": 0.5},
    "max_random": {"seed": 2**64 - 1},
    # Several pairs per instance, keyed by content, under LMFlow's tie order and limits.
    "all_pairs": {"pairs_per_prompt": 3, "key": "content", "tie_order": "lmflow"},
    "top_bottom": {"pairs_per_prompt": 2, "max_length_ratio": 3.0, "length_penalty": 0.01},
}


@pytest.mark.parametrize("n_shards", [1, 4, 9])
@pytest.mark.parametrize("method", list(CASES))
def test_sharded_run_writes_the_single_machine_file_and_summary(
    tmp_path: Path, method: str, n_shards: int
) -> None:
    options = PairOptions(method=method, skip_invalid=True, **CASES[method])  # type: ignore[arg-type]
    out_name = "pairs.parquet" if n_shards % 2 else "pairs.jsonl"
    expected, expected_summary = single_machine(tmp_path, ROWS, options, out_name)
    shards = write_shards(tmp_path / "shards", ROWS, n_shards)
    out = tmp_path / out_name
    # Few shards: as many workers as CPUs; many: one worker and small batches.
    workers, batch_size = (None, 8192) if n_shards < 9 else (1, 7)
    summary = write_pairs_on_ray(shards, out, options, workers=workers, batch_size=batch_size)
    assert out.read_bytes() == expected
    assert_same_summary(summary, expected_summary)
    assert summary.outcomes[Outcome.INVALID] > 0 and summary.pairs_written > 100


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_workers_write_output_shards_holding_the_single_machine_rows(
    tmp_path: Path, fmt: str
) -> None:
    options = PairOptions(method="max_random", skip_invalid=True, provenance=True)
    expected, expected_summary = single_machine(tmp_path, ROWS, options, f"p.{fmt}")
    shards = write_shards(tmp_path / "shards", ROWS, 5)
    out = tmp_path / "pairs"
    summary = write_pairs_on_ray(shards, out, options, output_shards=True, output_format=fmt)
    assert_same_summary(summary, expected_summary)
    parts = sorted(out.iterdir())
    assert [p.name for p in parts] == [f"part-{k:05d}.{fmt}" for k in range(5)]
    if fmt == "jsonl":
        assert b"".join(p.read_bytes() for p in parts) == expected
    else:
        assert pq.read_table(out).equals(pq.read_table(pa.BufferReader(expected)))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_shards_appear_only_when_complete(tmp_path: Path) -> None:
    shards = write_shards(tmp_path / "shards", ROWS, 3)  # ROWS has invalid rows
    with pytest.raises(InputError, match=r"null; expected a number|missing; expected"):
        write_pairs_on_ray(shards, tmp_path / "pairs", PairOptions(), output_shards=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]
    (tmp_path / "pairs").mkdir()
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        write_pairs_on_ray(
            shards, tmp_path / "pairs", PairOptions(skip_invalid=True), output_shards=True
        )
    summary = write_pairs_on_ray(
        shards,
        tmp_path / "pairs",
        PairOptions(skip_invalid=True),
        output_shards=True,
        overwrite=True,
    )
    assert summary.pairs_written == pq.read_table(tmp_path / "pairs").num_rows > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs", "shards"]


def test_max_samples_counts_across_shards_and_empty_shards_hold_nothing(tmp_path: Path) -> None:
    options = PairOptions(method="random", seed=7)
    expected, expected_summary = single_machine(
        tmp_path, VALID_ROWS, options, "p.jsonl", max_samples=101
    )
    shards = write_shards(tmp_path / "shards", VALID_ROWS, 5)
    (shards / "part-001-empty.jsonl").touch()  # an empty shard, between two others
    summary = write_pairs_on_ray(shards, tmp_path / "p.jsonl", options, max_samples=101)
    assert (tmp_path / "p.jsonl").read_bytes() == expected
    assert_same_summary(summary, expected_summary)
    assert summary.prompts_read == 101


def test_shards_are_files_of_a_folder_or_glob_sorted_by_name(tmp_path: Path) -> None:
    for name in ("b-2.jsonl", "b-10.parquet", "a.ndjson", "_SUCCESS", ".hidden.jsonl"):
        (tmp_path / name).write_text("{}\n")
    assert [(p.name, f) for p, f in find_shards(tmp_path)] == [
        ("a.ndjson", "jsonl"),
        ("b-10.parquet", "parquet"),
        ("b-2.jsonl", "jsonl"),
    ]
    assert [p.name for p, _ in find_shards(tmp_path / "b-*")] == ["b-10.parquet", "b-2.jsonl"]
    with pytest.raises(InputError, match="no shards found"):
        find_shards(tmp_path / "c-*")
    with pytest.raises(InputError, match="cannot tell the format"):
        find_shards([tmp_path / "_SUCCESS"])


BAD_SHARDS = {
    "malformed JSON line": (
        "part-1.jsonl",
        "{oops\n",
        r"row 4 \(byte \d+\): expected a member name",
    ),
    "null score": (
        "part-1.parquet",
        None,
        r"row 4, field 'output\[1\]\.score': null; expected a number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SHARDS))
def test_a_bad_shard_fails_as_the_single_machine_command_does_on_it(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, bad_line, message = BAD_SHARDS[case]
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "part-0.jsonl", VALID_ROWS[:50])
    rows = [*VALID_ROWS[50:54], ROWS[3], *VALID_ROWS[54:60]]  # ROWS[3] has a null score
    bad = write_shard(shards / name, rows)
    if bad_line is not None:
        lines = bad.read_text().splitlines(keepends=True)
        bad.write_text("".join(lines[:4]) + bad_line + "".join(lines[5:]))
    write_shard(shards / "part-2.jsonl", VALID_ROWS[60:])
    (tmp_path / "out").mkdir()

    assert main(["pair", str(bad), str(tmp_path / "out" / "single.jsonl")]) == 2
    single_error = capsys.readouterr().err
    assert main(["pair", str(shards), str(tmp_path / "out" / "p.jsonl"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert err == single_error
    assert err.count("\n") == 1 and err.startswith(f"dpov2 pair: error: {bad}: "), err
    assert re.search(message, err), err
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary file left


def test_cli_prints_the_single_machine_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shard(tmp_path / "whole.jsonl", ROWS)
    shards = write_shards(tmp_path / "shards", ROWS, 3)
    args = ["--method", "max_min", "--skip-invalid"]
    assert main(["pair", str(tmp_path / "whole.jsonl"), str(tmp_path / "a.json"), *args]) == 0
    single = capsys.readouterr().out.splitlines()
    glob = str(shards / "part-*")
    assert main(["pair", glob, str(tmp_path / "b.json"), *args, "--engine", "ray"]) == 0
    sharded = capsys.readouterr().out.splitlines()
    assert sharded[:-1] == single[:-1] and sharded[-1].startswith("wrote ")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_ray_options_need_the_ray_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_shard(tmp_path / "s.jsonl", VALID_ROWS)
    assert main(["pair", str(source), str(tmp_path / "o.jsonl"), "--workers", "2"]) == 2
    assert "--ray-address, --workers and --output-shards go with --engine ray" in (
        capsys.readouterr().err
    )
    assert (
        main(["pair", str(source), str(tmp_path / "o.jsonl"), "--engine", "ray", "--workers", "0"])
        == 2
    )
    assert "workers must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_the_package_and_the_local_engine_never_import_ray(tmp_path: Path) -> None:
    source = write_shard(tmp_path / "s.jsonl", VALID_ROWS)
    script = f"""
import sys
import dpov2, dpov2.cli, dpov2.convert
assert dpov2.cli.main(["pair", {str(source)!r}, {str(tmp_path / "o.jsonl")!r}, "--quiet"]) == 0
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    assert (tmp_path / "o.jsonl").stat().st_size > 0


def test_a_command_connects_to_a_running_cluster_by_address(tmp_path: Path) -> None:
    write_shard(tmp_path / "whole.jsonl", VALID_ROWS)
    shards = write_shards(tmp_path / "shards", VALID_ROWS, 2)
    address = ray.get_runtime_context().gcs_address
    assert main(["pair", str(tmp_path / "whole.jsonl"), str(tmp_path / "a.jsonl"), "--quiet"]) == 0
    command = [sys.executable, "-m", "dpov2.cli", "pair", str(shards), str(tmp_path / "b.jsonl")]
    subprocess.run([*command, "--engine", "ray", "--ray-address", address], check=True)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_shards_with_prompts_of_another_type_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "part-0.jsonl", VALID_ROWS[:20])
    chat = [
        {"input": [{"role": "user", "content": "hi"}], "output": r["output"]}
        for r in VALID_ROWS[20:40]
    ]
    write_shard(shards / "part-1.jsonl", chat)
    assert main(["pair", str(shards), str(tmp_path / "p.jsonl"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a shard has prompts of type list<" in err, err
    assert not (tmp_path / "p.jsonl").exists()
