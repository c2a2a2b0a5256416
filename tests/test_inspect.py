"""`dpov2 inspect` and `dpov2 pair --summary-json`: the same statistics of the same pairs, in
every format; the plot; every bad input is exit code 2 and one line."""

from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpov2.cli import main
from dpov2.convert.summary import JSON_VERSION, PairStats
from dpov2.report import inspect_pairs, pairs_figure

# Prompt i has i % 4 + 1 responses of lengths varying with the score; every fifth is a tie.
ROWS = [
    {
        "input": f"prompt {i}",
        "output": [
            {
                "text": "é" * ((i * 13 + k * 29) % 41) + f" {i}.{k}",
                "score": float((i * 7 + k * 3) % 5 if i % 5 else 1),
            }
            for k in range(i % 4 + 1)
        ],
    }
    for i in range(60)
]


def scored(tmp_path: Path) -> Path:
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("out_name", ["pairs.jsonl", "pairs.json", "pairs.parquet"])
def test_inspect_of_the_written_file_gives_the_pair_summary_json(
    tmp_path: Path, out_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = tmp_path / out_name, tmp_path / "summary.json"
    code, printed, _ = run(
        capsys, "pair", scored(tmp_path), out, "--method", "random", "--summary-json", summary
    )
    assert code == 0
    written = json.loads(summary.read_text())
    assert written["version"] == JSON_VERSION
    assert written["prompts"]["read"] == 60
    assert written["prompts"]["paired"] == written["pairs"] > 0
    assert written["prompts"]["dropped"]["too_few_responses"] == 15
    assert written["length"]["unit"] == "characters"
    code, inspected, _ = run(capsys, "inspect", out, "--json")
    assert code == 0
    seen = json.loads(inspected)
    assert seen["prompts"] is None and seen["version"] == JSON_VERSION
    for part in ("pairs", "margin", "length"):
        assert seen[part] == written[part], part
    # The printed statistics too: inspect's lines are pair's, after the prompt counts.
    code, text, _ = run(capsys, "inspect", out)
    assert text.splitlines()[1:] == printed.splitlines()[3:5]


@pytest.mark.parametrize("path", [[], ["--no-fast"]])
def test_with_length_limits_the_summary_reports_the_pairs_without_them(
    tmp_path: Path, path: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The length-bias report before and after the limits: ``before_length_limits`` holds
    the statistics of the same pairing without the limits, as that run's own summary."""
    common = ["--method", "all_pairs", "--pairs-per-prompt", "3", *path]
    summaries = {}
    for name, limits in (("limited", ["--max-length-ratio", "1.5"]), ("free", [])):
        out, summary = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        code, printed, _ = run(
            capsys, "pair", scored(tmp_path), out, *common, *limits, "--summary-json", summary
        )
        assert code == 0
        summaries[name] = (json.loads(summary.read_text()), printed)
    (limited, printed), (free, _) = summaries["limited"], summaries["free"]
    assert free["before_length_limits"] is None
    before = limited["before_length_limits"]
    assert before == {part: free[part] for part in ("pairs", "margin", "length")}
    assert limited["pairs"] < free["pairs"]
    assert f"before length limits ({free['pairs']} pairs), length" in printed


def test_summary_json_matches_the_pairs_computed_directly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = tmp_path / "p.jsonl", tmp_path / "s.json"
    code, _, _ = run(capsys, "pair", scored(tmp_path), out, "--quiet", "--summary-json", summary)
    assert code == 0 and summary.exists()  # written with --quiet too
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    difference = np.array([len(p["chosen"]) - len(p["rejected"]) for p in pairs], float)
    margins = np.array([p["margin"] for p in pairs])
    length = json.loads(summary.read_text())["length"]
    assert length["chosen_longer"] == np.count_nonzero(difference > 0)
    assert length["difference_mean"] == pytest.approx(difference.mean())
    assert length["difference_margin_correlation"] == pytest.approx(
        np.corrcoef(difference, margins)[0, 1]
    )


def test_summary_json_is_refused_before_pairing_if_it_exists_and_replaced_with_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out, summary = scored(tmp_path), tmp_path / "p.jsonl", tmp_path / "s.json"
    summary.write_text("old")
    code, _, err = run(capsys, "pair", source, out, "--summary-json", summary)
    assert (
        code == 2
        and err == f"dpov2 pair: error: {summary}: already exists; pass --overwrite to replace it\n"
    )
    assert not out.exists() and summary.read_text() == "old"
    code, _, err = run(capsys, "pair", source, out, "--summary-json", source)
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "pair", source, out, "--summary-json", out, "--overwrite")
    assert err == f"dpov2 pair: error: {out}: is OUTPUT; choose another file\n"
    assert not out.exists()
    code, _, _ = run(capsys, "pair", source, out, "--summary-json", summary, "--overwrite")
    assert code == 0 and json.loads(summary.read_text())["version"] == JSON_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "s.json", "scored.jsonl"]


@pytest.mark.parametrize("batch_size", [1, 7])
def test_inspect_is_the_same_for_every_batch_size_and_format(
    tmp_path: Path, batch_size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["pair", str(scored(tmp_path)), str(out), "--quiet"]) == 0
    expected = inspect_pairs(out).to_json()
    assert inspect_pairs(out, batch_size=batch_size).to_json() == expected
    table = pa.Table.from_pylist([json.loads(line) for line in out.read_text().splitlines()])
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=5)
    assert inspect_pairs(tmp_path / "p.parquet").to_json() == expected
    import datasets

    datasets.Dataset(table).save_to_disk(str(tmp_path / "saved"))
    assert inspect_pairs(tmp_path / "saved", batch_size=batch_size).to_json() == expected


