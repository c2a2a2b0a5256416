"""The arguments of a DPOv2 alignment run, with LMFlow's names and defaults.

Four dataclasses, parsed together by `HfArgumentParser`:

- `ModelArguments`: the policy to train;
- `ReferenceModelArguments`: the same fields with a `reference_` prefix (as LMFlow spells them on
  the command line), for the frozen reference; the aligner itself takes a plain `ModelArguments`
  for it, `to_reference` and `from_reference` convert;
- `DatasetArguments`: the train and eval datasets;
- `DPOv2AlignerArguments`: `DPOv2Config` (all of TRL's and transformers' training arguments) plus
  LMFlow's pairing options and LMFlow's defaults.

`parse_align_args` reads them from command-line flags, from one JSON or YAML file, or from a file
with flags overriding it; `to_config` turns them back into the flat dictionary such a file holds,
which is how `MemorySafeDPOv2Aligner` hands every argument to its child process.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from dpov2.errors import InputError
from dpov2.pairing import METHODS
from dpov2.trainer import DPOv2Config

__all__ = [
    "LMFLOW_ALIASES",
    "LMFLOW_REFUSED",
    "REFERENCE_PREFIX",
    "Alias",
    "AlignArguments",
    "DPOv2AlignerArguments",
    "DatasetArguments",
    "InputErrorParser",
    "ModelArguments",
    "ReferenceModelArguments",
    "align_args_from",
    "align_option_names",
    "as_bool",
    "from_reference",
    "parse_align_args",
    "read_config",
    "to_config",
    "to_reference",
]

REFERENCE_PREFIX = "reference_"
TORCH_DTYPES = ("auto", "float32", "bfloat16", "float16")  # "auto" first
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
FLASH_ATTENTION = "flash_attention_2"
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", FLASH_ATTENTION)
# `conversation_template` values: the tokenizer's own chat template, or a template shipped here.
TOKENIZER_TEMPLATE = "tokenizer"
# Llama 3 Instruct's turn format (header, blank line, trimmed content, end of turn), written out
# as a Jinja chat template for `tokenizer.chat_template`.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{ message['content'] | trim }}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)
CHAT_TEMPLATES: dict[str, str] = {"llama3": LLAMA3_TEMPLATE}
# LoRA options of the policy only: the reference is never trained.
POLICY_ONLY_FIELDS = ("use_lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")


@dataclass
class ModelArguments:
    """Which model to load, and how, with LMFlow's names. `dpov2:tiny` names the tiny Llama
    built in code (`dpov2.tiny_model`), so demos and tests need no download and no saved
    folder. (Whether checkpoint code may run is the training arguments' `trust_remote_code`.)

    `use_lora` trains a LoRA adapter (PEFT) instead of the weights, with LMFlow's defaults
    (`lora_r` 8, `lora_alpha` 32, `lora_dropout` 0.1, `lora_target_modules` PEFT's choice for
    the architecture); the reference is then the base model with the adapter off, and the
    adapter alone is saved. LMFlow's `use_flash_attention` is `attn_implementation`
    `flash_attention_2`. LMFlow's `torch_dtype` default None loads float32; here `auto` keeps
    the checkpoint's dtype.
    """

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A local folder, a Hugging Face Hub name, or dpov2:tiny (a tiny model built "
            "in code). For the reference model, empty means a frozen copy of the policy."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder or Hub name, if not the model's own."},
    )
    torch_dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights' dtype: auto keeps the checkpoint's.",
            "choices": list(TORCH_DTYPES),
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel (LMFlow's use_flash_attention is flash_attention_2, which "
            "needs the flash_attn package and a CUDA GPU); default: transformers' choice.",
            "choices": list(ATTN_IMPLEMENTATIONS),
        },
    )
    use_lora: bool = field(
        default=False,
        metadata={"help": "Train a LoRA adapter; the reference is the base with it off."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated module names to adapt (e.g. q_proj,v_proj); default: "
            "PEFT's for the architecture."
        },
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    def lora_config(self) -> Any:
        """The `peft.LoraConfig` of the LoRA fields, or None without `use_lora`."""
        if not self.use_lora:
            return None
        from peft import LoraConfig

        modules = None
        if self.lora_target_modules:
            modules = [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]
        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=modules,
            task_type="CAUSAL_LM",
        )


def _reference_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(ModelArguments) if f.name not in POLICY_ONLY_FIELDS]


def _prefixed_copy(cls: type[Any], prefix: str, name: str) -> type[Any]:
    """A dataclass with the fields of `cls` (but `POLICY_ONLY_FIELDS`) renamed `prefix + name`,
    same types, defaults and help, so that both sets of fields can live on one command line."""
    hints = typing.get_type_hints(cls)
    fields = [
        (
            prefix + f.name,
            hints[f.name],
            field(default=f.default, metadata={**f.metadata}),
        )
        for f in _reference_fields()
    ]
    return dataclasses.make_dataclass(name, fields, namespace={"__module__": __name__})


ReferenceModelArguments: type[Any] = _prefixed_copy(
    ModelArguments, REFERENCE_PREFIX, "ReferenceModelArguments"
)


def to_reference(args: ModelArguments) -> Any:
    """`args` as a `ReferenceModelArguments` (its fields with the `reference_` prefix; LoRA
    options are the policy's only)."""
    return ReferenceModelArguments(
        **{REFERENCE_PREFIX + f.name: getattr(args, f.name) for f in _reference_fields()}
    )


def from_reference(args: Any) -> ModelArguments:
    """A `ReferenceModelArguments` as the plain `ModelArguments` the aligner takes."""
    names = [f.name for f in _reference_fields()]
    return ModelArguments(**{name: getattr(args, REFERENCE_PREFIX + name) for name in names})


@dataclass
class DatasetArguments:
    """The datasets: each a file (JSON Lines, LMFlow JSON, Parquet) or a `save_to_disk` folder,
    either scored (`text_to_scored_textlist`, paired by the aligner) or already paired
    (`paired_text_to_text`).

    With evaluation on (`eval_strategy` steps or epoch) and no eval dataset, the aligner
    evaluates on `eval_sample_size` training pairs drawn with `random_seed` (LMFlow's
    memory-safe aligner always evaluates on 100 training instances, even with an eval path).

    `conversation_template` is the chat template that conversational pairs (message lists) are
    rendered with; text pairs are tokenized as they are. Supported: unset (the tokenizer's
    own, if it has one), `tokenizer` (the tokenizer's own, which must exist) and `llama3`
    (Llama 3 Instruct's format, shipped here). LMFlow's other preset names (`qwen2_5`,
    `deepseek_v3`, ...) and `hf_auto` are refused: use a tokenizer that carries the template
    (`tokenizer_name`) with `tokenizer`.
    """

    dataset_path: str | None = field(default=None, metadata={"help": "The training dataset."})
    eval_dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "An evaluation dataset (default, when evaluation is on: eval_sample_size "
            "training pairs)."
        },
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on the first N pairs only (counted after pairing)."},
    )
    eval_sample_size: int = field(
        default=100,
        metadata={
            "help": "With evaluation on and no eval_dataset_path: evaluate on this many "
            "training pairs, drawn with random_seed (LMFlow's 100)."
        },
    )
    conversation_template: str | None = field(
        default=None,
        metadata={
            "help": "Chat template of conversational pairs: tokenizer (the tokenizer's own) or "
            + ", ".join(CHAT_TEMPLATES)
            + "; default: the tokenizer's own if any."
        },
    )

    def __post_init__(self) -> None:
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}")
        if self.eval_sample_size < 1:
            raise ValueError(f"eval_sample_size must be >= 1, got {self.eval_sample_size}")
        template = self.conversation_template
        if (
            template is not None
            and template != TOKENIZER_TEMPLATE
            and template not in CHAT_TEMPLATES
        ):
            raise ValueError(
                f"conversation_template={template!r} is not shipped with dpov2; expected "
                f"{TOKENIZER_TEMPLATE} (the tokenizer's own chat template) or "
                f"{', '.join(CHAT_TEMPLATES)}, or a tokenizer_name whose tokenizer carries the "
                "template you want"
            )


