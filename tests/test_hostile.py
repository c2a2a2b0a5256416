"""Hostile inputs and runs (issue 11): nothing lost, nothing crashes.

Every case runs ``dpov2`` as a user would and checks what a user mistake must give: exit code
2, one line on stderr naming the file (and row and field where there is one), no traceback, no
output and no temporary file, and inputs byte for byte as they were. ``dpov2 pair`` runs in a
subprocess per case; ``dpov2 align`` cases run the CLI's ``main`` in this process (each
subprocess would import torch and TRL again), where a traceback is an exception that fails the
test. The API raising ``InputError`` is checked beside. Interrupts and killed runs have tests
of their own at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from interrupts import default_sigint

from dpov2.cli import main
from dpov2.convert import PairOptions, convert_to_paired_dataset
from dpov2.convert.ray_engine import write_pairs_on_ray
from dpov2.errors import InputError
from dpov2.formats import open_scored

CLI = [sys.executable, "-c", "from dpov2.cli import main; raise SystemExit(main())"]
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "python")}


def _row(i: int, scores: tuple[object, ...] = (1.0, 2.0, 0.5)) -> dict[str, object]:
    return {
        "input": f"prompt {i}",
        "output": [{"text": f"response {i}.{k}", "score": s} for k, s in enumerate(scores)],
    }


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _bad_utf8_strings(values: list[bytes]) -> pa.Array:
    """A string array holding exactly these bytes (pyarrow refuses to build invalid UTF-8)."""
    offsets = np.cumsum([0, *map(len, values)], dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(values))],
    )


def _hashes(paths: list[Path]) -> dict[str, str]:
    """Every file under the given paths, by path, with its SHA-256."""
    found = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            found[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- the cases --------------------------------------------------------------------------------


@dataclass
class Case:
    """One hostile run: ``make`` builds its files under a folder and returns the arguments
    after the subcommand, the inputs that must stay intact and the output that must not
    appear; ``expected`` are strings the one error line must hold."""

    make: Callable[[Path], tuple[list[str], list[Path], Path | None]]
    expected: tuple[str, ...]
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())


def _pair(
    args: list[str], inputs: list[Path], output: Path | None
) -> tuple[list[str], list[Path], Path | None]:
    return ["pair", *args], inputs, output


def _output_is_input(tmp: Path):
    src = _jsonl(tmp / "scored.jsonl", [_row(i) for i in range(3)])
    return _pair([str(src), str(src), "--overwrite"], [src], None)


def _output_holds_input(tmp: Path):
    src = _jsonl(tmp / "nest" / "scored.jsonl", [_row(i) for i in range(3)])
    (tmp / "nest" / "notes.txt").write_text("mine")
    return _pair([str(src), str(tmp / "nest"), "--overwrite"], [tmp / "nest"], None)


def _ray_output_holds_shards(tmp: Path):
    """The reported data loss: the shards' parent folder as the --output-shards folder."""
    for k in range(2):
        _jsonl(tmp / "nest" / "scored" / f"part-{k}.jsonl", [_row(i) for i in range(3)])
    (tmp / "nest" / "unrelated.txt").write_text("keep me")
    args = [str(tmp / "nest" / "scored"), str(tmp / "nest"), "--engine", "ray"]
    return _pair([*args, "--output-shards", "--overwrite"], [tmp / "nest"], None)


def _ray_output_is_shard_folder(tmp: Path):
    for k in range(2):
        _jsonl(tmp / "scored" / f"part-{k}.jsonl", [_row(i) for i in range(3)])
    args = [str(tmp / "scored"), str(tmp / "scored"), "--engine", "ray", "--output-shards"]
    return _pair([*args, "--overwrite"], [tmp / "scored"], None)


