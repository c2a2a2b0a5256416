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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from transformers import HfArgumentParser

from dpov2.errors import InputError
from dpov2.pairing import METHODS
from dpov2.trainer import DPOv2Config

__all__ = [
    "REFERENCE_PREFIX",
    "AlignArguments",
    "DPOv2AlignerArguments",
    "DatasetArguments",
    "ModelArguments",
    "ReferenceModelArguments",
    "from_reference",
    "parse_align_args",
    "to_config",
    "to_reference",
]

REFERENCE_PREFIX = "reference_"
TORCH_DTYPES = ("auto", "float32", "bfloat16", "float16")  # "auto" first
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class ModelArguments:
    """Which model to load, and how. `dpov2:tiny` names the tiny Llama built in code
    (`dpov2.tiny_model`), so demos and tests need no download and no saved folder. (Whether
    checkpoint code may run is the training arguments' `trust_remote_code`.)"""

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


def _prefixed_copy(cls: type[Any], prefix: str, name: str) -> type[Any]:
    """A dataclass with the fields of `cls` renamed `prefix + name`, same types, defaults and help,
    so that both sets of fields can live on one command line."""
    hints = typing.get_type_hints(cls)
    fields = [
        (
            prefix + f.name,
            hints[f.name],
            field(default=f.default, metadata={**f.metadata}),
        )
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(name, fields, namespace={"__module__": __name__})


ReferenceModelArguments: type[Any] = _prefixed_copy(
    ModelArguments, REFERENCE_PREFIX, "ReferenceModelArguments"
)


def to_reference(args: ModelArguments) -> Any:
    """`args` as a `ReferenceModelArguments` (every field with the `reference_` prefix)."""
    return ReferenceModelArguments(
        **{REFERENCE_PREFIX + f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    )


def from_reference(args: Any) -> ModelArguments:
    """A `ReferenceModelArguments` as the plain `ModelArguments` the aligner takes."""
    names = [f.name for f in dataclasses.fields(ModelArguments)]
    return ModelArguments(**{name: getattr(args, REFERENCE_PREFIX + name) for name in names})


@dataclass
class DatasetArguments:
    """The datasets: each a file (JSON Lines, LMFlow JSON, Parquet) or a `save_to_disk` folder,
    either scored (`text_to_scored_textlist`, paired by the aligner) or already paired
    (`paired_text_to_text`)."""

    dataset_path: str | None = field(default=None, metadata={"help": "The training dataset."})
    eval_dataset_path: str | None = field(
        default=None, metadata={"help": "An evaluation dataset (default: no evaluation)."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={"help": "Train on the first N pairs only (counted after pairing)."},
    )

    def __post_init__(self) -> None:
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}")


@dataclass
class DPOv2AlignerArguments(DPOv2Config):
    """`DPOv2Config` with LMFlow's `DPOv2AlignerArguments` names and defaults.

    `length_penalty` ranks responses when pairing (`score - length_penalty * characters`) and, as
    in LMFlow, also sets the trainer's `len_penalty` (per token) unless that is given.
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
    # LMFlow's defaults for TRL's fields.
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


class _ArgumentParser(HfArgumentParser):
    """Reports mistakes as `InputError` (one line on the CLI) instead of printing usage and
    exiting."""

    def error(self, message: str) -> NoReturn:
        raise InputError(message)


def _parser() -> _ArgumentParser:
    parser = _ArgumentParser(ALIGN_DATACLASSES, prog="dpov2 align")
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
    is expected (YAML reads `1e-5` as a string) are converted.

    Raises:
        InputError: an unreadable or malformed config, an unknown or malformed flag, or a value
            the dataclasses reject, naming the config file when there is one.
    """
    parser = _parser()
    argv = list(argv)
    config_file = argv.pop(0) if argv and not argv[0].startswith("-") else None
    given = vars(parser.parse_args(argv))
    settings = {} if config_file is None else _read_config(Path(config_file))
    settings.update(given)
    try:
        model, reference, data, aligner = parser.parse_dict(settings)
    except (TypeError, ValueError) as err:  # dataclass constructors: unknown keys, bad values
        raise InputError(str(err), file=config_file) from None
    return AlignArguments(model, data, aligner, from_reference(reference))


def _read_config(path: Path) -> dict[str, Any]:
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
    return _floats_from_strings(settings, str(path))


def _floats_from_strings(settings: dict[str, Any], file: str) -> dict[str, Any]:
    """Converts string values of float fields (YAML 1.1 reads `1e-5` as a string)."""
    float_fields = {
        name
        for cls in ALIGN_DATACLASSES
        for name, hint in typing.get_type_hints(cls).items()
        if float in (typing.get_args(hint) or (hint,))
    }
    converted = dict(settings)
    for name, value in settings.items():
        if name in float_fields and isinstance(value, str):
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
