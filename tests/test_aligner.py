"""DPOv2Aligner and MemorySafeDPOv2Aligner on the tiny in-code model, on CPU: pairing scored
data or reading pairs, saving a checkpoint that reloads, refusing other dataset types, and the
child process (its arguments, its environment, its failures, a 2-process launch)."""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from dpov2.aligner import (
    FINAL_CHECKPOINT,
    TINY_MODEL,
    AlignmentError,
    DPOv2Aligner,
    MemorySafeDPOv2Aligner,
    child_environment,
    load_model,
    load_tokenizer,
    with_chat_template,
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
    "OMP_NUM_THREADS": "1",  # torchrun's for its workers; the child is a job of its own
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


def test_align_trains_on_implicit_prompt_pairs_from_parquet(tmp_path: Path) -> None:
    """TRL's implicit-prompt conversational pairs (no prompt column) in a columnar file: the
    prompt is the messages both completions start with; text completions need a prompt."""

    def conversation(i: int, answer: str) -> list[dict[str, str]]:
        question = {"role": "user", "content": f"Question {i}: is this good?"}
        return [question, {"role": "assistant", "content": answer}]

    rows = [
        {"chosen": conversation(i, "yes"), "rejected": conversation(i, "no"), "margin": 1.0}
        for i in range(8)
    ]
    pairs = tmp_path / "pairs.parquet"
    Dataset.from_list(rows).to_parquet(str(pairs))
    history = _aligner(tmp_path / "out", max_train_samples=None).align(
        load_model(TINY), None, pairs
    )
    assert history[-1]["step"] == 2  # 8 pairs, 4 per step
    text = tmp_path / "text.parquet"
    Dataset.from_list([{"chosen": " yes", "rejected": " no"}] * 4).to_parquet(str(text))
    with pytest.raises(InputError, match="there is no prompt column") as raised:
        _aligner(tmp_path / "out2").align(load_model(TINY), None, text)
    assert raised.value.field == "chosen"
    assert not (tmp_path / "out2").exists()


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
    aligner.align(stream=output, err_stream=output)

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
    output, errors = io.StringIO(), io.StringIO()
    with pytest.raises(AlignmentError) as raised:
        aligner.align(stream=output, err_stream=errors)
    assert raised.value.returncode == 2  # the CLI's code for a user mistake
    last_line = raised.value.output_tail.strip().splitlines()[-1]
    assert last_line == (
        f"dpov2 align: error: {missing}: field 'model_name_or_path': no such folder; expected a "
        "model folder, a Hugging Face Hub name (org/name) or dpov2:tiny"
    )
    assert "exited with code 2" in str(raised.value)
    # The one-line error came on the child's stderr, and is passed on to ours.
    assert errors.getvalue().strip().splitlines()[-1] == last_line
    assert "error" not in output.getvalue()


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
    aligner.align(stream=output, err_stream=output)
    text = output.getvalue()
    assert "dpov2 align: 2 process(es)" in text
    assert text.count("dpov2 align: saved the model") == 1  # by the main process only
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [FINAL_CHECKPOINT]
    _assert_reloadable_checkpoint(out)


# --- LMFlow's behaviours ------------------------------------------------------------------------


def test_align_with_evaluation_and_no_eval_set_evaluates_on_seeded_training_pairs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dpov2")
    aligner = _aligner(tmp_path / "out", max_train_samples=4, eval_strategy="steps", eval_steps=1)
    aligner.data_args.eval_sample_size = 3
    history = aligner.align(load_model(TINY), None, Dataset.from_list(_pairs(8)))
    evals = [log for log in history if "eval_loss" in log]
    assert [log["step"] for log in evals] == [1]  # 4 pairs, 4 per step: one step, one eval
    assert (
        "dpov2 align: eval: 3 pairs drawn from the training pairs (seed 42; no eval dataset "
        "given, eval_sample_size 3)"
    ) in caplog.messages


class _FixedPairs(DPOv2Aligner):
    """An LMFlow-style subclass: its own pairing, whatever the scored data says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []

    def convert_to_paired_dataset(self, source_dataset: Any, **options: Any) -> Any:  # type: ignore[override]
        self.calls.append(options)
        return Dataset.from_list(_pairs(4))


def test_a_subclass_pairing_is_what_align_trains_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dpov2")
    args = _aligner_args(tmp_path / "out", sampling_paired_method="max_min")
    aligner = _FixedPairs(TINY, DatasetArguments(), args)
    history = aligner.align(load_model(TINY), None, SCORED_SAMPLE)  # 300 scored prompts
    assert [call["sampling_paired_method"] for call in aligner.calls] == ["max_min"]
    assert history[-1]["step"] == 1  # the subclass's 4 pairs at 4 per step
    assert any(m.startswith("dpov2 align: train: 4 pairs from the scored") for m in caplog.messages)


def test_use_lora_trains_an_adapter_and_saves_it_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lora = ModelArguments(
        model_name_or_path=TINY_MODEL, use_lora=True, lora_r=4, lora_target_modules="q_proj,v_proj"
    )
    aligner = DPOv2Aligner(lora, DatasetArguments(), _aligner_args(out, max_steps=2))
    model = load_model(TINY)
    base = {name: weight.clone() for name, weight in model.state_dict().items()}
    aligner.align(model, None, Dataset.from_list(_pairs(8)))

    saved = safetensors.torch.load_file(out / FINAL_CHECKPOINT / "adapter_model.safetensors")
    config = json.loads((out / FINAL_CHECKPOINT / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 32, 0.1)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    lora_b = [weight for name, weight in saved.items() if "lora_B" in name]
    assert len(lora_b) == 4  # q and v in each of the 2 layers
    assert any(weight.abs().sum() > 0 for weight in lora_b), "the adapter did not train"
    assert not (out / "model.safetensors").exists()  # the adapter, not the full weights
    # PEFT wrapped the caller's layers in place; their base weights are the untrained ones.
    after = {name.replace(".base_layer", ""): w for name, w in model.state_dict().items()}
    assert set(base) <= set(after)
    for name, weight in base.items():
        assert torch.equal(after[name], weight), name


def test_child_environment_drops_omp_num_threads_and_launch_variables() -> None:
    environ = {**LAUNCH_VARIABLES, "HOME": "/home/me"}
    assert child_environment(environ) == {"HOME": "/home/me", "PYTHONUNBUFFERED": "1"}


def test_memory_safe_child_with_evaluation_and_no_eval_set_evaluates_on_training_pairs(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    aligner = _memory_safe(out, max_steps=1, eval_strategy="steps", eval_steps=1)
    aligner.args.data.eval_sample_size = 4
    output = io.StringIO()
    aligner.align(stream=output, err_stream=output)
    text = output.getvalue()
    assert "dpov2 align: eval: 4 pairs drawn from the training pairs (seed 42" in text
    assert "'eval_loss'" in text


def test_conversation_template_llama3_renders_llama3_turns() -> None:
    tokenizer = load_tokenizer(TINY)
    templated = with_chat_template(tokenizer, "llama3")
    assert templated is not tokenizer and tokenizer.chat_template != templated.chat_template
    text = templated.apply_chat_template(
        [{"role": "user", "content": " Hi! "}], tokenize=False, add_generation_prompt=True
    )
    assert text == (
        f"{tokenizer.bos_token}<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert with_chat_template(tokenizer, "tokenizer") is tokenizer
    assert with_chat_template(tokenizer, None) is tokenizer
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(InputError, match="this tokenizer has none"):
        with_chat_template(bare, "tokenizer")