@dataclass
class DPOv2AlignerArguments(DPOv2Config):
    """`DPOv2Config` with LMFlow's `DPOv2AlignerArguments` names and defaults.

    `length_penalty` ranks responses when pairing (`score - length_penalty * characters`) and, as
    in LMFlow, also sets the trainer's `len_penalty` (per token) unless that is given.

    Defaults are LMFlow's: `random_seed` 42, `margin_scale` 1, `sampling_paired_method`
    max_random, `length_penalty` 0, `max_length` 2048, `max_prompt_length` 1000, `mask_prompt`
    off, `beta` 0.1, `loss_type` sigmoid, and transformers' `learning_rate` 5e-5 and
    `logging_steps` 500 that LMFlow inherits (TRL's DPOConfig has 1e-6 and 10), gradient
    checkpointing off (TRL's is on). Kept different, and why:

    - LMFlow hands the trainer only some of these fields (batch sizes, epochs, save, logging,
      eval and warmup steps, learning rate and scheduler, optimizer, bf16, report_to, run_name)
      and drops the rest (`seed`, `max_grad_norm`, `weight_decay`, `max_steps`, ...); here every
      field given is honoured.
    - LMFlow pairs the eval set with no length penalty; here it is paired like the train set.
    - `bf16`: None chooses from the hardware (`DPOv2Config`); LMFlow's default is off.
    """

    random_seed: int = field(
        default=42, metadata={"help": "Seed of the pair selection (training uses `seed`)."}
    )
    accelerate_config_file: str | None = field(
        default=None,
        metadata={
            "help": "accelerate config for the memory-safe aligner's child process, launched with "
            "`accelerate launch --config_file`; default: the current Python, one process."
        },
    )
    margin_scale: float = field(
        default=1.0, metadata={"help": "margin = (chosen score - rejected score) * margin_scale."}
    )
    sampling_paired_method: str = field(
        default="max_random",
        metadata={"help": "How scored responses are paired.", "choices": list(METHODS)},
    )
    length_penalty: float = field(
        default=0.0,
        metadata={"help": "Pairing ranks by score - length_penalty * length in characters."},
    )
    # LMFlow's defaults for TRL's and transformers' fields.
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW's initial learning rate."})
    logging_steps: float = field(
        default=500,
        metadata={"help": "Log every N steps (a float < 1: that fraction of all steps)."},
    )
    max_length: int | None = field(
        default=2048, metadata={"help": "Tokens of prompt + response kept per example."}
    )
    max_prompt_length: int | None = field(
        default=1000, metadata={"help": "Prompt tokens kept (its last ones)."}
    )
    # TRL turns this on by default; LMFlow (and transformers) leave it off. None also keeps
    # transformers from warning that the name is deprecated (for activation_checkpointing).
    gradient_checkpointing: bool | None = field(  # type: ignore[assignment]
        default=None,
        metadata={"help": "Deprecated name of activation_checkpointing; off by default."},
    )
    len_penalty: float | None = field(  # type: ignore[assignment]
        default=None,
        metadata={"help": "Per-token length penalty in the loss; default: length_penalty."},
    )

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ValueError("output_dir is required: where the trained model is saved")
        if self.sampling_paired_method not in METHODS:
            raise ValueError(
                f"sampling_paired_method={self.sampling_paired_method!r}; expected one of "
                f"{', '.join(METHODS)}"
            )
        for name in ("margin_scale", "length_penalty"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        seed = self.random_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"random_seed must be an integer in [0, 2**64), got {seed!r}")
        if self.len_penalty is None:
            self.len_penalty = self.length_penalty
        super().__post_init__()


