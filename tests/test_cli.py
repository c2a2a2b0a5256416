"""`dpov2 pair`: output files, identical across paths and batch sizes; every user mistake is
exit code 2, one line naming file, row and field, and no output file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dpov2 import cli
from dpov2.cli import PAIR_FLAGS, main
from dpov2.formats.kinds import read_pairs

# Prompt i has i % 4 + 1 responses; those of every fifth prompt all score 1 (a tie).
ROWS = [
    {
        "input": f"prompt {i}",
        "output": [
            {
                "text": f"answer {i}.{k} " + "é" * k,
                "score": float((i * 7 + k * 3) % 5 if i % 5 else 1),
            }
            for k in range(i % 4 + 1)
        ],
    }
    for i in range(40)
]
CHAT = {
    "input": [{"role": "user", "content": "hi"}],
    "output": [{"text": "hello", "score": 1.0}, {"text": "go", "score": 0.0}],
}


def write(path: Path, rows: list[object], lmflow_type: str | None = None) -> Path:
    if path.suffix == ".json":
        path.write_text(
            json.dumps(
                {"type": lmflow_type or "text_to_scored_textlist", "instances": rows}, indent=2
            )
        )
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("out_name", ["pairs.jsonl", "pairs.json", "pairs.parquet"])
def test_pair_writes_the_pairs_and_a_summary(
    tmp_path: Path, out_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "scored.json", ROWS)
    assert run("pair", source, tmp_path / out_name, "--method", "max_min", "--provenance") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "prompts read: 40",
        "pairs written: 24",
        "prompts dropped: 16 (10 too few responses, 6 tie, 0 duplicate responses, 0 below min "
        "margin, 0 length limits, 0 invalid, 0 non finite margin)",
    ]
    assert out[3].startswith("margin: mean ") and out[4].startswith("length (characters): ")
    assert out[5].startswith(f"wrote {tmp_path / out_name} in ")
    if out_name.endswith(".parquet"):
        pairs = pq.read_table(tmp_path / out_name).to_pylist()
    elif out_name.endswith(".json"):
        loaded = json.loads((tmp_path / out_name).read_text())
        assert loaded["type"] == "paired_text_to_text"
        pairs = loaded["instances"]
    else:
        pairs = [json.loads(line) for line in (tmp_path / out_name).read_text().splitlines()]
    assert len(pairs) == 24
    for pair in pairs:
        row = ROWS[int(pair["prompt"].split()[1])]
        chosen, rejected = (
            row["output"][pair["chosen_index"]],
            row["output"][pair["rejected_index"]],
        )
        assert (pair["chosen"], pair["rejected"]) == (chosen["text"], rejected["text"])
        assert pair["margin"] == chosen["score"] - rejected["score"] > 0
        assert chosen["score"] == max(r["score"] for r in row["output"])
    # Every format's pair reader gives back every column written, provenance included.
    assert read_pairs(tmp_path / out_name).to_list() == pairs


@pytest.mark.parametrize("out_name", ["p.jsonl", "p.json", "p.parquet"])
@pytest.mark.parametrize("in_name", ["s.jsonl", "s.json"])
def test_fast_and_no_fast_and_any_batch_size_write_identical_files(
    tmp_path: Path, in_name: str, out_name: str
) -> None:
    source = write(tmp_path / in_name, ROWS)
    outputs = []
    for k, extra in enumerate(
        [[], ["--no-fast"], ["--batch-size", "1"], ["--batch-size", "7", "--no-fast"]]
    ):
        out = tmp_path / f"{k}{out_name}"
        assert run("pair", source, out, "--length-penalty", "0.1", "--quiet", *extra) == 0
        outputs.append(out.read_bytes())
    assert outputs[1:] == outputs[:1] * 3


def test_parquet_and_dataset_folder_inputs_give_the_same_pairs(tmp_path: Path) -> None:
    import datasets

    source = write(tmp_path / "s.jsonl", ROWS)
    dataset = datasets.Dataset.from_list(ROWS)
    dataset.to_parquet(str(tmp_path / "s.parquet"))
    dataset.save_to_disk(str(tmp_path / "saved"))
    outs = []
    for k, path in enumerate([source, tmp_path / "s.parquet", tmp_path / "saved"]):
        assert run("pair", path, tmp_path / f"{k}.jsonl", "--quiet", "--seed", "5") == 0
        outs.append((tmp_path / f"{k}.jsonl").read_bytes())
    assert outs[1:] == outs[:1] * 2


def test_chat_prompts_are_passed_through(tmp_path: Path) -> None:
    source = write(tmp_path / "chat.jsonl", [CHAT, CHAT])
    assert run("pair", source, tmp_path / "out.jsonl", "--quiet") == 0
    pairs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert pairs[0] == {
        "prompt": CHAT["input"],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go"}],
        "margin": 1.0,
    }


def test_max_samples_min_margin_and_keep_ties(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "s.jsonl", ROWS)
    assert (
        run(
            "pair",
            source,
            tmp_path / "a.jsonl",
            "--max-samples",
            "10",
            "--method",
            "max_min",
            "--keep-ties",
            "--min-margin",
            "2",
        )
        == 0
    )
    out = capsys.readouterr().out
    # Of the first 10 prompts 3 have one response; the tie (prompt 5) is kept, margin 0 < 2.
    assert "prompts read: 10\n" in out and "3 too few responses, 0 tie" in out
    margins = [
        json.loads(line)["margin"] for line in (tmp_path / "a.jsonl").read_text().splitlines()
    ]
    assert margins and min(margins) >= 2


def test_tokenizer_lengths(tmp_path: Path) -> None:
    from dpov2.tiny_model import build_tiny_tokenizer

    build_tiny_tokenizer().save_pretrained(tmp_path / "tok")
    source = write(tmp_path / "s.jsonl", ROWS)
    args = ["pair", source, tmp_path / "t.jsonl", "--length-penalty", "1", "--quiet"]
    assert run(*args, "--tokenizer", tmp_path / "tok") == 0
    assert (
        run(
            *args[:2],
            tmp_path / "t2.jsonl",
            *args[3:],
            "--tokenizer",
            tmp_path / "tok",
            "--no-fast",
        )
        == 0
    )
    assert (tmp_path / "t.jsonl").read_bytes() == (tmp_path / "t2.jsonl").read_bytes()


def bad_score(value: str) -> str:
    good = json.dumps(ROWS[0])
    return (
        good
        + "\n"
        + '{"input": "p", "output": [{"text": "a", "score": 1}, {"text": "b", "score": '
        + value
        + "}]}\n"
    )


CASES = [
    (
        "missing.jsonl",
        '{"output": []}\n',
        r"row 0 \(byte 0\), field 'input': missing; expected the prompt",
    ),
    (
        "missing2.jsonl",
        '{"input": "p"}\n',
        r"row 0 \(byte 0\), field 'output': missing; expected a list",
    ),
    (
        "type.jsonl",
        '{"input": "p", "output": [{"text": 5, "score": 1}]}\n',
        r"row 0 \(byte \d+\), field 'output\[0\]\.text': expected a string, got 5",
    ),
    (
        "notlist.jsonl",
        '{"input": "p", "output": {"text": "a", "score": 1}}\n',
        r"row 0 \(byte \d+\), field 'output': expected a list of responses .*, got an object",
    ),
    (
        "score.jsonl",
        bad_score('"high"'),
        r"row 1 \(byte \d+\), field 'output\[1\]\.score': expected a number, got \"high\"",
    ),
    (
        "nan.jsonl",
        bad_score("NaN"),
        r"row 1 \(byte \d+\), field 'output\[1\]\.score': expected a number, got 'N'",
    ),
    (
        "inf.jsonl",
        bad_score("1e999"),
        r"row 1 \(byte \d+\), field 'output\[1\]\.score': 1e999 is out of the float64 range",
    ),
    (
        "null.jsonl",
        bad_score("null"),
        r"row 1 \(byte \d+\), field 'output\[1\]\.score': null; expected a number",
    ),
    (
        "malformed.jsonl",
        json.dumps(ROWS[0]) + '\n{"input": "p", "output": [\n',
        r"row 1 \(byte \d+\), field 'output\[0\]': expected a response .*, got the end of the row",
    ),
    ("empty.jsonl", "", r"empty\.jsonl: is empty$"),
    ("blank.json", "   \n", r"blank\.json: byte 4: empty input; expected an LMFlow object"),
    (
        "type.json",
        '{"type": "text2text", "instances": []}',
        r'type\.json: dataset type "text2text"; expected "text_to_scored_textlist"',
    ),
    (
        "truncated.json",
        '{"type": "text_to_scored_textlist", "instances": [{"input": "p", "output": [',
        r"truncated\.json: row 0 \(byte \d+\): the instance starting here never ends",
    ),
    (
        "lmrow.json",
        '{"type": "text_to_scored_textlist", "instances": ['
        + json.dumps(ROWS[0])
        + ', {"input": "p", "output": [{"text": "a", "score": "x"}]}]}',
        r"lmrow\.json: row 1 \(byte \d+\), field 'output\[0\]\.score': expected a number",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_exit_2_with_one_line_and_no_output(
    tmp_path: Path, name: str, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in" / name
    source.parent.mkdir()
    source.write_text(content)
    (tmp_path / "out").mkdir()
    assert run("pair", source, tmp_path / "out" / "pairs.jsonl") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dpov2 pair: error: {source}: "), err
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary file left


def test_skip_invalid_drops_and_counts_bad_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps(r) for r in ROWS[:4]] + [
        '{"input": "p", "output": 3}',
        "{oops",
        bad_score("NaN").splitlines()[1],
    ]
    source = tmp_path / "s.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert run("pair", source, tmp_path / "o.jsonl", "--skip-invalid") == 0
    assert (
        "prompts dropped: 4 (1 too few responses, 0 tie, 0 duplicate responses, 0 below min "
        "margin, 0 length limits, 3 invalid, 0 non finite margin)" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "best"], "--method: unknown sampling method 'best'"),
        (["--tie-order", "x"], "--tie-order: unknown tie order 'x'"),
        (["--key", "x"], "--key: unknown key 'x'"),
        (["--pairs-per-prompt", "0"], "--pairs-per-prompt: pairs per prompt must be at least 1"),
        (["--max-length-ratio", "0.5"], "--max-length-ratio: maximum length ratio must be"),
        (["--max-length-ratio", "inf"], "--max-length-ratio: maximum length ratio must be"),
        (["--max-length-diff", "-1"], "--max-length-diff: maximum length difference must be"),
        (["--length-penalty", "nan"], "length penalty must be a finite number, got nan"),
        (["--batch-size", "0"], "batch size must be at least 1, got 0"),
        (["--seed", "-3"], "seed must be an integer in"),
        (["--tokenizer", "/no/such/tokenizer"], "/no/such/tokenizer: no such folder"),
    ],
)
def test_bad_options_are_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "s.jsonl", ROWS)
    assert run("pair", source, tmp_path / "o.jsonl", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    if args[0] in PAIR_FLAGS.values():  # checked by dpov2, one line naming the flag
        assert err.count("\n") == 1 and err.startswith(f"dpov2 pair: error: {args[0]}: "), err
    assert not (tmp_path / "o.jsonl").exists()


def test_outputs_are_not_overwritten_unless_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "s.jsonl", ROWS)
    out = tmp_path / "o.jsonl"
    out.write_text("keep me")
    assert run("pair", source, out) == 2
    assert "o.jsonl: already exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert run("pair", source, out, "--overwrite", "--quiet") == 0
    assert out.read_text().count("\n") == 24
    assert run("pair", source, source, "--overwrite") == 2
    assert run("pair", source, tmp_path / "o.txt") == 2
    assert "cannot tell the format from the extension '.txt'" in capsys.readouterr().err
    assert run("pair", source, tmp_path / "o.txt", "--output-format", "jsonl", "--quiet") == 0


def test_a_failed_write_is_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "s.jsonl", ROWS)
    assert run("pair", source, "/proc/self/pairs.jsonl") == 1  # a folder no file can be made in
    err = capsys.readouterr().err
    assert err.startswith("dpov2 pair: error: [Errno ") and err.count("\n") == 1, err


def test_an_interrupted_run_leaves_no_output(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "benches/make_scored_dataset.py"),
            str(big),
            "--prompts",
            "200000",
            "--mean-chars",
            "30",
        ],
        check=True,
        capture_output=True,
    )
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    command = [
        sys.executable,
        "-m",
        "dpov2.cli",
        "pair",
        str(big),
        str(out_dir / "p.jsonl"),
        "--batch-size",
        "512",
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out_dir.iterdir()) and time.monotonic() < deadline:  # the temporary file
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted; no output written" in err
    assert list(out_dir.iterdir()) == []


def test_module_entry_point_and_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dpov2.cli", "pair", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "--length-penalty" in done.stdout
    done = subprocess.run([sys.executable, "-m", "dpov2.cli"], capture_output=True, text=True)
    assert done.returncode == 2 and "COMMAND" in done.stderr


def test_an_interrupt_after_the_pairs_are_in_place_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C while the summary is written, once the pairs file is in place: the message says
    what was written, not "no output"."""

    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_json", interrupted)
    src = write(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "pairs.jsonl"
    code = main(["pair", str(src), str(out), "--quiet", "--summary-json", str(tmp_path / "s.json")])
    assert code == 130
    assert capsys.readouterr().err == f"dpov2 pair: interrupted; {out} written\n"
    assert out.exists() and not (tmp_path / "s.json").exists()
