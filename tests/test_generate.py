"""`dpov2 generate`: prompt files of every accepted kind, batched seeded sampling on the tiny
model, the chat template, the text_to_textlist output, and every user mistake as exit code 2
and one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from dpov2.cli import main
from dpov2.errors import InputError
from dpov2.generate import (
    GenerateArguments,
    encode_prompts,
    generate,
    generate_responses,
    read_prompts,
    render_prompt,
)
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer

PROMPTS_SAMPLE = Path(__file__).parent.parent / "examples" / "data" / "prompts_sample.json"


@pytest.fixture(scope="module")
def tiny() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = build_tiny_tokenizer()
    return build_tiny_model(tokenizer).eval(), tokenizer


def arguments(tmp_path: Path, **settings: object) -> GenerateArguments:
    given: dict[str, object] = {
        "model_name_or_path": "dpov2:tiny",
        "dataset_path": str(PROMPTS_SAMPLE),
        "results_path": str(tmp_path / "out.json"),
        "num_output_sequences": 3,
        "max_new_tokens": 5,
        "inference_batch_size": 3,
    }
    given.update(settings)
    return GenerateArguments(**given)  # type: ignore[arg-type]


def write_lines(path: Path, *rows: object) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_responses_per_prompt_and_seeded(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    model, tokenizer = tiny
    prompts = read_prompts(PROMPTS_SAMPLE, apply_chat_template=True)[:3]
    args = arguments(tmp_path)
    first = generate_responses(model, tokenizer, prompts, args)
    assert [len(responses) for responses in first] == [3, 3, 3]
    assert all(isinstance(text, str) for responses in first for text in responses)
    torch.manual_seed(123)  # the global RNG plays no part
    assert generate_responses(model, tokenizer, prompts, args) == first
    other = generate_responses(model, tokenizer, prompts, arguments(tmp_path, random_seed=7))
    assert other != first
    later = generate_responses(model, tokenizer, prompts, args, first_row=3)
    assert later != first  # each batch draws by its place in the dataset


def test_chat_template_is_applied_and_text_prompts_are_fed_as_they_are(
    tiny: tuple[LlamaForCausalLM, PreTrainedTokenizerFast], tmp_path: Path
) -> None:
    model, tokenizer = tiny
    greedy = arguments(tmp_path, temperature=0.0, num_output_sequences=1, max_new_tokens=6)
    chat = [{"role": "user", "content": "hello"}]
    rendered = render_prompt(tokenizer, chat)
    assert rendered == "<|bos|><|user|>hello<|eos|><|assistant|>"
    one_bos = tokenizer(rendered, add_special_tokens=False)["input_ids"]  # the template's BOS
    assert encode_prompts(tokenizer, [chat])["input_ids"][0].tolist() == one_bos
    texts = encode_prompts(tokenizer, ["hello", "a much longer text prompt"])["input_ids"]
    assert texts[0, :2].tolist() == [tokenizer.pad_token_id] * 2  # left-padded for generate
    assert texts[1, 0] == tokenizer.bos_token_id
    for prompt, ids in (
        (chat, tokenizer(rendered, add_special_tokens=False, return_tensors="pt")),
        ("hello", tokenizer("hello", return_tensors="pt")),  # BOS added to text
    ):
        expected = model.generate(**ids, do_sample=False, max_new_tokens=6)
        text = tokenizer.decode(expected[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert generate_responses(model, tokenizer, [prompt], greedy) == [[text]]


def test_generate_writes_lmflow_textlist_the_same_for_the_same_config(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert generate(arguments(tmp_path, results_path=str(first))) == 8
    generate(arguments(tmp_path, results_path=str(second)))
    assert first.read_bytes() == second.read_bytes()
    data = json.loads(first.read_text(encoding="utf-8"))
    assert data["type"] == "text_to_textlist"
    rows = data["instances"]
    assert rows[0]["input"] == [{"role": "user", "content": "Question: what is the answer?"}]
    assert [len(row["output"]) for row in rows] == [3] * 8
    plain = tmp_path / "plain.jsonl"
    generate(arguments(tmp_path, results_path=str(plain), apply_chat_template=False))
    rows = [json.loads(line) for line in plain.read_text(encoding="utf-8").splitlines()]
    assert rows[1]["input"] == "Question: is this good or bad?"


def test_prompt_files_of_every_accepted_kind(tmp_path: Path) -> None:
    def lmflow(kind: str, *instances: object) -> Path:
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps({"type": kind, "instances": list(instances)}), "utf-8")
        return path

    user = {"role": "user", "content": "hi"}
    reply = {"role": "assistant", "content": "yo"}
    cases: list[tuple[Path, list[object]]] = [
        (lmflow("text_only", {"text": "a"}), [[{"role": "user", "content": "a"}]]),
        (lmflow("text2text", {"input": "b", "output": "x"}), [[{"role": "user", "content": "b"}]]),
        (
            lmflow(
                "conversation",
                {"system": "be kind", "messages": [user, reply]},  # the reply is dropped
                {"messages": [user, reply, user]},
            ),
            [[{"role": "system", "content": "be kind"}, user], [user, reply, user]],
        ),
        (
            write_lines(tmp_path / "rows.jsonl", {"prompt": "c"}, {"input": [user]}),
            [[{"role": "user", "content": "c"}], [user]],
        ),
    ]
    for path, expected in cases:
        assert read_prompts(path, apply_chat_template=True) == expected, path.name
    text_rows = write_lines(tmp_path / "text.jsonl", {"prompt": "c"}, {"input": "d"})
    assert read_prompts(text_rows, apply_chat_template=False) == ["c", "d"]
    folder = tmp_path / "folder"
    folder.mkdir()
    write_lines(folder / "1.jsonl", {"prompt": "one"})
    write_lines(folder / "2.jsonl", {"prompt": "two"})
    assert read_prompts(folder, apply_chat_template=False) == ["one", "two"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"prompt": "a"}, {"prompt": 3}], "row 1, field 'prompt': expected a string or a list"),
        ([{"input": [{"role": "user"}]}], "row 0, field 'input[0].content': missing"),
        ([{"input": "a", "prompt": "b"}], "row 0, field 'prompt': both input and prompt"),
        ([{"text": "a"}], "row 0: no prompt; expected one of input, prompt"),
        (
            [{"prompt": [{"role": "user", "content": "a"}]}],
            "row 0, field 'prompt': chat messages need apply_chat_template",
        ),
    ],
)
def test_bad_prompt_rows_are_one_line_naming_file_row_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list[object], message: str
) -> None:
    prompts = write_lines(tmp_path / "p.jsonl", *rows)
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "generate",
            "--model_name_or_path",
            "dpov2:tiny",
            "--dataset_path",
            str(prompts),
            "--results_path",
            str(out),
            "--no_apply_chat_template",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"dpov2 generate: error: {prompts}: ")
    assert message in err[0]
    assert not out.exists()


def test_lmflow_file_mistakes(tmp_path: Path) -> None:
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps({"type": "text_to_scored_textlist", "instances": []}), "utf-8")
    with pytest.raises(InputError, match='dataset type "text_to_scored_textlist"; expected'):
        read_prompts(wrong, apply_chat_template=True)
    talk = tmp_path / "c.json"
    system_last = {
        "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": ""}]
    }
    talk.write_text(json.dumps({"type": "conversation", "instances": [system_last]}), "utf-8")
    with pytest.raises(InputError, match="row 0, field 'messages': must end with a user message"):
        read_prompts(talk, apply_chat_template=True)


def test_config_file_with_lmflow_keys_and_flag_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen.jsonl"
    config = tmp_path / "gen.yaml"
    config.write_text(
        f"model_name_or_path: dpov2:tiny\ndataset_path: {PROMPTS_SAMPLE}\nresults_path: {out}\n"
        "apply_chat_template: true\nnum_output_sequences: 2\ntemperature: 1.0\ntop_p: 0.9\n"
        "max_new_tokens: 50\nrandom_seed: 42\nvllm_inference_batch_size: 4\n",
        encoding="utf-8",
    )
    assert main(["generate", str(config), "--max_new_tokens", "3", "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [len(row["output"]) for row in rows] == [2] * 8
    capsys.readouterr()
    assert main(["generate", str(config)]) == 2  # the output exists now: kept ...
    assert "already exists" in capsys.readouterr().err
    before = out.read_bytes()
    assert main(["generate", str(config), "--max_new_tokens", "4", "--overwrite", "--quiet"]) == 0
    assert out.read_bytes() != before  # ... unless asked
    for line, message in (
        ("num_output_sequences: '2'", "field 'num_output_sequences': expected an integer, got '2'"),
        (
            "apply_chat_template: maybe",
            "field 'apply_chat_template': expected true/false (or 1/0), got 'maybe'",
        ),
        ("top_p: high", "field 'top_p': expected a number, got 'high'"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(config.read_text("utf-8") + line + "\n", "utf-8")
        assert main(["generate", str(bad), "--results_path", str(tmp_path / "x.json")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"dpov2 generate: error: {bad}: {message}"], line
    config.write_text(config.read_text("utf-8") + "use_vllm_typo: true\n", "utf-8")
    assert main(["generate", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(config) in err[0] and "use_vllm_typo" in err[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "0"], "field 'temperature': 0 (greedy) gives 3 equal responses"),
        (["--top_p", "0"], "field 'top_p': must be in (0, 1]"),
        (
            ["--inference_batch_size", "2", "--vllm_inference_batch_size", "3"],
            "vllm_inference_batch_size (LMFlow's name) and inference_batch_size",
        ),
        (["--use_beam_search", "true"], "field 'use_beam_search'"),
        (["--conversation_template", "qwen2_5"], "field 'conversation_template'"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(
        [
            "generate",
            "--model_name_or_path",
            "dpov2:tiny",
            "--dataset_path",
            str(PROMPTS_SAMPLE),
            "--results_path",
            str(tmp_path / "o.json"),
            "--num_output_sequences",
            "3",
            *flags,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (code, len(err)) == (2, 1)
    assert message in err[0]


def test_output_never_overwrites_an_input_and_nothing_is_left_on_interrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = write_lines(tmp_path / "p.jsonl", {"prompt": "a"}, {"prompt": "b"})
    before = prompts.read_bytes()
    code = main(
        [
            "generate",
            "--model_name_or_path",
            "dpov2:tiny",
            "--dataset_path",
            str(prompts),
            "--results_path",
            str(prompts),
            "--overwrite",
        ]
    )
    assert code == 2 and prompts.read_bytes() == before
    assert "OUTPUT is the input" in capsys.readouterr().err

    folder = tmp_path / "prompts"
    folder.mkdir()
    write_lines(folder / "p.jsonl", {"prompt": "a"})
    inside = folder / "out.jsonl"  # would be read as a prompt file by the next run
    code = main(
        [
            "generate",
            "--model_name_or_path",
            "dpov2:tiny",
            "--dataset_path",
            str(folder),
            "--results_path",
            str(inside),
        ]
    )
    assert code == 2 and not inside.exists()
    assert "is inside the input folder" in capsys.readouterr().err

    def interrupt(prompts_done: int) -> None:
        raise KeyboardInterrupt

    args = arguments(
        tmp_path,
        dataset_path=str(prompts),
        results_path=str(tmp_path / "o.json"),
        inference_batch_size=1,
    )
    with pytest.raises(KeyboardInterrupt):
        generate(args, progress=interrupt)  # after the first of two batches
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p.jsonl", "prompts"]
