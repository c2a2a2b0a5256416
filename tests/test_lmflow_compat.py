"""LMFlow's own DPOv2 settings run as they are: the flags of LMFlow's `run_dpov2_align.sh` and
the DPO part of its `iterative_dpo.yaml` train to completion with `dpov2 align`, and the whole
`iterative_dpo.yaml` runs its rounds with `dpov2 iterate` (copies in tests/data/lmflow/), on
CPU, with only the models (the tiny in-code ones), the data (small files made here), the run's
size and the options that need CUDA or the network changed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers.utils.import_utils import is_flash_attn_2_available

from dpov2.aligner import FINAL_CHECKPOINT, TINY_MODEL
from dpov2.args import parse_align_args
from dpov2.cli import main
from dpov2.iterative import split_config
from dpov2.tiny_model import TINY_REWARD_MODEL

LMFLOW = Path(__file__).parent / "data" / "lmflow"
RUN_SCRIPT = LMFLOW / "run_dpov2_align.sh"
ITERATIVE_CONFIG = LMFLOW / "iterative_dpo.yaml"
# What a CPU test run cannot take from LMFlow's settings, and why.
CUDA_OR_NETWORK = {
    "bf16": False,  # bf16 mixed precision: a CUDA GPU
    "optim": "adamw_torch",  # paged_adamw_32bit: bitsandbytes, on CUDA
    "report_to": "none",  # wandb: an account and the network
}


def _scored(path: Path, prompts: int) -> Path:
    """An LMFlow scored dataset: `prompts` prompts with three responses of distinct scores."""
    instances = [
        {
            "input": f"Question {i}: which answer is best?",
            "output": [
                {"text": f" answer {j} to {i}", "score": float((i + j) % 3)} for j in range(3)
            ],
        }
        for i in range(prompts)
    ]
    path.write_text(json.dumps({"type": "text_to_scored_textlist", "instances": instances}))
    return path


def _script_flags(changes: dict[str, Any]) -> list[str]:
    """The flags `run_dpov2_align.sh` passes, its shell variables filled in, `changes` applied
    (each must be a flag the script sets)."""
    text = RUN_SCRIPT.read_text()
    variables = dict(re.findall(r"^(\w+)=(\S+)$", text, flags=re.MULTILINE))
    command = text.split("examples/dpov2_train.py", 1)[1].split("| tee", 1)[0]
    words = re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], command).split()
    words = [word for word in words if word != "\\"]
    flags = dict(zip(words[::2], words[1::2], strict=True))
    assert all(name.startswith("--") for name in flags)
    for name, value in changes.items():
        assert "--" + name in flags, name
        flags["--" + name] = str(value)
    return [word for pair in flags.items() for word in pair]


def test_run_dpov2_align_flags_are_read_as_lmflow_means_them() -> None:
    args = parse_align_args(_script_flags({"bf16": False}))  # bf16 True is refused on CPU
    aligner = args.aligner
    assert args.model.model_name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert args.model.torch_dtype == "bfloat16"
    assert args.reference.model_name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert args.data.eval_dataset_path == "data/iterative-prompt/eval"
    assert aligner.trust_remote_code is False  # `--trust_remote_code 0`
    assert aligner.eval_strategy == "steps"  # `--evaluation_strategy steps`
    assert (aligner.eval_steps, aligner.logging_steps, aligner.save_strategy) == (100, 2, "epoch")
    assert (aligner.sampling_paired_method, aligner.loss_type, aligner.mask_prompt) == (
        "max_min",
        "sigmoid",
        True,
    )
    assert (aligner.max_prompt_length, aligner.length_penalty, aligner.margin_scale) == (
        1000,
        0.0,
        1.0,
    )
    assert (aligner.learning_rate, aligner.warmup_steps, aligner.optim) == (
        5e-7,
        100,
        "paged_adamw_32bit",
    )
    assert (aligner.gradient_accumulation_steps, aligner.gradient_checkpointing) == (16, True)
    assert (aligner.run_name, aligner.report_to, aligner.seed) == ("dpov2_align", ["wandb"], 42)


def test_run_dpov2_align_flags_train_to_completion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    flags = _script_flags(
        {
            "model_name_or_path": TINY_MODEL,
            "reference_model_name_or_path": TINY_MODEL,
            "dataset_path": _scored(tmp_path / "train.json", 8),
            "eval_dataset_path": _scored(tmp_path / "eval.json", 2),
            "output_dir": out,
            **CUDA_OR_NETWORK,
        }
    )
    assert main(["align", *flags]) == 0
    # 8 pairs, 16 per optimizer step: one step per epoch, two epochs, saved at each.
    assert capsys.readouterr().out.count("'rewards/accuracies'") == 1  # logging_steps 2
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["checkpoint-1", "checkpoint-2", FINAL_CHECKPOINT]
    assert (out / FINAL_CHECKPOINT / "model.safetensors").is_file()


def test_iterative_dpo_config_trains_to_completion_in_a_child_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The keys of LMFlow's iterative config that its DPO round reads, as dpov2 iterate splits
    # them (the general and "dpo phase" sections).
    settings = split_config(yaml.safe_load(ITERATIVE_CONFIG.read_text()), None)["align"]
    assert {"learning_rate", "loss_type", "conversation_template", "run_name"} <= set(settings)
    assert not {"num_output_sequences", "reward_model_inference_batch_size"} & set(settings)
    out = tmp_path / "out"
    changes: dict[str, Any] = {
        "model_name_or_path": TINY_MODEL,
        "reference_model_name_or_path": TINY_MODEL,
        "use_flash_attention": False,  # flash_attn: a CUDA GPU
        "max_steps": 2,  # 1200: the size of the run only
        "preprocessing_num_workers": 2,  # 16 processes, for a 16-core machine: the size only
        **CUDA_OR_NETWORK,
    }
    assert set(changes) <= set(settings)
    settings.update(changes)
    # LMFlow's pipeline hands each iteration its output folder and its scored dataset.
    settings["output_dir"] = str(out)
    settings["dataset_path"] = str(_scored(tmp_path / "iter1.json", 8))
    # DeepSpeed ZeRO-2 (configs/accelerate_dsz2_config.yaml): CUDA; the child is plain Python.
    del settings["accelerate_config_file"]
    config = tmp_path / "iterative_dpo.yaml"
    config.write_text(yaml.safe_dump(settings))

    assert main(["align", "--memory-safe", str(config)]) == 0
    captured = capsys.readouterr()
    # evaluation_strategy steps and no eval set: LMFlow's sample of the training data.
    assert "dpov2 align: eval: 8 pairs drawn from the training pairs (seed 42" in captured.err
    assert captured.out.count("'rewards/accuracies'") == 1  # logging_steps 2
    assert (out / FINAL_CHECKPOINT / "model.safetensors").is_file()


def test_iterative_dpo_config_runs_its_rounds_with_dpov2_iterate(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """LMFlow's whole iterative config, two rounds: each stage's process runs, the second round
    starts from the first's model, and the reference stays the first policy."""
    settings = yaml.safe_load(ITERATIVE_CONFIG.read_text())
    prompts = tmp_path / "prompts.json"
    rows = [{"text": f"Question {i}: what is the answer?"} for i in range(4)]
    prompts.write_text(json.dumps({"type": "text_only", "instances": rows}))
    out = tmp_path / "out"
    changes: dict[str, Any] = {
        "model_name_or_path": TINY_MODEL,
        "reference_model_name_or_path": TINY_MODEL,
        "reward_model_name_or_path": TINY_REWARD_MODEL,
        "dataset_path_list": [str(prompts), str(prompts)],  # 3 sets of LMFlow's prompts
        "output_dir": str(out),
        "use_flash_attention": False,  # flash_attn: a CUDA GPU
        "reward_use_flash_attention": False,
        "reward_torch_dtype": "fp32",  # bf16 scoring: fine on CPU, but slow
        "num_output_sequences": 3,  # 8: the size of the run only
        "max_new_tokens": 8,  # 2048: the size only
        "max_steps": 1,  # 1200: the size only
        "preprocessing_num_workers": 2,
        **CUDA_OR_NETWORK,
    }
    assert set(changes) <= set(settings)
    settings.update(changes)
    del settings["accelerate_config_file"]  # DeepSpeed ZeRO-2: CUDA; the child is plain Python
    config = tmp_path / "iterative_dpo.yaml"
    config.write_text(yaml.safe_dump(settings))

    assert main(["iterate", str(config)]) == 0
    captured = capfd.readouterr()
    # LMFlow's vLLM and multi-instance inference are said not to be used, not silently dropped.
    assert "use_vllm is not used" in captured.out
    assert "enable_distributed_inference is not used" in captured.out
    report = json.loads((out / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    for each in report["rounds"]:
        assert each["reward"]["count"] == 4 * 3 and each["train"]["steps"] == 1
    second = json.loads((out / "iter_2" / "train" / "align.json").read_text())
    assert second["model_name_or_path"] == str(out / "iter_1" / "train")
    assert second["reference_model_name_or_path"] == TINY_MODEL
    assert second["learning_rate"] == 5.0e-7 and second["run_name"] == "iterative_dpo_iter_2"
    generated = json.loads((out / "iter_2" / "generate" / "generate.json").read_text())
    assert generated["model_name_or_path"] == str(out / "iter_1" / "train")
    assert generated["temperature"] == 1.0 and generated["apply_chat_template"] is True


def test_lmflow_lora_flags_train_an_adapter(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "align",
            *("--model_name_or_path", TINY_MODEL, "--output_dir", str(out)),
            *("--dataset_path", str(_scored(tmp_path / "train.json", 4))),
            *("--use_lora", "1", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0"),
            *("--lora_target_modules", "q_proj,v_proj", "--max_steps", "1"),
            *("--bf16", "false", "--report_to", "none", "--save_strategy", "no"),
        ]
    )
    assert code == 0
    config = json.loads((out / FINAL_CHECKPOINT / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (4, 8, 0.0)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


@pytest.mark.skipif(is_flash_attn_2_available(), reason="flash attention can run here")
def test_use_flash_attention_without_flash_attn_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "align",
            *("--model_name_or_path", TINY_MODEL, "--output_dir", str(tmp_path / "out")),
            *("--dataset_path", str(_scored(tmp_path / "train.json", 4))),
            *("--use_flash_attention", "1", "--report_to", "none", "--bf16", "false"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "dpov2 align: error: field 'attn_implementation': flash_attention_2 (use_flash_attention) "
        "needs the flash_attn package and a CUDA GPU, and this environment lacks one; install "
        "flash-attn or leave it off"
    ]
