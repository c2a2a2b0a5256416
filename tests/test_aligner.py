"""DPOv2Aligner and MemorySafeDPOv2Aligner on the tiny in-code model, on CPU: pairing scored
data or reading pairs, saving a checkpoint that reloads, refusing other dataset types, and the
child process (its arguments, its environment, its failures, a 2-process launch)."""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from dpov2.aligner import (
    FINAL_CHECKPOINT,
    TINY_MODEL,
    AlignmentError,
    DPOv2Aligner,
    MemorySafeDPOv2Aligner,
    load_model,
)
from dpov2.args import DatasetArguments, DPOv2AlignerArguments, ModelArguments
from dpov2.convert import convert_to_paired_dataset
from dpov2.errors import InputError
from dpov2.pairing import sampling_paired_idx_from_rewards

SCORED_SAMPLE = Path(__file__).parent.parent / "examples" / "data" / "scored_sample.json"
TINY = ModelArguments(model_name_or_path=TINY_MODEL)
LAUNCH_VARIABLES = {
    "RANK": "1",
    "LOCAL_RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "10.255.255.1",
    "MASTER_PORT": "29999",
    "TORCHELASTIC_RUN_ID": "parent-job",
    "TORCHELASTIC_RESTART_COUNT": "0",
    "OMPI_COMM_WORLD_SIZE": "2",
}


def _aligner_args(output_dir: Path, **overrides: Any) -> DPOv2AlignerArguments:
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "no",
        "per_device_train_batch_size": 4,
        "num_train_epochs": 1,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "max_length": 96,
        "max_prompt_length": 48,
        "seed": 0,
    }
    settings.update(overrides)
    return DPOv2AlignerArguments(**settings)


def _aligner(output_dir: Path, max_train_samples: int | None = 8, **overrides: Any) -> DPOv2Aligner:
    data = DatasetArguments(max_train_samples=max_train_samples)
    return DPOv2Aligner(TINY, data, _aligner_args(output_dir, **overrides))


def _pairs(n: int) -> list[dict[str, Any]]:
    return [
        {
            "prompt": f"Question {i}: is this good?",
            "chosen": " yes",
            "rejected": " no",
            "margin": 1.0,
        }
        for i in range(n)
    ]


def _assert_reloadable_checkpoint(output_dir: Path, trained: torch.nn.Module | None = None) -> None:
    """The final checkpoint loads with transformers' Auto classes, with the trained weights."""
    final = output_dir / FINAL_CHECKPOINT
    reloaded = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert tokenizer("yes")["input_ids"]
    untrained = load_model(TINY)
    changed = [
        name
        for name, weight in reloaded.state_dict().items()
        if not torch.equal(weight, untrained.state_dict()[name])
    ]
    assert changed, "the saved weights are the untrained ones"
    if trained is not None:
        for name, weight in trained.state_dict().items():
            assert torch.equal(weight, reloaded.state_dict()[name]), name
    assert (output_dir / "model.safetensors").is_file()


# --- DPOv2Aligner ------------------------------------------------------------------------------


def test_align_pairs_scored_data_trains_and_saves_a_checkpoint_that_reloads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    aligner = _aligner(out, max_train_samples=8, eval_strategy="steps", eval_steps=2)
    model = load_model(TINY)
    eval_scored = Dataset.from_list(json.loads(SCORED_SAMPLE.read_text())["instances"][:4])
    history = aligner.align(model, None, SCORED_SAMPLE, eval_scored)

    train_logs = [log for log in history if "rewards/accuracies" in log and "loss" in log]
    # max_train_samples=8 pairs at 4 per step: one epoch is 2 steps.
    assert [log["step"] for log in train_logs] == [1, 2]
    assert any("eval_loss" in log for log in history)
    _assert_reloadable_checkpoint(out, trained=model)


@pytest.mark.parametrize("form", ["dataset", "lmflow json", "jsonl"])
def test_align_trains_on_paired_data(tmp_path: Path, form: str) -> None:
    pairs: Any = Dataset.from_list(_pairs(8))
    if form == "lmflow json":
        pairs = tmp_path / "pairs.json"
        pairs.write_text(json.dumps({"type": "paired_text_to_text", "instances": _pairs(8)}))
    elif form == "jsonl":
        pairs = tmp_path / "pairs.jsonl"
        pairs.write_text("".join(json.dumps(pair) + "\n" for pair in _pairs(8)))
    out = tmp_path / "out"
    history = _aligner(out, max_train_samples=None).align(load_model(TINY), None, pairs)
    assert history[-1]["step"] == 2  # 8 pairs, 4 per step
    _assert_reloadable_checkpoint(out)


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("lmflow type", 'dataset type "text_only" is not supported here; expected '),
        ("columns", "has columns text, label; expected a text_to_scored_textlist dataset"),
    ],
)
def test_align_refuses_datasets_that_are_neither_scored_nor_paired(
    tmp_path: Path, which: str, message: str
) -> None:
    wrong: Any = Dataset.from_list([{"text": "hello", "label": 1}])
    if which == "lmflow type":
        wrong = tmp_path / "text.json"
        wrong.write_text(json.dumps({"type": "text_only", "instances": [{"text": "hello"}]}))
    aligner = _aligner(tmp_path / "out")
    model = load_model(TINY)
    with pytest.raises(InputError, match=message):
        aligner.align(model, None, wrong)
    with pytest.raises(InputError, match=message):  # the eval set is checked the same way
        aligner.align(model, None, Dataset.from_list(_pairs(4)), wrong)
    assert not (tmp_path / "out").exists()