def test_chat_message_pairs_count_the_characters_of_the_contents(tmp_path: Path) -> None:
    import datasets

    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "yo"}],
            "margin": 1.0,
        }
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "chat"))
    length = inspect_pairs(tmp_path / "chat").to_json()["length"]
    assert (length["chosen_mean"], length["rejected_mean"], length["chosen_longer"]) == (5, 2, 1)


def test_a_file_without_margins_has_its_margin_statistics_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nomargin.parquet"
    pq.write_table(
        pa.table({"prompt": ["a", "b"], "chosen": ["xyz", "x"], "rejected": ["x", "xy"]}), path
    )
    code, out, _ = run(capsys, "inspect", path, "--json")
    report = json.loads(out)
    assert code == 0 and report["pairs"] == 2 and report["margin"] is None
    assert report["length"]["chosen_longer"] == 1
    assert report["length"]["difference_margin_correlation"] is None
    code, out, _ = run(capsys, "inspect", path)
    assert out.splitlines()[:2] == ["pairs: 2", "margin: none in the file"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_draws_the_margin_histogram_and_the_length_scatter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "p.parquet", tmp_path / "plot.png"
    assert main(["pair", str(scored(tmp_path)), str(out), "--quiet"]) == 0
    code, printed, _ = run(capsys, "inspect", out, "--plot", png)
    assert code == 0 and printed.startswith("pairs: ")
    assert png_size(png) == (1100, 450)
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[:2] == (450, 1100) and pixels.std() > 0  # drawn, not blank
    figure = pairs_figure(inspect_pairs(out), "p")
    margins_axes, lengths_axes = figure.axes
    assert len(margins_axes.patches) > 0  # histogram bars
    assert lengths_axes.collections[0].get_offsets().shape == (inspect_pairs(out).pairs, 2)
    code, _, err = run(capsys, "inspect", out, "--plot", png)
    assert code == 2 and "already exists; pass --overwrite" in err
    assert run(capsys, "inspect", out, "--plot", png, "--overwrite")[0] == 0


def test_plot_without_matplotlib_is_one_line_naming_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, png = tmp_path / "p.jsonl", tmp_path / "plot.png"
    assert main(["pair", str(scored(tmp_path)), str(out), "--quiet"]) == 0
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # an import of it raises ImportError
    code, _, err = run(capsys, "inspect", out, "--plot", png)
    assert code == 2
    assert err == (
        "dpov2 inspect: error: --plot needs matplotlib; install it with: "
        "pip install 'dpov2[plot]'\n"
    )
    assert not png.exists() and list(tmp_path.glob(".plot.png*")) == []


BAD_ROW = '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": 3}\n'


def text_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bad_parquet(path: Path, **columns: Any) -> Path:
    base: dict[str, Any] = {"prompt": ["a", "b", "c"], "chosen": ["x", "y", "z"]}
    base["rejected"] = ["u", "v", "w"]
    base.update(columns)
    pq.write_table(pa.table(base), path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.jsonl", r"missing.jsonl: no such file or folder$"),
        (
            lambda p: scored(p),
            r"scored.jsonl: is a text_to_scored_textlist dataset, not paired_text_to_text$",
        ),
        (
            lambda p: text_file(p / "bad.jsonl", BAD_ROW),
            r"bad.jsonl: row 1 \(byte \d+\), field 'chosen': expected a string",
        ),
        (
            lambda p: bad_parquet(p / "nan.parquet", margin=[1.0, float("nan"), 2.0]),
            r"nan.parquet: row 1, field 'margin': nan; expected a finite number$",
        ),
        (
            lambda p: bad_parquet(p / "text.parquet", margin=["1", "2", "3"]),
            r"text.parquet: field 'margin': has type string; expected numbers$",
        ),
        (
            lambda p: bad_parquet(p / "null.parquet", rejected=["u", None, "w"]),
            r"null.parquet: row 1, field 'rejected': null; expected a text$",
        ),
        (
            lambda p: text_file(p / "pairs.txt", "x"),
            r"pairs.txt: cannot tell the format from the extension '.txt'",
        ),
        (
            lambda p: text_file(p / "garbage.parquet", "not parquet"),
            r"garbage.parquet: not a readable Parquet file",
        ),
    ],
    ids=[
        "missing",
        "scored",
        "bad-row",
        "nan-margin",
        "text-margin",
        "null-text",
        "ext",
        "garbage",
    ],
)
def test_bad_input_is_exit_2_and_one_line(
    tmp_path: Path, make: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make(tmp_path)
    code, out, err = run(capsys, "inspect", path, "--json")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dpov2 inspect: error: "), err
    assert re.search(message, err.strip()), err


def test_inspect_refuses_a_batch_size_below_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.jsonl"
    assert main(["pair", str(scored(tmp_path)), str(out), "--quiet"]) == 0
    code, _, err = run(capsys, "inspect", out, "--batch-size", "0")
    assert code == 2 and "batch size must be at least 1, got 0" in err


def test_empty_stats_json_has_null_sections() -> None:
    assert PairStats().to_json() == {"pairs": 0, "margin": None, "length": None}
