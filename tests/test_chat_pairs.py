"""Chat-message pairs end to end: ``dpov2 pair`` writes chat-prompt pairs in TRL's
conversational format in every output format, ``read_pairs`` reads every paired layout
(string or chat completions, TRL's implicit prompt, LMFlow's ``paired_conversation``) into
conversational rows that plain ``trl.DPOTrainer`` trains on, and every refusal is located."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from plain_trl import plain_trl_trainer

from dpov2.cli import main
from dpov2.errors import InputError
from dpov2.formats import as_conversational, conversational_schema
from dpov2.formats.instances import PAIRED_TYPE
from dpov2.formats.kinds import dataset_type, read_pairs

OUTPUTS = (".jsonl", ".json", ".parquet")


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_lmflow(path: Path, kind: str, rows: list[Any]) -> Path:
    path.write_text(json.dumps({"type": kind, "instances": rows}))
    return path


def scored_chat(n: int) -> list[dict[str, Any]]:
    return [
        {
            "input": [user(f"question {i}")],
            "output": [{"text": f"good {i}", "score": 1.0}, {"text": f"bad {i}", "score": 0.0}],
        }
        for i in range(n)
    ]


def conversational(i: int) -> dict[str, Any]:
    return {
        "prompt": [user(f"question {i}")],
        "chosen": [assistant(f"good {i}")],
        "rejected": [assistant(f"bad {i}")],
        "margin": 1.0,
    }


@pytest.fixture(scope="module")
def paired_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``dpov2 pair`` of a chat-prompt scored JSON Lines file, in each output format."""
    folder = tmp_path_factory.mktemp("pairs")
    source = write_jsonl(folder / "scored.jsonl", scored_chat(4))
    outputs = {}
    for suffix in OUTPUTS:
        out = folder / f"pairs{suffix}"
        assert main(["pair", str(source), str(out), "--method", "max_min"]) == 0
        outputs[suffix] = out
    return outputs


@pytest.mark.parametrize("suffix", OUTPUTS)
def test_pair_writes_chat_prompts_as_conversations(
    paired_files: dict[str, Path], suffix: str
) -> None:
    path = paired_files[suffix]
    if suffix == ".parquet":
        written = pq.read_table(path).to_pylist()
    elif suffix == ".json":
        document = json.loads(path.read_text())
        assert document["type"] == PAIRED_TYPE
        written = document["instances"]
    else:
        written = [json.loads(line) for line in path.read_text().splitlines()]
    assert written == [conversational(i) for i in range(4)]
    assert dataset_type(path) == PAIRED_TYPE
    assert read_pairs(path).to_list() == written


def test_a_written_pair_file_trains_with_plain_trl(
    paired_files: dict[str, Path], tmp_path: Path
) -> None:
    """What failed with a TypeError (list + str) before: TRL's own trainer, one step."""
    from dpov2.tiny_model import build_tiny_tokenizer

    assert build_tiny_tokenizer().chat_template
    trainer = plain_trl_trainer(read_pairs(paired_files[".parquet"]), tmp_path)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 1 and losses[0] > 0


def test_the_conversion_keeps_null_rows_and_leaves_other_tables() -> None:
    table = pa.table(
        {
            "prompt": pa.array([[user("q")], [user("r")]]),
            "chosen": pa.array(["a", None]),
            "rejected": pa.array(["b", None]),
        }
    )
    turned = as_conversational(table)
    assert turned.column("chosen").to_pylist() == [[assistant("a")], None]
    assert turned.column("rejected").to_pylist() == [[assistant("b")], None]
    assert as_conversational(turned) is turned
    assert conversational_schema(table.schema) == turned.schema
    text = pa.table({"prompt": ["p"], "chosen": ["a"], "rejected": ["b"]})
    assert as_conversational(text) is text
    assert conversational_schema(text.schema) == text.schema


SHARED = [user("hi"), assistant("hello"), user("tell me")]