def test_the_pairing_helpers_are_on_the_aligner_as_in_lmflow() -> None:
    assert DPOv2Aligner.convert_to_paired_dataset is convert_to_paired_dataset
    assert DPOv2Aligner.sampling_paired_idx_from_rewards is sampling_paired_idx_from_rewards
    assert DPOv2Aligner.sampling_paired_idx_from_rewards([0.1, 0.9, 0.5], "max_min") == (1, 0)


# --- MemorySafeDPOv2Aligner --------------------------------------------------------------------


def _memory_safe(output_dir: Path, model: ModelArguments = TINY, **overrides: Any) -> Any:
    data = DatasetArguments(dataset_path=str(SCORED_SAMPLE), max_train_samples=8)
    return MemorySafeDPOv2Aligner(model, data, _aligner_args(output_dir, **overrides))


def test_memory_safe_child_trains_with_the_same_arguments_and_no_launch_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child writes the environment it sees, from inside, when Python starts; if it sees a
    # launch variable it stops at once (it would otherwise wait to join the parent's group).
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    seen = tmp_path / "child-env.json"
    (hooks / "sitecustomize.py").write_text(
        "import json, os\n"
        f"with open({str(seen)!r}, 'w') as f:\n"
        "    json.dump(dict(os.environ), f)\n"
        f"if set(os.environ) & {set(LAUNCH_VARIABLES)!r}:\n"
        "    os._exit(3)\n"
    )
    out = tmp_path / "out"
    aligner = _memory_safe(out, max_steps=2, margin_scale=2.0, max_prompt_length=None)
    for name, value in LAUNCH_VARIABLES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DPOV2_TEST_KEPT", "kept")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])
    )
    output = io.StringIO()
    aligner.align(stream=output)

    child_env = json.loads(seen.read_text())
    assert child_env["DPOV2_TEST_KEPT"] == "kept"
    assert sorted(set(LAUNCH_VARIABLES) & set(child_env)) == []
    # The child trained with exactly the parent's arguments (transformers saves them).
    child_args = torch.load(out / FINAL_CHECKPOINT / "training_args.bin", weights_only=False)
    assert child_args == aligner.args.aligner
    text = output.getvalue()
    assert "dpov2 align: train: 8 pairs from the scored" in text
    assert "'rewards/accuracies'" in text  # the child's metrics were streamed here
    _assert_reloadable_checkpoint(out)


def test_memory_safe_child_failure_raises_with_its_exit_code_and_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    aligner = _memory_safe(tmp_path / "out", ModelArguments(model_name_or_path=str(missing)))
    output = io.StringIO()
    with pytest.raises(AlignmentError) as raised:
        aligner.align(stream=output)
    assert raised.value.returncode == 2  # the CLI's code for a user mistake
    last_line = raised.value.output_tail.strip().splitlines()[-1]
    assert last_line == (
        f"dpov2 align: error: {missing}: field 'model_name_or_path': no such folder; expected a "
        "model folder, a Hugging Face Hub name (org/name) or dpov2:tiny"
    )
    assert "exited with code 2" in str(raised.value)
    assert output.getvalue().endswith(raised.value.output_tail)


def test_memory_safe_command_is_the_current_python_or_accelerate_launch(tmp_path: Path) -> None:
    plain = _memory_safe(tmp_path).command("args.json")
    assert plain == [sys.executable, "-m", "dpov2.cli", "align", "args.json"]
    launched = _memory_safe(tmp_path, accelerate_config_file="acc.yaml").command("args.json")
    assert launched == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "acc.yaml",
        "-m",
        "dpov2.cli",
        "align",
        "args.json",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_two_process_cpu_launch_trains_and_saves_one_checkpoint(tmp_path: Path) -> None:
    """accelerate's own --cpu launch runs one process unless under mpirun; torchrun's (the
    multi_gpu launcher) runs two, and `use_cpu` keeps them on the CPU (gloo)."""
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\n"
        "distributed_type: MULTI_GPU\n"
        "num_processes: 2\n"
        "num_machines: 1\n"
        "machine_rank: 0\n"
        "mixed_precision: 'no'\n"
        f"main_process_port: {_free_port()}\n"
    )
    out = tmp_path / "out"
    # Two steps of 4 pairs on each of 2 processes: the 8 pairs once, so one epoch.
    aligner = _memory_safe(out, accelerate_config_file=str(config))
    output = io.StringIO()
    aligner.align(stream=output)
    text = output.getvalue()
    assert "dpov2 align: 2 process(es)" in text
    assert text.count("dpov2 align: saved the model") == 1  # by the main process only
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [FINAL_CHECKPOINT]
    _assert_reloadable_checkpoint(out)