# In the order `HfArgumentParser` returns them.
ALIGN_DATACLASSES: tuple[Any, ...] = (
    ModelArguments,
    ReferenceModelArguments,
    DatasetArguments,
    DPOv2AlignerArguments,
)


@dataclass(frozen=True)
class AlignArguments:
    """Everything an alignment run needs; `reference` is a plain `ModelArguments`."""

    model: ModelArguments
    data: DatasetArguments
    aligner: DPOv2AlignerArguments
    reference: ModelArguments


def _yes_no(text: str) -> bool:
    """transformers' reading of a yes/no flag value (yes/no, true/false, 1/0, ...)."""
    return bool(string_to_bool(text))  # type: ignore[no-untyped-call]


def _flash_attention(value: bool) -> str | None:
    return FLASH_ATTENTION if value else None


@dataclass(frozen=True)
class Alias:
    """An LMFlow name for a dpov2 option: the same option, spelled as LMFlow spells it.

    `to_value` turns a yes/no LMFlow value into the dpov2 option's value (None: sets nothing);
    without it the value passes unchanged."""

    lmflow: str
    name: str
    to_value: Callable[[bool], Any] | None = None


LMFLOW_ALIASES: tuple[Alias, ...] = (
    Alias("evaluation_strategy", "eval_strategy"),  # transformers' old name
    Alias("preprocessing_num_workers", "dataset_num_proc"),
    Alias("use_flash_attention", "attn_implementation", _flash_attention),
    Alias(
        REFERENCE_PREFIX + "use_flash_attention",
        REFERENCE_PREFIX + "attn_implementation",
        _flash_attention,
    ),
)

