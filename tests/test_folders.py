"""A folder of dataset files is one dataset, the concatenation of its files in name order:
for ``dpov2 pair`` (``open_scored``) and for ``read_pairs`` (``dpov2 align``), with rows keyed
across files and problems named by their file and row there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dpov2.cli import main
from dpov2.convert import convert_to_paired_dataset
from dpov2.errors import InputError
from dpov2.formats import dataset_files, open_scored
from dpov2.formats.instances import PAIRED_TYPE, SCORED_TYPE
from dpov2.formats.kinds import dataset_type, read_pairs


def lmflow(path: Path, kind: str, rows: list[Any]) -> Path:
    path.write_text(json.dumps({"type": kind, "instances": rows}))
    return path


def scored(i: int) -> dict[str, Any]:
    return {
        "input": f"prompt {i}",
        "output": [{"text": f"r{i}.{k}", "score": float((i * 7 + k * 3) % 5)} for k in range(4)],
    }


def pair(i: int) -> dict[str, Any]:
    return {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "margin": float(i)}


def test_the_files_of_a_folder_are_taken_in_name_order(tmp_path: Path) -> None:
    for name in ("b.json", "a.jsonl", "c.PARQUET", ".hidden.json", "notes.txt", "_SUCCESS"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.json").mkdir()
    assert [(p.name, f) for p, f in dataset_files(tmp_path)] == [
        ("a.jsonl", "jsonl"),
        ("b.json", "json"),
        ("c.PARQUET", "parquet"),
    ]
    named = [p.name for p, _ in dataset_files(tmp_path, "jsonl")]
    assert named == ["_SUCCESS", "a.jsonl", "b.json", "c.PARQUET", "notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: holds no dataset file"):
        dataset_files(empty)


def test_pairing_a_folder_equals_pairing_its_concatenation(tmp_path: Path) -> None:
    """The random draws are keyed by the row in the concatenation, not in each file."""
    rows = [scored(i) for i in range(30)]
    folder = tmp_path / "shards"
    folder.mkdir()
    lmflow(folder / "part-0.json", SCORED_TYPE, rows[:10])
    lmflow(folder / "part-1.json", SCORED_TYPE, rows[10:25])
    lmflow(folder / "part-2.json", SCORED_TYPE, rows[25:])
    (folder / ".part-3.json").write_text("not read")
    whole = lmflow(tmp_path / "whole.json", SCORED_TYPE, rows)
    outputs = []
    for source in (folder, whole):
        out = tmp_path / f"{source.stem}.jsonl"
        assert main(["pair", str(source), str(out), "--method", "random", "--seed", "3"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 30
    source = open_scored(folder, batch_size=4)
    assert source.total == sum(p.stat().st_size for p in folder.glob("part-*"))
    batches = list(source.batches)
    assert sum(b.progress for b in batches) == source.total
    assert [b.first_row for b in batches][:5] == [0, 4, 8, 10, 14]


def test_a_bad_row_in_a_folder_names_its_file_and_row_there(tmp_path: Path) -> None:
    bad = scored(1)
    bad["output"][2]["score"] = "high"
    lmflow(tmp_path / "a.json", SCORED_TYPE, [scored(0)] * 3)
    lmflow(tmp_path / "b.json", SCORED_TYPE, [scored(0), bad])
    with pytest.raises(InputError) as raised:
        convert_to_paired_dataset(tmp_path)
    error = raised.value
    assert (error.file, error.row, error.field) == (str(tmp_path / "b.json"), 1, "output[2].score")
    kept = convert_to_paired_dataset(tmp_path, skip_invalid=True)
    assert len(kept) == 4


@pytest.mark.parametrize("use_fast", [True, False])
def test_problems_the_pairing_finds_name_the_file_and_row_there(
    tmp_path: Path, use_fast: bool
) -> None:
    """Problems found after reading (a null score in a Parquet file, which its reader does not
    check; a margin that overflows) name the folder's file and the row within it, too."""
    null_score = scored(1)
    null_score["output"][3]["score"] = None
    huge = {"input": "h", "output": [{"text": "a", "score": 1e308}, {"text": "b", "score": -1e308}]}
    lmflow(tmp_path / "a.json", SCORED_TYPE, [scored(0)] * 3)
    pq.write_table(pa.Table.from_pylist([scored(2), null_score]), tmp_path / "b.parquet")
    lmflow(tmp_path / "c.json", SCORED_TYPE, [scored(3), scored(4), huge])
    with pytest.raises(InputError) as raised:
        convert_to_paired_dataset(tmp_path, use_fast=use_fast)
    error = raised.value
    assert (error.file, error.row, error.field) == (
        str(tmp_path / "b.parquet"),
        1,
        "output[3].score",
    )
    (tmp_path / "b.parquet").unlink()
    with pytest.raises(InputError) as raised:
        convert_to_paired_dataset(tmp_path, use_fast=use_fast, sampling_paired_method="max_min")
    error = raised.value
    assert (error.file, error.row, error.field) == (str(tmp_path / "c.json"), 2, "margin")