def _ray_output_inside_shard_folder(tmp: Path):
    for k in range(2):
        _jsonl(tmp / "scored" / f"part-{k}.jsonl", [_row(i) for i in range(3)])
    out = tmp / "scored" / "pairs.jsonl"
    return _pair([str(tmp / "scored"), str(out), "--engine", "ray"], [tmp / "scored"], out)


def _ray_overwrite_foreign_folder(tmp: Path):
    src = _jsonl(tmp / "scored" / "part-0.jsonl", [_row(i) for i in range(3)])
    out = tmp / "pairs"
    out.mkdir()
    (out / "part-00000.parquet").write_bytes(b"an earlier run's part")
    (out / "thesis.tex").write_text("not dpov2's")
    args = [str(src.parent), str(out), "--engine", "ray", "--output-shards", "--overwrite"]
    return _pair(args, [src.parent, out], None)


def _parquet_bad_utf8(field_name: str):
    def make(tmp: Path):
        prompts = _bad_utf8_strings([b"fine", b"bad \xff\xfe"])
        texts = _bad_utf8_strings([b"a", b"b", b"c", b"bad \xc3"])
        scores = pa.array([1.0, 2.0, 3.0, 4.0])
        if field_name == "input":
            prompts, texts = pa.array(["fine", "bad"]), pa.array(["a", "b", "c", "d"])
            prompts = _bad_utf8_strings([b"fine", b"bad \xff\xfe"])
        else:
            prompts = pa.array(["fine", "also fine"])
        responses = pa.StructArray.from_arrays([texts, scores], names=["text", "score"])
        outputs = pa.ListArray.from_arrays(pa.array([0, 2, 4], pa.int32()), responses)
        src = _parquet(tmp / "bad.parquet", pa.table({"input": prompts, "output": outputs}))
        out = tmp / "pairs.jsonl"
        return _pair([str(src), str(out)], [src], out)

    return make


def _saved(tmp: Path, rows: list[dict[str, object]], name: str = "saved") -> Path:
    folder = tmp / name
    datasets.Dataset.from_list(rows).save_to_disk(
        str(folder)
    ) if rows else datasets.Dataset.from_dict({"input": [], "output": []}).save_to_disk(str(folder))
    return folder


def _saved_zero_rows(tmp: Path):
    folder = _saved(tmp, [])
    out = tmp / "pairs.jsonl"
    return _pair([str(folder), str(out)], [folder], out)


def _saved_damaged(damage: str):
    def make(tmp: Path):
        folder = _saved(tmp, [_row(i) for i in range(3)])
        arrow = next(folder.glob("*.arrow"))
        if damage == "state":
            (folder / "state.json").write_text("{not json")
        elif damage == "info":
            (folder / "dataset_info.json").write_text("[1, 2]")
        elif damage == "arrow bytes":
            with open(arrow, "r+b") as file:
                file.write(b"garbage!")
        elif damage == "arrow truncated":
            arrow.write_bytes(arrow.read_bytes()[:100])
        elif damage == "no arrow":
            arrow.unlink()
        out = tmp / "pairs.jsonl"
        return _pair([str(folder), str(out)], [folder], out)

    return make


def _saved_paired(tmp: Path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.0}]
    folder = tmp / "paired"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    out = tmp / "pairs.jsonl"
    return _pair([str(folder), str(out)], [folder], out)


def _wrong_content(suffix: str, content: str):
    def make(tmp: Path):
        src = tmp / f"data{suffix}"
        if content == "parquet":
            pq.write_table(pa.table({"input": ["p"]}), src)
        elif content == "jsonl":
            _jsonl(src, [_row(0)])
        else:
            src.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        out = tmp / "pairs.jsonl"
        return _pair([str(src), str(out)], [src], out)

    return make


def _not_a_tokenizer(files: dict[str, str]):
    def make(tmp: Path):
        src = _jsonl(tmp / "scored.jsonl", [_row(i) for i in range(3)])
        folder = tmp / "tok"
        folder.mkdir()
        for name, text in files.items():
            (folder / name).write_text(text)
        out = tmp / "pairs.jsonl"
        args = [str(src), str(out), "--tokenizer", str(folder), "--length-penalty", "0.1"]
        return _pair(args, [src, folder], out)

    return make