# LMFlow options dpov2 does not have, and why. A false (or empty) value is accepted and ignored,
# since LMFlow configs often spell out the default.
_ITERATIVE = "an option of LMFlow's iterative DPO pipeline; dpov2 align runs one DPO round"
LMFLOW_REFUSED: dict[str, str] = {
    "use_qlora": "QLoRA (a 4/8-bit base) is not supported; use use_lora on a full-precision model",
    "use_dora": "DoRA is not supported; use use_lora",
    "save_aggregated_lora": "the LoRA adapter is saved on its own (PEFT's adapter files); "
    "merge it with peft's merge_and_unload",
    "lora_model_path": "loading an existing LoRA adapter is not supported; merge it into the "
    "model (peft's merge_and_unload) and give that as model_name_or_path",
    "use_lisa": "LISA layer-wise training is not supported",
    "dataset_path_list": _ITERATIVE + " (give dataset_path)",
    "initial_iter_idx": _ITERATIVE,
}


class InputErrorParser(HfArgumentParser):
    """Reports mistakes as `InputError` (one line on the CLI) instead of printing usage and
    exiting."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message)


def _parser() -> InputErrorParser:
    parser = InputErrorParser(ALIGN_DATACLASSES, prog="dpov2 align")
    options = {action.dest: action for action in parser._actions}
    lmflow = parser.add_argument_group("LMFlow's names")
    for alias in LMFLOW_ALIASES:
        target = options[alias.name]
        if alias.to_value is None:  # parsed as the option it names
            same: dict[str, Any] = {
                key: value
                for key, value in (
                    ("type", target.type),
                    ("choices", target.choices),
                    ("nargs", target.nargs),
                    ("const", target.const),
                    ("metavar", target.metavar),
                )
                if value is not None
            }
            lmflow.add_argument(
                "--" + alias.lmflow,
                dest=alias.lmflow,
                help=f"LMFlow's name for --{alias.name}",
                **same,
            )
        else:
            lmflow.add_argument(
                "--" + alias.lmflow,
                dest=alias.lmflow,
                type=_yes_no,
                nargs="?",
                const=True,
                metavar="BOOL",
                help=f"LMFlow's: true sets --{alias.name} {alias.to_value(True)}",
            )
    for name, reason in LMFLOW_REFUSED.items():
        lmflow.add_argument(
            "--" + name, dest=name, nargs="?", const="true", help=f"refused: {reason}"
        )
    # Only the flags actually given land in the namespace, so that they can override a config
    # file. (Every field has a default, so HfArgumentParser marks no flag required.)
    # (`set_defaults` would not do: argparse then runs SUPPRESS through each flag's type.)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return parser


def parse_align_args(argv: Sequence[str]) -> AlignArguments:
    """The arguments from `argv`: `[CONFIG] [--flag value ...]`.

    CONFIG is a JSON or YAML file holding a flat mapping of field names (reference model fields
    with their `reference_` prefix); flags override its values. Strings in the file where a float
    is expected (YAML reads `1e-5` as a string) are converted, and so are `0`/`1` (and
    true/false strings) where a yes/no is expected. LMFlow's names (`LMFLOW_ALIASES`) are read
    as the options they name, in the file and on the command line; `LMFLOW_REFUSED` names are
    refused with the reason.

    Raises:
        InputError: an unreadable or malformed config, an unknown or malformed flag, a value
            the dataclasses reject, an LMFlow name given with its dpov2 name and another value,
            or a refused LMFlow option, naming the config file when there is one.
    """
    parser = _parser()
    argv = list(argv)
    config_file = argv.pop(0) if argv and not argv[0].startswith("-") else None
    given = _lmflow_names(vars(parser.parse_args(argv)), None)
    settings = {}
    if config_file is not None:
        settings = _lmflow_names(read_config(Path(config_file)), config_file)
    settings.update(given)
    return _parsed(parser, settings, config_file)


def align_args_from(settings: dict[str, Any], file: str | None) -> AlignArguments:
    """The arguments from a mapping of option names, as a config file ``file`` gives them
    (LMFlow's names included, values typed as in a config file).

    Raises:
        InputError: as :func:`parse_align_args`, naming ``file``.
    """
    shown = "settings" if file is None else file
    typed = _typed_values(settings, shown)
    return _parsed(_parser(), _lmflow_names(typed, file), file)


def align_option_names() -> frozenset[str]:
    """Every name ``dpov2 align`` reads from a config: its options, LMFlow's aliases and the
    LMFlow options it refuses with a reason."""
    return frozenset(action.dest for action in _parser()._actions if action.dest != "help")


def _parsed(parser: InputErrorParser, settings: dict[str, Any], file: str | None) -> AlignArguments:
    try:
        model, reference, data, aligner = parser.parse_dict(settings)
    except (TypeError, ValueError) as err:  # dataclass constructors: unknown keys, bad values
        raise InputError(str(err), file=file) from None
    return AlignArguments(model, data, aligner, from_reference(reference))


def _lmflow_names(settings: dict[str, Any], file: str | None) -> dict[str, Any]:
    """`settings` with LMFlow's names replaced by dpov2's, and refused LMFlow options dropped
    when false or raised otherwise."""
    renamed = dict(settings)
    for name, reason in LMFLOW_REFUSED.items():
        if name in renamed:
            value = renamed.pop(name)
            off = value in (None, [], "") or (
                isinstance(value, (bool, int, str)) and not as_bool(value, name, file, strict=False)
            )
            if not off:
                raise InputError(f"LMFlow's {name} is refused: {reason}", file=file, field=name)
    for alias in LMFLOW_ALIASES:
        if alias.lmflow not in renamed:
            continue
        value = renamed.pop(alias.lmflow)
        if alias.to_value is not None:
            value = alias.to_value(as_bool(value, alias.lmflow, file))
            if value is None:  # LMFlow's default: sets nothing
                continue
        if alias.name in renamed and renamed[alias.name] != value:
            raise InputError(
                f"{alias.lmflow} (LMFlow's name) and {alias.name} are the same option, given "
                f"{value!r} and {renamed[alias.name]!r}; give one",
                file=file,
                field=alias.lmflow,
            )
        renamed[alias.name] = value
    return renamed


def as_bool(value: Any, name: str, file: str | None, *, strict: bool = True) -> bool:
    """A yes/no value as LMFlow's scripts and configs write it: true/false, 1/0, yes/no.
    (`strict=False`: anything else counts as yes.)"""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        try:
            return _yes_no(value)
        except argparse.ArgumentTypeError:
            pass
    if not strict:
        return True
    raise InputError(f"expected true/false (or 1/0), got {value!r}", file=file, field=name)


def read_config(path: Path) -> dict[str, Any]:
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise InputError(
            f"expected a config file ({', '.join(CONFIG_SUFFIXES)}) or --flags", file=str(path)
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=str(path)) from None
    import yaml

    try:
        settings = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # ValueError: json's errors
        message = " ".join(str(err).split())  # YAML's messages run over several lines
        raise InputError(
            f"not valid {path.suffix[1:].upper()}: {message}", file=str(path)
        ) from None
    if not isinstance(settings, dict):
        raise InputError("expected a mapping of argument names to values", file=str(path))
    return _typed_values(settings, str(path))


def _typed_values(settings: dict[str, Any], file: str) -> dict[str, Any]:
    """Converts string values of float fields (YAML 1.1 reads `1e-5` as a string), and 0/1 or
    true/false strings of yes/no fields (LMFlow writes `trust_remote_code: 0`)."""
    hints = {
        name: typing.get_args(hint) or (hint,)
        for cls in ALIGN_DATACLASSES
        for name, hint in typing.get_type_hints(cls).items()
    }
    converted = dict(settings)
    for name, value in settings.items():
        kinds = hints.get(name, ())
        if bool in kinds and not isinstance(value, bool) and value is not None:
            converted[name] = as_bool(value, name, file)
        elif float in kinds and isinstance(value, str):
            try:
                converted[name] = float(value)
            except ValueError:
                raise InputError(
                    f"expected a number, got {value!r}", file=file, field=name
                ) from None
    return converted


def to_config(args: AlignArguments) -> dict[str, Any]:
    """A flat, JSON-ready mapping that `parse_align_args` turns back into equal arguments."""
    parts = (args.model, to_reference(args.reference), args.data, args.aligner)
    return {
        f.name: _plain(getattr(part, f.name))
        for part in parts
        for f in dataclasses.fields(part)
        if f.init
    }


def _plain(value: Any) -> Any:
    """JSON types for what `__post_init__` made of a value: enums back to their strings, nested
    configs (transformers' `AcceleratorConfig`) to mappings."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
