"""The alignment arguments: LMFlow's names and defaults, flags and config files read alike,
every value surviving the trip through a config file, and user mistakes as `InputError`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from dpov2.args import (
    REFERENCE_PREFIX,
    AlignArguments,
    DatasetArguments,
    DPOv2AlignerArguments,
    ModelArguments,
    ReferenceModelArguments,
    from_reference,
    parse_align_args,
    to_config,
    to_reference,
)
from dpov2.errors import InputError

FLAGS = [
    "--model_name_or_path",
    "dpov2:tiny",
    "--reference_model_name_or_path",
    "ref/folder",
    "--reference_torch_dtype",
    "bfloat16",
    "--dataset_path",
    "scored.json",
    "--max_train_samples",
    "16",
    "--output_dir",
    "out",
    "--sampling_paired_method",
    "max_min",
    "--length_penalty",
    "0.01",
    "--margin_scale",
    "2.5",
    "--loss_type",
    "rev_kl",
    "--mask_prompt",
    "--learning_rate",
    "5e-3",
    "--report_to",
    "none",
    "--use_cpu",
    "--bf16",
    "false",
]
SETTINGS: dict[str, Any] = {
    "model_name_or_path": "dpov2:tiny",
    "reference_model_name_or_path": "ref/folder",
    "reference_torch_dtype": "bfloat16",
    "dataset_path": "scored.json",
    "max_train_samples": 16,
    "output_dir": "out",
    "sampling_paired_method": "max_min",
    "length_penalty": 0.01,
    "margin_scale": 2.5,
    "loss_type": "rev_kl",
    "mask_prompt": True,
    "learning_rate": "5e-3",  # as YAML 1.1 reads 5e-3: a string
    "report_to": "none",
    "use_cpu": True,
    "bf16": False,
}


def test_defaults_are_lmflows() -> None:
    args = DPOv2AlignerArguments(output_dir="out", use_cpu=True)
    assert (args.random_seed, args.accelerate_config_file) == (42, None)
    assert (args.margin_scale, args.sampling_paired_method, args.length_penalty) == (
        1.0,
        "max_random",
        0.0,
    )
    assert (args.max_length, args.max_prompt_length, args.mask_prompt) == (2048, 1000, False)
    assert (args.beta, args.loss_type) == (0.1, "sigmoid")
    assert args.gradient_checkpointing is False  # TRL's default is True
    # As in LMFlow, the pairing's length penalty also drives the loss's, unless given.
    assert (
        DPOv2AlignerArguments(output_dir="o", use_cpu=True, length_penalty=0.5).len_penalty == 0.5
    )
    assert (
        DPOv2AlignerArguments(
            output_dir="o", use_cpu=True, length_penalty=0.5, len_penalty=0.0
        ).len_penalty
        == 0.0
    )


def test_flags_and_config_files_give_the_same_arguments(tmp_path: Path) -> None:
    from_flags = parse_align_args(FLAGS)
    assert from_flags.model == ModelArguments(model_name_or_path="dpov2:tiny")
    assert from_flags.reference == ModelArguments(
        model_name_or_path="ref/folder", torch_dtype="bfloat16"
    )
    assert from_flags.data.max_train_samples == 16
    assert from_flags.aligner.learning_rate == 0.005
    assert from_flags.aligner.mask_prompt is True
    assert from_flags.aligner.report_to == []

    yaml_file = tmp_path / "align.yaml"
    yaml_file.write_text("".join(f"{key}: {value}\n" for key, value in SETTINGS.items()))
    json_file = tmp_path / "align.json"
    json_file.write_text(json.dumps(SETTINGS))
    assert parse_align_args([str(yaml_file)]) == from_flags
    assert parse_align_args([str(json_file)]) == from_flags


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "align.json"
    config.write_text(json.dumps(SETTINGS))
    args = parse_align_args([str(config), "--margin_scale", "1.0", "--mask_prompt", "false"])
    assert args.aligner.margin_scale == 1.0
    assert args.aligner.mask_prompt is False
    assert args.aligner.loss_type == "rev_kl"  # from the file


def test_every_argument_survives_the_trip_through_a_config_file(tmp_path: Path) -> None:
    """What `MemorySafeDPOv2Aligner` hands its child: non-default values of every kind (None
    where the default is not, lists, mappings, enums, nested configs) come back equal."""
    original = AlignArguments(
        model=ModelArguments("dpov2:tiny", tokenizer_name="tok/folder", torch_dtype="float32"),
        data=DatasetArguments(
            "scored.jsonl", eval_dataset_path="eval.parquet", max_train_samples=5
        ),
        aligner=DPOv2AlignerArguments(
            output_dir=str(tmp_path / "out"),
            use_cpu=True,
            bf16=False,
            report_to="none",
            max_prompt_length=None,
            max_length=None,
            random_seed=7,
            accelerate_config_file="accelerate.yaml",
            sampling_paired_method="random",
            length_penalty=-0.25,
            len_penalty=0.125,
            margin_scale=3.0,
            loss_type="hellinger",
            beta=0.3,
            lr_scheduler_type="cosine",
            lr_scheduler_kwargs={"num_cycles": 2},
            accelerator_config={"split_batches": True},
            max_steps=3,
            seed=11,
            activation_checkpointing=True,
            precompute_ref_log_probs=True,
        ),
        reference=ModelArguments("ref/folder", torch_dtype="bfloat16"),
    )
    config = tmp_path / "align.json"
    config.write_text(json.dumps(to_config(original)))
    parsed = parse_align_args([str(config)])
    for part in ("model", "data", "reference", "aligner"):
        mine, theirs = getattr(original, part), getattr(parsed, part)
        differing = [
            f.name
            for f in dataclasses.fields(mine)
            if getattr(mine, f.name) != getattr(theirs, f.name)
        ]
        assert differing == [], part
    assert parsed == original


def test_reference_arguments_are_the_model_fields_but_lora_with_a_prefix() -> None:
    model_fields = [f for f in dataclasses.fields(ModelArguments) if not f.name.startswith("lora")]
    model_fields = [f for f in model_fields if f.name != "use_lora"]
    reference_fields = dataclasses.fields(ReferenceModelArguments)
    assert [f.name for f in reference_fields] == [REFERENCE_PREFIX + f.name for f in model_fields]
    assert [f.default for f in reference_fields] == [f.default for f in model_fields]
    args = ModelArguments("some/model", tokenizer_name="tok", torch_dtype="float16")
    assert to_reference(args).reference_tokenizer_name == "tok"
    assert from_reference(to_reference(args)) == args
    assert not hasattr(to_reference(ModelArguments(use_lora=True)), "reference_use_lora")


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("output_dir: out\nbeta_typo: 0.2\n", ".yaml", "beta_typo"),
        ("output_dir: out\nbeta: [1, 2\n", ".yaml", "not valid YAML"),
        ('{"output_dir": "out",}', ".json", "not valid JSON"),
        ("- a list\n", ".yaml", "expected a mapping"),
        ("use_cpu: true\n", ".yaml", "output_dir is required"),
        ("output_dir: out\nsampling_paired_method: best\n", ".yaml", "sampling_paired_method"),
        ("output_dir: out\nlearning_rate: fast\n", ".yaml", "field 'learning_rate'"),
        ("output_dir: out\nmax_train_samples: 0\n", ".yaml", "max_train_samples must be >= 1"),
        ("output_dir: out\n", ".toml", "expected a config file"),
    ],
)
def test_config_mistakes_name_the_file_and_what_is_wrong(
    tmp_path: Path, content: str, suffix: str, message: str
) -> None:
    config = tmp_path / f"align{suffix}"
    config.write_text(content)
    with pytest.raises(InputError, match=message) as raised:
        parse_align_args([str(config), "--use_cpu"])
    assert str(raised.value).startswith(str(config))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss_type", "dpo"], "invalid choice: 'dpo'"),
        (["--beta", "high"], "invalid float value: 'high'"),
        (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag"),
    ],
)
def test_flag_mistakes_raise_input_error(flags: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_align_args(["--output_dir", "out", "--use_cpu", *flags])