def _margin_overflow(fmt: str, *flags: str, scores: tuple[float, ...] = (1.7e308, -1.7e308)):
    def make(tmp: Path):
        src = _jsonl(tmp / "scored.jsonl", [_row(0), _row(1, scores)])
        out = tmp / f"pairs.{fmt}"
        return _pair([str(src), str(out), "--method", "max_min", *flags], [src], out)

    return make


def _bad_option(*flags: str):
    def make(tmp: Path):
        src = _jsonl(tmp / "scored.jsonl", [_row(i) for i in range(3)])
        out = tmp / "pairs.jsonl"
        return _pair([str(src), str(out), *flags], [src], out)

    return make


PAIR_CASES: dict[str, Case] = {
    "output is the input": Case(_output_is_input, ("scored.jsonl", "OUTPUT is the input")),
    "output folder holds the input": Case(_output_holds_input, ("nest", "holds the input")),
    "ray output-shards folder holds the shards": Case(
        _ray_output_holds_shards, ("nest: OUTPUT holds the input",)
    ),
    "ray output-shards folder is the shard folder": Case(
        _ray_output_is_shard_folder, ("scored: OUTPUT is the input",)
    ),
    "ray output inside the shard folder": Case(
        _ray_output_inside_shard_folder, ("pairs.jsonl: OUTPUT is inside the input folder",)
    ),
    "ray overwrite of a folder with foreign files": Case(
        _ray_overwrite_foreign_folder, ("pairs: holds thesis.tex, which dpov2 did not write",)
    ),
    "parquet invalid utf-8 prompt": Case(
        _parquet_bad_utf8("input"), ("bad.parquet: row 1, field 'input': is not valid UTF-8",)
    ),
    "parquet invalid utf-8 text": Case(
        _parquet_bad_utf8("text"),
        ("bad.parquet: row 1, field 'output[1].text': is not valid UTF-8",),
    ),
    "save_to_disk zero rows": Case(_saved_zero_rows, ("saved: is empty",)),
    **{
        f"save_to_disk damaged {damage}": Case(_saved_damaged(damage), ("saved: ",))
        for damage in ("state", "info", "arrow bytes", "arrow truncated", "no arrow")
    },
    "save_to_disk paired given to pair": Case(
        _saved_paired, ("columns: prompt, chosen, rejected, margin",)
    ),
    "parquet holding JSON Lines": Case(
        _wrong_content(".parquet", "jsonl"), ("data.parquet: not a readable Parquet file",)
    ),
    "parquet holding binary junk": Case(
        _wrong_content(".parquet", "junk"), ("data.parquet: not a readable Parquet file",)
    ),
    "jsonl holding Parquet": Case(_wrong_content(".jsonl", "parquet"), ("data.jsonl",)),
    "json holding Parquet": Case(_wrong_content(".json", "parquet"), ("data.json",)),
    "tokenizer.json not a tokenizer": Case(
        _not_a_tokenizer({"tokenizer.json": '{"a": 1}'}), ("tok: cannot load a tokenizer",)
    ),
    "tokenizer_config.json only": Case(
        _not_a_tokenizer({"tokenizer_config.json": '{"a": 1}'}), ("tok: cannot load a tokenizer",)
    ),
    "tokenizer with a list config": Case(
        _not_a_tokenizer(
            {"config.json": "[1]", "tokenizer_config.json": '{"model_type": "llama"}'}
        ),
        ("tok: cannot load a tokenizer",),
    ),
    **{
        f"margin overflow {fmt}{' reference' if ref else ''}": Case(
            _margin_overflow(fmt, *(["--no-fast"] if ref else [])),
            ("scored.jsonl: row 1, field 'margin': ", "overflows the float64 range"),
        )
        for fmt in ("jsonl", "json", "parquet")
        for ref in (False, True)
    },
    "margin overflow by margin scale": Case(
        _margin_overflow("parquet", "--margin-scale", "1e308", scores=(1.0, 5.0)),
        ("row 1, field 'margin'", "output[1] (score 5.0) over output[0] (score 1.0)", "1e+308"),
    ),
    "margin overflow penalized": Case(
        _margin_overflow(
            "jsonl",
            "--margin-from",
            "penalized",
            "--length-penalty",
            "1e-300",
            scores=(1.7e308, -1.7e308),
        ),
        ("field 'margin'", "penalised rewards"),
    ),
    **{
        f"option {' '.join(flags)}": Case(_bad_option(*flags), (expected,))
        for flags, expected in (
            (("--length-penalty", "nan"), "length penalty must be a finite number"),
            (("--margin-scale", "inf"), "margin scale must be a finite number"),
            (("--min-margin", "nan"), "minimum margin must be a finite number"),
            (("--batch-size", "0"), "batch size must be at least 1"),
            (("--max-samples", "-1"), "max samples must be >= 0"),
            (("--seed", "-1"), "seed must be an integer"),
        )
    },
}


