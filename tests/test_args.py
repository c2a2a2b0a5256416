"""The alignment arguments: LMFlow's names and defaults, flags and config files read alike,
every value surviving the trip through a config file, and user mistakes as `InputError`."""

from __future__ import annotations

import dataclasses
import json
import re
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


# --- LMFlow's names -----------------------------------------------------------------------------

BASE = ["--output_dir", "out", "--use_cpu"]
# Each LMFlow name with a value, and the dpov2 option it is, with the same value.
LMFLOW_NAMES = [
    (("evaluation_strategy", "steps"), ("eval_strategy", "steps")),
    (("preprocessing_num_workers", "3"), ("dataset_num_proc", "3")),
    (("use_flash_attention", "1"), ("attn_implementation", "flash_attention_2")),
    (
        ("reference_use_flash_attention", "true"),
        ("reference_attn_implementation", "flash_attention_2"),
    ),
]


@pytest.mark.parametrize(("lmflow", "dpov2"), LMFLOW_NAMES, ids=[n[0][0] for n in LMFLOW_NAMES])
def test_lmflow_names_are_the_same_options_on_the_command_line_and_in_files(
    tmp_path: Path, lmflow: tuple[str, str], dpov2: tuple[str, str]
) -> None:
    expected = parse_align_args([*BASE, "--" + dpov2[0], dpov2[1]])
    assert expected != parse_align_args(BASE)  # the option does change something
    assert parse_align_args([*BASE, "--" + lmflow[0], lmflow[1]]) == expected
    config = tmp_path / "align.yaml"
    config.write_text(f"output_dir: out\nuse_cpu: true\n{lmflow[0]}: {lmflow[1]}\n")
    assert parse_align_args([str(config)]) == expected
    # Both names with one value is one option given twice; a flag overrides the file's name.
    assert parse_align_args([*BASE, "--" + lmflow[0], lmflow[1], "--" + dpov2[0], dpov2[1]]) == (
        expected
    )
    config.write_text(f"output_dir: out\nuse_cpu: true\n{dpov2[0]}: {dpov2[1]}\n")
    assert parse_align_args([str(config), "--" + lmflow[0], lmflow[1]]) == expected


@pytest.mark.parametrize("where", ["flags", "file"])
def test_an_lmflow_name_and_its_dpov2_name_with_different_values_is_an_error(
    tmp_path: Path, where: str
) -> None:
    message = (
        "field 'evaluation_strategy': evaluation_strategy (LMFlow's name) and eval_strategy are "
        "the same option, given 'steps' and 'no'; give one"
    )
    if where == "flags":
        argv = [*BASE, "--evaluation_strategy", "steps", "--eval_strategy", "no"]
    else:
        config = tmp_path / "align.yaml"
        config.write_text("output_dir: out\nevaluation_strategy: steps\neval_strategy: 'no'\n")
        argv = [str(config), "--use_cpu"]
        message = f"{config}: {message}"
    with pytest.raises(InputError) as raised:
        parse_align_args(argv)
    assert str(raised.value) == message


def test_use_flash_attention_false_sets_nothing() -> None:
    assert parse_align_args([*BASE, "--use_flash_attention", "0"]) == parse_align_args(BASE)
    both = parse_align_args(
        [*BASE, "--use_flash_attention", "false", "--attn_implementation", "sdpa"]
    )
    assert both.model.attn_implementation == "sdpa"


@pytest.mark.parametrize("value", ["0", "1", "true", "False"])
def test_yes_no_values_as_lmflow_writes_them(tmp_path: Path, value: str) -> None:
    expected = value.lower() in ("1", "true")
    from_flag = parse_align_args([*BASE, "--trust_remote_code", value, "--use_lora", value])
    config = tmp_path / "align.yaml"
    config.write_text(
        f"output_dir: out\nuse_cpu: 1\ntrust_remote_code: {value}\nuse_lora: '{value}'\n"
    )
    from_file = parse_align_args([str(config)])
    for args in (from_flag, from_file):
        assert args.aligner.trust_remote_code is expected
        assert args.model.use_lora is expected
    config.write_text("output_dir: out\nuse_cpu: true\ntrust_remote_code: 2\n")
    with pytest.raises(InputError, match="field 'trust_remote_code': expected true/false"):
        parse_align_args([str(config)])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("use_qlora", "QLoRA (a 4/8-bit base) is not supported"),
        ("save_aggregated_lora", "the LoRA adapter is saved on its own"),
        ("dataset_path_list", "an option of LMFlow's iterative DPO pipeline"),
    ],
)
def test_refused_lmflow_options_say_why_unless_off(tmp_path: Path, name: str, reason: str) -> None:
    with pytest.raises(
        InputError, match=re.escape(f"field '{name}': LMFlow's {name} is refused: ")
    ):
        parse_align_args([*BASE, "--" + name, "1"])
    config = tmp_path / "align.yaml"
    value = "[iter1, iter2]" if name == "dataset_path_list" else "true"
    config.write_text(f"output_dir: out\nuse_cpu: true\n{name}: {value}\n")
    with pytest.raises(InputError, match=re.escape(reason)):
        parse_align_args([str(config)])
    off = "[]" if name == "dataset_path_list" else "false"
    config.write_text(f"output_dir: out\nuse_cpu: true\n{name}: {off}\n")
    assert parse_align_args([str(config)]) == parse_align_args(BASE)


def test_lmflow_defaults_of_the_new_fields() -> None:
    args = parse_align_args(BASE)
    assert (args.aligner.learning_rate, args.aligner.logging_steps) == (5e-5, 500)
    model = args.model
    assert (model.use_lora, model.lora_r, model.lora_alpha, model.lora_dropout) == (
        False,
        8,
        32,
        0.1,
    )
    assert (model.lora_target_modules, model.attn_implementation) == (None, None)
    assert (args.data.eval_sample_size, args.data.conversation_template) == (100, None)
    assert model.lora_config() is None


def test_lora_config_is_peft_lora_config_of_the_fields() -> None:
    from peft import LoraConfig

    config = ModelArguments(
        use_lora=True, lora_r=4, lora_target_modules="q_proj, v_proj"
    ).lora_config()
    assert isinstance(config, LoraConfig)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 32, 0.1)
    assert config.target_modules == {"q_proj", "v_proj"}
    assert config.task_type == "CAUSAL_LM"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--conversation_template", "qwen2_5"], "conversation_template='qwen2_5' is not shipped"),
        (["--conversation_template", "hf_auto"], r"expected tokenizer \(the tokenizer's own"),
        (["--lora_r", "0"], "lora_r must be >= 1"),
        (["--lora_dropout", "1"], r"lora_dropout must be in \[0, 1\)"),
        (["--eval_sample_size", "0"], "eval_sample_size must be >= 1"),
    ],
)
def test_bad_lmflow_values_raise_input_error(flags: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_align_args([*BASE, *flags])


def test_conversation_templates_accepted() -> None:
    for name in ("tokenizer", "llama3"):
        assert (
            parse_align_args([*BASE, "--conversation_template", name]).data.conversation_template
            == name
        )
