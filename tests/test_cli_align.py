"""`dpov2 align`: from a config file, from flags, with --memory-safe; every user mistake is exit
code 2 and one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM

from dpov2.aligner import FINAL_CHECKPOINT
from dpov2.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"
SCORED_SAMPLE = EXAMPLES / "data" / "scored_sample.json"
# Shorter than the demo: a few steps on a few pairs.
QUICK = ["--max_steps", "2", "--max_train_samples", "8", "--per_device_train_batch_size", "4"]


def run(*args: object) -> int:
    return main([str(a) for a in args])


def test_align_runs_the_demo_config_with_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # the demo config names its files from the repository
    out = tmp_path / "demo"
    assert run("align", EXAMPLES / "align_tiny.yaml", "--output_dir", out, *QUICK) == 0
    assert "'rewards/accuracies'" in capsys.readouterr().out
    AutoModelForCausalLM.from_pretrained(out / FINAL_CHECKPOINT)


def test_align_from_flags_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = run(
        "align",
        "--model_name_or_path",
        "dpov2:tiny",
        "--dataset_path",
        SCORED_SAMPLE,
        "--output_dir",
        out,
        "--max_length",
        "96",
        "--max_prompt_length",
        "48",
        "--use_cpu",
        "--bf16",
        "false",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        *QUICK,
    )
    assert code == 0
    assert capsys.readouterr().out.count("'rewards/accuracies'") == 2  # one log per step
    AutoModelForCausalLM.from_pretrained(out / FINAL_CHECKPOINT)


def _config(tmp_path: Path, **changes: object) -> Path:
    settings = yaml.safe_load((EXAMPLES / "align_tiny.yaml").read_text())
    settings.update(dataset_path=str(SCORED_SAMPLE), output_dir=str(tmp_path / "out"))
    settings.update(changes)
    config = tmp_path / "align.json"
    config.write_text(json.dumps(settings))
    return config


@pytest.mark.parametrize(
    ("changes", "extra", "message"),
    [
        ({"beta_typo": 0.2}, [], "beta_typo"),
        ({"dataset_path": "missing.jsonl"}, [], "missing.jsonl: no such file or folder"),
        ({"dataset_path": "TEXT"}, [], 'dataset type "text_only" is not supported here'),
        ({"model_name_or_path": "no/such/model-folder"}, [], "field 'model_name_or_path'"),
        ({"model_name_or_path": None}, [], "no model given"),
        ({}, ["--loss_type", "dpo"], "invalid choice: 'dpo'"),
        ({}, ["--memory-safe", "--beta", "high"], "invalid float value: 'high'"),
    ],
    ids=[
        "unknown key",
        "missing dataset",
        "wrong dataset type",
        "bad model path",
        "no model",
        "bad flag choice",
        "bad flag value",
    ],
)
def test_align_mistakes_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    changes: dict[str, object],
    extra: list[str],
    message: str,
) -> None:
    if changes.get("dataset_path") == "TEXT":
        text = tmp_path / "text.json"
        text.write_text(json.dumps({"type": "text_only", "instances": [{"text": "hi"}]}))
        changes["dataset_path"] = str(text)
    assert run("align", _config(tmp_path, **changes), *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("dpov2 align: error: ") and message in err[0]
    assert not (tmp_path / "out").exists()


def test_align_memory_safe_user_mistake_is_the_childs_one_line_on_stderr_and_exit_2(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-model"
    config = _config(tmp_path, model_name_or_path=str(missing))
    assert run("align", "--memory-safe", config) == 2
    captured = capfd.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert errors == [
        f"dpov2 align: error: {missing}: field 'model_name_or_path': no such folder; expected a "
        "model folder, a Hugging Face Hub name (org/name) or dpov2:tiny"
    ]
    assert "error" not in captured.out


def test_align_memory_safe_other_failures_add_the_exit_code_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A hook in the child ends it before dpov2 runs, with no message: exit code 7.
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text("import os\nos._exit(7)\n")
    config = _config(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(hooks))
        assert run("align", "--memory-safe", config) == 7
    err = capfd.readouterr().err.strip().splitlines()
    assert err[-1] == "dpov2 align: error: the training process exited with code 7"