def _run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def _assert_user_error(rc: int, stderr: str, command: str, expected: tuple[str, ...]) -> None:
    assert rc == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"dpov2 {command}: error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=name, marks=case.marks) for name, case in PAIR_CASES.items()],
)
def test_pair_refuses_in_one_line_and_leaves_everything_as_it_was(
    tmp_path: Path, case: Case
) -> None:
    args, inputs, output = case.make(tmp_path)
    before_hashes, before_files = _hashes(inputs), _listing(tmp_path)
    result = _run_cli([*args, "--quiet"], tmp_path)
    _assert_user_error(result.returncode, result.stderr, "pair", case.expected)
    assert _hashes(inputs) == before_hashes
    assert _listing(tmp_path) == before_files  # no output, no temporary file
    assert output is None or not output.exists()


# --- accepted now: numbers any format holds are scores ---------------------------------------


BIG_INTEGERS = [2**63 - 1, 2**53 + 1, -(2**62) - 1]


@pytest.mark.parametrize("fmt", ["parquet", "hf", "jsonl"])
def test_integer_scores_beyond_2_53_are_rounded_to_the_nearest_float_in_every_format(
    tmp_path: Path, fmt: str
) -> None:
    rows = [_row(0, tuple(BIG_INTEGERS))]
    table = pa.table(
        {"input": ["prompt 0"], "output": pa.array([rows[0]["output"]])}  # score: int64
    )
    if fmt == "parquet":
        src = _parquet(tmp_path / "big.parquet", table)
    elif fmt == "hf":
        src = tmp_path / "saved"
        datasets.Dataset(table).save_to_disk(str(src))
    else:
        src = _jsonl(tmp_path / "big.jsonl", rows)
    out = tmp_path / "pairs.jsonl"
    result = _run_cli(["pair", str(src), str(out), "--method", "max_min", "--provenance"], tmp_path)
    assert result.returncode == 0, result.stderr
    pair = json.loads(out.read_text())
    assert (pair["chosen_score"], pair["rejected_score"]) == (float(2**63 - 1), float(-(2**62) - 1))
    assert pair["margin"] == float(2**63 - 1) - float(-(2**62) - 1)


