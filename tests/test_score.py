"""`dpov2 score`: rewards equal to a direct forward pass of the reward model, batched or not;
the chat-templated reward input; truncation; the generate -> score -> pair chain; mistakes as
exit code 2 and one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForSequenceClassification

from dpov2.cli import main
from dpov2.errors import InputError
from dpov2.score import ScoreArguments, load_reward_model, reward_texts, score
from dpov2.tiny_model import TINY_REWARD_MODEL, build_tiny_reward_model, build_tiny_tokenizer

PROMPTS_SAMPLE = Path(__file__).parent.parent / "examples" / "data" / "prompts_sample.json"
USER = {"role": "user", "content": "Question: is this good?"}
ROWS = [
    {"input": [USER], "output": ["yes it is good", "no", "bad bad bad, not good at all"]},
    {"input": [{"role": "user", "content": "hi"}], "output": ["hello world", "thank you", "?"]},
    {"input": [{"role": "user", "content": "count"}], "output": ["1 2 3", "0 1 2 3 4 5 6"]},
]


def write_textlist(path: Path, rows: list[object]) -> Path:
    path.write_text(json.dumps({"type": "text_to_textlist", "instances": rows}), "utf-8")
    return path


def scores_of(path: Path) -> list[list[float]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [[response["score"] for response in row["output"]] for row in rows]


def direct_scores(rows: list[dict[str, object]], *, block_size: int = 2048) -> list[list[float]]:
    """Each text alone through the reward model, unpadded."""
    model, tokenizer = load_reward_model(TINY_REWARD_MODEL)
    result = []
    for row in rows:
        texts = reward_texts(tokenizer, row["input"], row["output"])  # type: ignore[arg-type]
        chat = not isinstance(row["input"], str)
        row_scores = []
        for text in texts:
            ids = tokenizer(text, add_special_tokens=not chat, return_tensors="pt")["input_ids"]
            with torch.inference_mode():
                row_scores.append(float(model(input_ids=ids[:, :block_size]).logits[0, 0]))
        result.append(row_scores)
    return result


def test_reward_input_is_prompt_and_response_through_the_chat_template() -> None:
    tokenizer = build_tiny_tokenizer()
    assert reward_texts(tokenizer, [USER], ["yes"]) == [
        "<|bos|><|user|>Question: is this good?<|eos|><|assistant|>yes<|eos|>"
    ]
    assert reward_texts(tokenizer, "Q: ", ["a", "b"]) == ["Q: a", "Q: b"]


def test_tiny_reward_model_is_seeded_and_has_one_label() -> None:
    tokenizer = build_tiny_tokenizer()
    first, again = build_tiny_reward_model(tokenizer), build_tiny_reward_model(tokenizer)
    other = build_tiny_reward_model(tokenizer, seed=5)
    ids = tokenizer(["good", "bad answer"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits = first(**ids).logits
        assert torch.equal(logits, again(**ids).logits)
        assert not torch.equal(logits, other(**ids).logits)
    assert logits.shape == (2, 1)


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_scores_equal_a_direct_forward_pass_batched_or_not(tmp_path: Path, batch_size: int) -> None:
    source = write_textlist(tmp_path / "gen.json", ROWS)  # type: ignore[arg-type]
    out = tmp_path / "scored.jsonl"
    args = ScoreArguments(
        reward_model_name_or_path=TINY_REWARD_MODEL,
        dataset_path=str(source),
        results_path=str(out),
        reward_model_inference_batch_size=batch_size,
    )
    result = score(args)
    assert (result.prompts, result.responses, result.truncated) == (3, 8, 0)
    got, expected = scores_of(out), direct_scores(ROWS)  # type: ignore[arg-type]
    assert [len(row) for row in got] == [3, 3, 2]
    for row_got, row_expected in zip(got, expected, strict=True):
        assert row_got == pytest.approx(row_expected, rel=1e-5, abs=1e-6)
    assert len({s for row in got for s in row}) == 8  # distinct rewards: a real signal
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["input"] for row in rows] == [row["input"] for row in ROWS]
    assert [[r["text"] for r in row["output"]] for row in rows] == [r["output"] for r in ROWS]


def test_text_prompts_and_the_block_size_cut(tmp_path: Path) -> None:
    rows = [{"input": "Question: ", "output": ["yes it is good", "no"]}]
    source = write_textlist(tmp_path / "gen.json", rows)  # type: ignore[arg-type]
    out = tmp_path / "scored.json"
    args = ScoreArguments(
        reward_model_name_or_path=TINY_REWARD_MODEL,
        dataset_path=str(source),
        results_path=str(out),
        reward_model_inference_block_size=2,
    )
    assert score(args).truncated == 2
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["type"] == "text_to_scored_textlist"
    got = [[r["score"] for r in row["output"]] for row in data["instances"]]
    assert got[0] == pytest.approx(direct_scores(rows, block_size=2)[0], rel=1e-5)  # type: ignore[arg-type]


def test_generate_score_pair_chain_gives_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generated, scored, pairs = tmp_path / "gen.json", tmp_path / "scored.json", tmp_path / "p.jsonl"
    assert (
        main(
            [
                "generate",
                "--model_name_or_path",
                "dpov2:tiny",
                "--dataset_path",
                str(PROMPTS_SAMPLE),
                "--results_path",
                str(generated),
                "--num_output_sequences",
                "3",
                "--max_new_tokens",
                "6",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "score",
                "--reward_model_name_or_path",
                TINY_REWARD_MODEL,
                "--dataset_path",
                str(generated),
                "--results_path",
                str(scored),
                "--reward_model_inference_batch_size",
                "4",
            ]
        )
        == 0
    )
    assert "wrote 24 scored responses to 8 prompts" in capsys.readouterr().out
    assert main(["pair", str(scored), str(pairs), "--method", "max_min", "--quiet"]) == 0
    rows = [json.loads(line) for line in pairs.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 8
    assert rows[0]["prompt"] == [{"role": "user", "content": "Question: what is the answer?"}]
    assert all(row["margin"] > 0 and row["chosen"] != row["rejected"] for row in rows)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"input": "a", "output": ["x", 3]}], "row 0, field 'output[1]': expected a string"),
        ([{"input": "a"}], "row 0, field 'output': expected a list of response texts"),
        ([{"input": {"role": "user"}, "output": []}], "row 0, field 'input': expected a string"),
        (
            [{"input": "a", "output": ["x"]}, {"input": [USER], "output": ["y"]}],
            "row 1, field 'input': a chat prompt after text ones",
        ),
    ],
)
def test_bad_rows_exit_2_with_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[object], message: str
) -> None:
    source = write_textlist(tmp_path / "gen.json", rows)
    out = tmp_path / "scored.jsonl"
    code = main(
        [
            "score",
            "--reward_model_name_or_path",
            TINY_REWARD_MODEL,
            "--dataset_path",
            str(source),
            "--results_path",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (code, len(err)) == (2, 1)
    assert err[0].startswith(f"dpov2 score: error: {source}: ")
    assert message in err[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gen.json"]


def test_model_and_setting_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = build_tiny_tokenizer()
    two = build_tiny_reward_model(tokenizer)
    two.config.num_labels = 2
    folder = tmp_path / "two-labels"
    LlamaForSequenceClassification(two.config).save_pretrained(folder)  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(folder)
    with pytest.raises(InputError, match="has 2 labels; a reward model has one"):
        load_reward_model(str(folder))
    with pytest.raises(InputError, match="no such folder"):
        load_reward_model(str(tmp_path / "missing"))
    source = write_textlist(tmp_path / "gen.json", ROWS)  # type: ignore[arg-type]
    capsys.readouterr()
    for flags, message in (
        (["--reward_arch_type", "pairwise"], "field 'reward_arch_type'"),
        (["--reward_torch_dtype", "int8"], "field 'reward_torch_dtype': unknown dtype"),
        (["--reward_model_inference_batch_size", "0"], "must be >= 1, got 0"),
        (["--results_path", str(source)], "already exists"),
    ):
        code = main(
            [
                "score",
                "--reward_model_name_or_path",
                TINY_REWARD_MODEL,
                "--dataset_path",
                str(source),
                "--results_path",
                str(tmp_path / "o.json"),
                *flags,
            ]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert (code, len(err)) == (2, 1), flags
        assert message in err[0]
    assert json.loads(source.read_text("utf-8"))["instances"] == ROWS