def test_a_folder_mixes_formats_but_not_prompt_kinds(tmp_path: Path) -> None:
    chat = {"input": [{"role": "user", "content": "q"}], "output": scored(0)["output"]}
    pq.write_table(pa.Table.from_pylist([scored(0)]), tmp_path / "a.parquet")
    lmflow(tmp_path / "b.json", SCORED_TYPE, [scored(1)])
    assert len(convert_to_paired_dataset(tmp_path)) == 2
    (tmp_path / "c.jsonl").write_text(json.dumps(chat) + "\n")
    with pytest.raises(InputError) as raised:
        convert_to_paired_dataset(tmp_path)
    assert raised.value.file == str(tmp_path / "c.jsonl")
    assert raised.value.field == "input"
    assert "as in a.parquet" in raised.value.message


def test_read_pairs_reads_a_folder_of_paired_files(tmp_path: Path) -> None:
    lmflow(tmp_path / "1.json", PAIRED_TYPE, [pair(0), pair(1)])
    lmflow(tmp_path / "2.json", PAIRED_TYPE, [pair(2)])
    assert dataset_type(tmp_path) == PAIRED_TYPE
    assert read_pairs(tmp_path).to_list() == [pair(i) for i in range(3)]
    lmflow(tmp_path / "3.json", PAIRED_TYPE, [pair(3), {"prompt": "p", "chosen": "c"}])
    with pytest.raises(InputError) as raised:
        read_pairs(tmp_path)
    error = raised.value
    assert (error.file, error.row, error.field) == (str(tmp_path / "3.json"), 1, "rejected")


def test_the_files_of_a_pair_folder_have_the_same_columns(tmp_path: Path) -> None:
    with_index = {**pair(0), "chosen_index": 1, "rejected_index": 0}
    pq.write_table(pa.Table.from_pylist([with_index]), tmp_path / "1.parquet")
    (tmp_path / "2.jsonl").write_text(json.dumps({**pair(1), "chosen_index": 2}) + "\n")
    with pytest.raises(InputError) as raised:
        read_pairs(tmp_path)
    error = raised.value
    assert (error.file, error.row) == (str(tmp_path / "2.jsonl"), 0)
    assert "expected prompt, chosen, rejected, margin, chosen_index, rejected_index" in str(error)
    (tmp_path / "2.jsonl").write_text(json.dumps({**pair(1), **with_index}) + "\n")
    assert read_pairs(tmp_path).to_list() == [with_index, {**pair(1), **with_index}]


def test_a_folder_holds_files_of_one_type(tmp_path: Path) -> None:
    lmflow(tmp_path / "1.json", PAIRED_TYPE, [pair(0)])
    lmflow(tmp_path / "2.json", SCORED_TYPE, [scored(0)])
    with pytest.raises(InputError, match=r"2\.json: is a text_to_scored_textlist dataset, but 1"):
        dataset_type(tmp_path)


def test_a_save_to_disk_folder_is_still_one_dataset(tmp_path: Path) -> None:
    datasets.Dataset.from_list([pair(0)]).save_to_disk(str(tmp_path / "saved"))
    assert read_pairs(tmp_path / "saved").to_list() == [pair(0)]