@pytest.mark.parametrize("use_fast", [True, False], ids=["fast", "reference"])
def test_overflowing_margins_are_dropped_under_their_own_reason_with_a_finite_summary(
    tmp_path: Path, use_fast: bool
) -> None:
    src = _jsonl(
        tmp_path / "s.jsonl",
        [_row(0, (1.7e308, -1.7e308)), _row(1, (1.7e308, 1e308)), _row(2, (1.0, 3.0))],
    )
    out = tmp_path / "p.parquet"
    args = ["pair", str(src), str(out), "--method", "max_min", "--skip-invalid"]
    result = _run_cli([*args, *([] if use_fast else ["--no-fast"])], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 non finite margin" in result.stdout and "nan" not in result.stdout
    assert pq.read_table(out).column("margin").to_pylist() == [1.7e308 - 1e308, 2.0]


def test_margins_whose_spread_overflows_give_finite_quantiles() -> None:
    from dpov2.convert.summary import PairSummary

    summary = PairSummary()
    margins = np.array([-1.7e308, 1.7e308, 0.0])
    summary.add(np.zeros(3, np.uint8), margins, np.arange(3, dtype=np.int64))
    assert all(math.isfinite(v) for v in summary.margin_quantiles().values())
    assert "nan" not in " ".join(summary.lines()) and "inf" not in " ".join(summary.lines())


# --- the same classes through the API ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "parquet invalid utf-8 text",
        "save_to_disk zero rows",
        "save_to_disk damaged info",
        "save_to_disk paired given to pair",
        "parquet holding binary junk",
        "tokenizer.json not a tokenizer",
        "margin overflow jsonl",
        "margin overflow jsonl reference",
    ],
)
def test_convert_to_paired_dataset_raises_input_error(tmp_path: Path, name: str) -> None:
    args, _, _ = PAIR_CASES[name].make(tmp_path)
    source = args[1]
    use_fast = "--no-fast" not in args
    tokenizer = args[args.index("--tokenizer") + 1] if "--tokenizer" in args else None
    with pytest.raises(InputError):
        convert_to_paired_dataset(
            source,
            sampling_paired_method="max_min",
            tokenizer=tokenizer,
            length_penalty=0.1 if tokenizer else 0.0,
            use_fast=use_fast,
        )


def test_write_pairs_on_ray_refuses_overlapping_output_before_starting_ray(tmp_path: Path) -> None:
    args, inputs, _ = _ray_output_holds_shards(tmp_path)
    before = _hashes(inputs)
    with pytest.raises(InputError, match="OUTPUT holds the input"):
        write_pairs_on_ray(args[1], args[2], PairOptions(), output_shards=True, overwrite=True)
    assert _hashes(inputs) == before


# --- dpov2 align ------------------------------------------------------------------------------

ALIGN_BASE = [
    "--model_name_or_path",
    "dpov2:tiny",
    "--max_steps",
    "1",
    "--use_cpu",
    "true",
    "--report_to",
    "none",
    "--save_strategy",
    "no",
]