def test_every_paired_layout_reads_as_conversational_rows(tmp_path: Path) -> None:
    expected = {
        "prompt": SHARED,
        "chosen": [assistant("yes")],
        "rejected": [assistant("no")],
        "margin": None,
    }
    layouts = {
        # LMFlow's paired_text_to_text with a chat prompt, as dpov2 wrote it before.
        "legacy.jsonl": [{"prompt": SHARED, "chosen": "yes", "rejected": "no"}],
        "explicit.jsonl": [{k: v for k, v in expected.items() if k != "margin"}],
        # TRL's implicit prompt.
        "implicit.jsonl": [
            {"chosen": [*SHARED, assistant("yes")], "rejected": [*SHARED, assistant("no")]}
        ],
    }
    for name, rows in layouts.items():
        assert read_pairs(write_jsonl(tmp_path / name, rows)).to_list() == [expected], name
    # LMFlow's paired_conversation: the system prompt joins the shared prompt.
    conversation = [
        {
            side: {"conversation_id": "c", "system": "be brief", "tools": [], "messages": value}
            for side, value in (
                ("chosen", [*SHARED, assistant("yes")]),
                ("rejected", [*SHARED, assistant("no")]),
            )
        }
    ]
    path = write_lmflow(tmp_path / "conv.json", "paired_conversation", conversation)
    assert dataset_type(path) == PAIRED_TYPE
    system = {"role": "system", "content": "be brief"}
    assert read_pairs(path).to_list() == [{**expected, "prompt": [system, *SHARED]}]


HOSTILE = {
    "mixed completion kinds in a file": (
        [conversational(0), {"prompt": [user("q")], "chosen": "a", "rejected": "b"}],
        1,
        "chosen",
        "expected chat messages, like the rows before, got a string",
    ),
    "mixed prompt kinds in a file": (
        [conversational(0), {"prompt": "q", "chosen": [assistant("a")], "rejected": []}],
        1,
        "prompt",
        "expected chat messages, like the rows before",
    ),
    "chosen and rejected of two kinds": (
        [{"prompt": [user("q")], "chosen": [assistant("a")], "rejected": "b"}],
        0,
        "rejected",
        "expected chat messages, as chosen is, got a string",
    ),
    "a message without a role": (
        [{"prompt": [user("q")], "chosen": [{"content": "a"}], "rejected": [assistant("b")]}],
        0,
        "chosen[0].role",
        "missing; expected a string",
    ),
    "a message without content": (
        [{"chosen": [user("q"), {"role": "assistant"}], "rejected": [user("q")]}],
        0,
        "chosen[1].content",
        "missing; expected a string",
    ),
    "content not a string": (
        [{"prompt": [user("q")], "chosen": [assistant("a")], "rejected": [assistant(7)]}],  # type: ignore[arg-type]
        0,
        "rejected[0].content",
        "expected a string, got 7",
    ),
    "an implicit prompt with no common prefix": (
        [{"chosen": [user("q"), assistant("a")], "rejected": [user("r"), assistant("b")]}],
        0,
        "prompt",
        "missing, and chosen and rejected share no first message",
    ),
    "chosen only the shared prefix": (
        [{"chosen": [user("q")], "rejected": [user("q"), assistant("b")]}],
        0,
        "chosen",
        "is all prompt",
    ),
    "rejected equal to chosen": (
        [{"chosen": [user("q"), assistant("a")], "rejected": [user("q"), assistant("a")]}],
        0,
        "chosen",
        "is all prompt",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_hostile_pairs_are_located_problems(tmp_path: Path, case: str, suffix: str) -> None:
    rows, row, field, message = HOSTILE[case]
    path = tmp_path / f"bad{suffix}"
    if suffix == ".json":
        write_lmflow(path, PAIRED_TYPE, rows)
    else:
        write_jsonl(path, rows)
    with pytest.raises(InputError) as raised:
        read_pairs(path)
    error = raised.value
    assert (error.file, error.row, error.field) == (str(path), row, field)
    assert error.message.startswith(message), error.message
    data = path.read_bytes()
    # The byte is where the offending value (or the row missing a member) starts.
    assert error.byte is not None and chr(data[error.byte]) in '{["0123456789', error.byte


def test_a_datasets_folder_of_legacy_chat_pairs_is_turned_too(tmp_path: Path) -> None:
    rows = [{"prompt": [user("q")], "chosen": "a", "rejected": "b", "margin": 1.0}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    assert read_pairs(tmp_path / "saved").to_list() == [
        {
            "prompt": [user("q")],
            "chosen": [assistant("a")],
            "rejected": [assistant("b")],
            "margin": 1.0,
        }
    ]