def _align_data(kind: str, tmp: Path) -> Path:
    if kind == "scored":
        return _jsonl(tmp / "scored.jsonl", [_row(i) for i in range(4)])
    pairs = {"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.0}
    if kind == "chosen int":
        return _jsonl(tmp / "pairs.jsonl", [{**pairs, "chosen": 1}])
    if kind == "chosen null":
        return _jsonl(tmp / "pairs.jsonl", [pairs, {**pairs, "chosen": None}])
    if kind == "null margin":
        return _jsonl(tmp / "pairs.jsonl", [pairs, {**pairs, "margin": None}])
    if kind == "no margin":
        return _jsonl(tmp / "pairs.jsonl", [{k: v for k, v in pairs.items() if k != "margin"}])
    if kind == "fake parquet":
        (tmp / "pairs.parquet").write_text('{"prompt": "p"}\n')
        return tmp / "pairs.parquet"
    raise AssertionError(kind)


ALIGN_CASES = {
    "beta nan": ("scored", ["--beta", "nan"], "beta must be a finite number > 0, got nan"),
    "beta 0 ipo": ("scored", ["--beta", "0", "--loss_type", "ipo"], "beta must be a finite"),
    "beta inf": ("scored", ["--beta", "inf"], "beta must be a finite number > 0"),
    "learning rate nan": ("scored", ["--learning_rate", "nan"], "learning_rate must be a finite"),
    "weight decay -1": ("scored", ["--weight_decay", "-1"], "weight_decay must be a finite"),
    "max_grad_norm inf": ("scored", ["--max_grad_norm", "inf"], "max_grad_norm must be a finite"),
    "margin_scale inf": ("scored", ["--margin_scale", "inf"], "margin_scale must be a finite"),
    "length_penalty nan": ("scored", ["--length_penalty", "nan"], "length_penalty must be"),
    "len_penalty nan": ("scored", ["--len_penalty", "nan"], "len_penalty must be a finite"),
    "max_length 0": ("scored", ["--max_length", "0"], "max_length must be a finite number >= 1"),
    "max_prompt_length 0": ("scored", ["--max_prompt_length", "0"], "max_prompt_length must be"),
    "random_seed -1": ("scored", ["--random_seed", "-1"], "random_seed must be an integer"),
    "chosen not a string": (
        "chosen int",
        [],
        "pairs.jsonl: row 0 (byte 26), field 'chosen': expected a string, a list of chat messages",
    ),
    "chosen null": (
        "chosen null",
        [],
        "pairs.jsonl: row 1 (byte 89), field 'chosen': null; expected a string",
    ),
    "null margin, margin loss": ("null margin", ["--loss_type", "kl"], "row 1: margin is null"),
    "no margin, margin loss": ("no margin", ["--loss_type", "tv"], "row 0: margin is null"),
    "parquet that is not Parquet": ("fake parquet", [], "pairs.parquet: not a readable Parquet"),
    "bad reference path": (
        "scored",
        ["--reference_model_name_or_path", "./no-such-ref"],
        "./no-such-ref: field 'reference_model_name_or_path': no such folder",
    ),
    "bad model path": (
        "scored",
        ["--model_name_or_path", "/no/such/model"],
        "/no/such/model: field 'model_name_or_path': no such folder",
    ),
    "memory-safe accelerate config missing": (
        "scored",
        ["--memory-safe", "--accelerate_config_file", "missing.yaml"],
        "missing.yaml: field 'accelerate_config_file': no such file",
    ),
}


@pytest.mark.parametrize(
    ("data", "flags", "expected"),
    [pytest.param(*case, id=name) for name, case in ALIGN_CASES.items()],
)
def test_align_refuses_in_one_line_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    data: str,
    flags: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    source = _align_data(data, tmp_path)
    before_hashes, before_files = _hashes([source]), _listing(tmp_path)
    memory_safe = ["--memory-safe"] if "--memory-safe" in flags else []
    flags = [f for f in flags if f != "--memory-safe"]
    args = [*memory_safe, *ALIGN_BASE, "--dataset_path", str(source), "--output_dir", "out"]
    rc = main(["align", *args, *flags])
    _assert_user_error(rc, capsys.readouterr().err, "align", (expected,))
    assert _hashes([source]) == before_hashes
    assert _listing(tmp_path) == before_files


# --- interrupted and killed runs --------------------------------------------------------------


def _slow_source(tmp: Path, rows: int = 20_000) -> Path:
    return _jsonl(
        tmp / "slow.jsonl", [_row(i, (0.1 * (i % 7), 1.0, 0.5, 2.0)) for i in range(rows)]
    )


def _start_and_wait_for_partial(src: Path, out: Path, *flags: str) -> subprocess.Popen[str]:
    """A ``--no-fast`` run into ``out``, returned once it writes its temporary file (its
    imports done, the pairing under way)."""
    child = subprocess.Popen(
        [*CLI, "pair", str(src), str(out), "--no-fast", "--quiet", *flags],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # Ctrl-C as a terminal delivers it
    )
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial") for p in out.parent.iterdir()):
        assert time.monotonic() < deadline and child.poll() is None, child.stderr
        time.sleep(0.02)
    return child


def test_ctrl_c_at_random_moments_of_a_reference_run_always_exits_130_with_no_output(
    tmp_path: Path,
) -> None:
    src = _slow_source(tmp_path, rows=20_000)
    out = tmp_path / "out" / "pairs.jsonl"
    out.parent.mkdir()
    runs = int(os.environ.get("DPOV2_SIGINT_RUNS", "8"))
    # How long a whole run takes once its output is open bounds the random moments; a run
    # that put its output in place before the signal came is checked and another is drawn
    # (the interrupts must meet the pairing, not the exit).
    child = _start_and_wait_for_partial(src, out)
    started = time.monotonic()
    _, stderr = child.communicate(timeout=120)
    span = time.monotonic() - started
    assert child.returncode == 0, stderr
    whole = out.read_bytes()
    out.unlink()
    rng = random.Random(11)
    interrupted = 0
    for attempt in range(3 * runs):
        if interrupted == runs:
            break
        child = _start_and_wait_for_partial(src, out)
        time.sleep(rng.uniform(0.0, span))
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
        if out.exists():
            # The output was put in place before the signal came (a moment that tests nothing
            # but that no false word is said): whole, and never "no output written". A signal
            # that lands as the interpreter shuts down, after Python's handler is gone, kills
            # the process by SIGINT's default action, which a shell reports as 130 too.
            assert out.read_bytes() == whole, attempt
            assert child.returncode in (0, 130, -signal.SIGINT), (child.returncode, stderr)
            assert "no output" not in stderr, stderr
            out.unlink()
            continue
        assert child.returncode == 130, (attempt, child.returncode, stderr)
        assert stderr == "dpov2 pair: interrupted; no output written\n", stderr
        assert list(out.parent.iterdir()) == [], attempt
        interrupted += 1
    assert interrupted == runs, f"only {interrupted} of {3 * runs} runs were still pairing"


def test_a_killed_run_leaves_a_partial_that_the_next_run_removes(tmp_path: Path) -> None:
    src = _slow_source(tmp_path, rows=5_000)
    out = tmp_path / "out" / "pairs.jsonl"
    out.parent.mkdir()
    child = _start_and_wait_for_partial(src, out)
    child.kill()
    child.communicate()
    (partial,) = list(out.parent.iterdir())
    assert f".{child.pid}." in partial.name and not out.exists()
    # A partial of a live writer (this test's pid) is left alone.
    alive = out.parent / partial.name.replace(f".{child.pid}.", f".{os.getpid()}.")
    alive.write_bytes(b"being written")
    result = _run_cli(["pair", str(src), str(out), "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, alive.name])
    fresh = tmp_path / "fresh.jsonl"
    assert _run_cli(["pair", str(src), str(fresh), "--quiet"], tmp_path).returncode == 0
    assert out.read_bytes() == fresh.read_bytes()


def test_a_killed_output_shards_run_is_never_mistaken_for_output(tmp_path: Path) -> None:
    from dpov2.formats.atomic import atomic_folder

    out = tmp_path / "pairs"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is now that of no process (and not reused this soon)
    dead = tmp_path / f".pairs.{_host()}.{gone.pid}.abcdefgh.partial"
    dead.mkdir()
    (dead / "part-00000.parquet").write_bytes(b"half")
    with atomic_folder(out, overwrite=False, owned=lambda name: True) as folder:
        (folder / "part-00000.parquet").write_bytes(b"whole")
    assert not dead.exists()
    assert [p.name for p in out.iterdir()] == ["part-00000.parquet"]


def _host() -> str:
    from dpov2.formats import atomic

    return atomic._HOST


def test_reader_errors_name_every_column_of_a_foreign_dataset(tmp_path: Path) -> None:
    args, _, _ = _saved_paired(tmp_path)
    with pytest.raises(InputError, match="columns: prompt, chosen, rejected, margin"):
        list(open_scored(args[1]).batches)
