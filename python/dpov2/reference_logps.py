"""Reference log-probs computed once and stored with the pairs.

In iterative DPO the reference model (the first policy) never changes across rounds, so the
reference log-probs of a round's pairs can be computed once (`dpov2 reference-logps`) and stored
in the pair file as TRL's columns `ref_chosen_logps` and `ref_rejected_logps` (sums over the
response tokens), beside a `ref_logps_tag` column saying what they depend on. `DPOv2Aligner`
then trains on them without loading or running the reference model, if the tag matches the run.

The values are computed by `DPOv2Trainer` itself, with TRL's `precompute_ref_log_probs` pass:
the same tokenisation (`_prepare_dataset`), truncation, masking and autocast as in training.
Pairs the trainer drops under these settings (a prompt that fills `max_length`) get nulls.

The tag (`ReferenceTag`, one JSON object, the same in every row) names what changes the numbers:

- the reference model: the sha256 of its weights files (a folder's `config.json` and its
  `*.safetensors`, else its `pytorch_model*.bin`; a Hub name's, from its local snapshot) or, for
  `dpov2:tiny`, of its tensors as built; its name is shown, not compared (a copied folder is the
  same reference);
- `torch_dtype` of the reference, and the mixed precision (`bf16`, `fp16` or `no`) it runs under;
- the tokenizer (sha256 of its vocabulary, merges, normalisation and special tokens) and the chat
  template (sha256), after `conversation_template`;
- `max_length`, `max_prompt_length` and `mask_prompt`.

Not in the tag, because they do not change the stored sums: the loss type (per-token losses
divide the sums by the token counts in the trainer), beta, margins and length penalties;
`truncation_mode` (the pairs are cut to fit `max_length` before TRL's collator would truncate);
the batch size, padding and attention kernel, which change the float rounding only.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from accelerate.utils.memory import clear_device_cache
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.trainer_utils import IntervalStrategy

from dpov2.aligner import (
    DTYPES,
    LOAD_ERRORS,
    TINY_MODEL,
    check_local,
    check_pair_columns,
    load_model,
    load_tokenizer,
    with_chat_template,
)
from dpov2.args import REFERENCE_PREFIX, AlignArguments, ModelArguments
from dpov2.errors import InputError
from dpov2.formats import SCORED_TYPE, check_output_path, detect_format, open_writer
from dpov2.formats.hf import is_dataset, one_line
from dpov2.formats.instances import REF_LOGPS_COLUMNS, REF_TAG_COLUMN, REFERENCE_EXTRAS
from dpov2.formats.kinds import dataset_type, pair_tables, read_pairs
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Trainer

if TYPE_CHECKING:
    import datasets

__all__ = [
    "STORED_COLUMNS",
    "TAG_COLUMN",
    "TAG_VERSION",
    "ReferenceTag",
    "carries_stored_logps",
    "compute_reference_logps",
    "model_fingerprint",
    "reference_tag",
    "stored_tag",
    "tokenizer_fingerprints",
    "use_stored_logps",
    "write_reference_logps",
]

REF_CHOSEN, REF_REJECTED = REF_LOGPS_COLUMNS
TAG_COLUMN = REF_TAG_COLUMN
#: The columns `compute_reference_logps` adds: the two log-probs and their tag.
STORED_COLUMNS = tuple(REFERENCE_EXTRAS)
TAG_VERSION = 1
# Row numbers carried through the trainer's tokenisation, which drops some pairs.
_ROW = "_dpov2_row"
_CHUNK = 1 << 23  # bytes read at a time when hashing a weights file


@dataclass(frozen=True)
class ReferenceTag:
    """What stored reference log-probs depend on (see the module docstring). Two tags match when
    every field but `reference` (the name, shown in messages) is equal."""

    reference: str
    weights: str
    torch_dtype: str
    mixed_precision: str
    tokenizer: str
    chat_template: str | None
    max_length: int | None
    max_prompt_length: int | None
    mask_prompt: bool
    version: int = TAG_VERSION

    def to_json(self) -> str:
        """The tag as the compact JSON text stored in `TAG_COLUMN`."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, *, file: str, row: int) -> ReferenceTag:
        """The tag stored as `text`.

        Raises:
            InputError: not a tag this version of dpov2 writes (naming file, row and field).
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict) or set(value) != fields:
            raise InputError(
                f"is not a reference log-prob tag (a JSON object of {', '.join(sorted(fields))}); "
                "recompute the columns with dpov2 reference-logps",
                file=file,
                row=row,
                field=TAG_COLUMN,
            )
        if value["version"] != TAG_VERSION:
            raise InputError(
                f"tag version {value['version']!r}, and this dpov2 reads version {TAG_VERSION}; "
                "recompute the columns with dpov2 reference-logps",
                file=file,
                row=row,
                field=TAG_COLUMN,
            )
        return cls(**value)

    def differences(self, current: ReferenceTag) -> list[str]:
        """The names of the fields (but `reference`) in which `current` differs."""
        return [
            f.name
            for f in dataclasses.fields(self)
            if f.name != "reference" and getattr(self, f.name) != getattr(current, f.name)
        ]

    def describe(self, names: list[str]) -> str:
        """The fields `names` of this tag, as a message shows them."""
        parts = []
        for name in names:
            value = getattr(self, name)
            if name == "weights":
                parts.append(f"reference {self.reference} (weights sha256 {value[:12]})")
            elif name in ("tokenizer", "chat_template"):
                shown = "none" if value is None else f"sha256 {value[:12]}"
                parts.append(f"{name.replace('_', ' ')} {shown}")
            else:
                parts.append(f"{name} {value}")
        return ", ".join(parts)


def _reference_args(args: AlignArguments) -> tuple[ModelArguments, str]:
    """The reference's model arguments and their field prefix: the named reference, else the
    policy (the aligner's reference is then a frozen copy of it, or its base under LoRA)."""
    if args.reference.model_name_or_path:
        return args.reference, REFERENCE_PREFIX
    return args.model, ""


def model_fingerprint(args: ModelArguments, *, field: str = "model_name_or_path") -> str:
    """The sha256 identifying the weights `args` names, without loading the model: of a folder's
    (or a Hub snapshot's) `config.json` and weights files, or of `dpov2:tiny`'s tensors.

    Raises:
        InputError: no model named, a folder without weights files, or a Hub name that cannot
            be fetched.
    """
    name = args.model_name_or_path
    if not name:
        raise InputError(f"no model given; set {field}")
    digest = hashlib.sha256()
    if name == TINY_MODEL:
        dtype = DTYPES.get(args.torch_dtype, torch.float32)
        model = build_tiny_model(build_tiny_tokenizer(), dtype=dtype)
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
    for file in _weights_files(_model_folder(name, field), name, field):
        digest.update(f"{file.name}\0".encode())
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _model_folder(name: str, field: str) -> Path:
    """A local folder, or the local snapshot of a Hub model (its config and weights fetched if
    not there yet, as loading it would)."""
    check_local(name, field)
    folder = Path(os.path.expanduser(name))
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(name, allow_patterns=["config.json", "*.safetensors", "*.bin"])
        )
    except LOAD_ERRORS as err:  # what loading the model would meet too (the Hub's: OSError)
        raise InputError(
            f"cannot fetch the model to fingerprint it: {one_line(err)}", file=name, field=field
        ) from None


def _weights_files(folder: Path, name: str, field: str) -> list[Path]:
    """`config.json` and the weights files transformers would load: `*.safetensors` if any, else
    `pytorch_model*.bin`, in name order."""
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        raise InputError(
            "has no weights files (*.safetensors or pytorch_model*.bin) to fingerprint",
            file=name,
            field=field,
        )
    config = folder / "config.json"
    return ([config] if config.is_file() else []) + weights


def tokenizer_fingerprints(tokenizer: PreTrainedTokenizerBase) -> tuple[str, str | None]:
    """The sha256 of the tokenizer (vocabulary, merges, normalisation, post-processing and
    special tokens) and of its chat template (None without one)."""
    if tokenizer.is_fast:
        vocabulary = tokenizer.backend_tokenizer.to_str()
    else:
        vocabulary = json.dumps(sorted(tokenizer.get_vocab().items()))
    specials = json.dumps([tokenizer.all_special_tokens, tokenizer.bos_token, tokenizer.eos_token])
    text = hashlib.sha256(f"{vocabulary}\0{specials}".encode()).hexdigest()
    template = tokenizer.chat_template
    if template is None:
        return text, None
    shown = template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return text, hashlib.sha256(shown.encode()).hexdigest()


def reference_tag(args: AlignArguments, tokenizer: PreTrainedTokenizerBase) -> ReferenceTag:
    """The tag of reference log-probs computed for the run `args` describes, with `tokenizer`
    (the policy's, carrying `conversation_template`, as the aligner uses it)."""
    reference, prefix = _reference_args(args)
    config = args.aligner
    text, template = tokenizer_fingerprints(tokenizer)
    return ReferenceTag(
        reference=str(reference.model_name_or_path),
        weights=model_fingerprint(reference, field=prefix + "model_name_or_path"),
        torch_dtype=reference.torch_dtype,
        mixed_precision="bf16" if config.bf16 else "fp16" if config.fp16 else "no",
        tokenizer=text,
        chat_template=template,
        max_length=config.max_length,
        max_prompt_length=config.max_prompt_length,
        mask_prompt=config.mask_prompt,
    )


def stored_tag(dataset: datasets.Dataset, shown: str) -> ReferenceTag | None:
    """The tag of `dataset`'s stored reference log-probs; None when it has none of
    `STORED_COLUMNS`.

    Raises:
        InputError: some of the columns but not all, or a tag that is null, not a tag, or not
            the same in every row.
    """
    present = [name for name in STORED_COLUMNS if name in dataset.column_names]
    if not present:
        return None
    if len(present) < len(STORED_COLUMNS):
        missing = [name for name in STORED_COLUMNS if name not in present]
        raise InputError(
            f"has {', '.join(present)} but no {', '.join(missing)}; stored reference log-probs "
            "need all of them: recompute them with dpov2 reference-logps or drop the columns",
            file=shown,
        )
    tags = pa.chunked_array(dataset.with_format("arrow")[TAG_COLUMN])
    if len(tags) == 0:
        return None
    if tags.null_count:
        row = int(np.argmax(tags.is_null().to_numpy(zero_copy_only=False)))
        raise InputError(
            "null; expected the tag of the row's log-probs", file=shown, row=row, field=TAG_COLUMN
        )
    first = tags[0].as_py()
    differs = pc.not_equal(tags, pa.scalar(first, tags.type)).to_numpy(zero_copy_only=False)
    if differs.any():
        raise InputError(
            "differs from row 0's: these rows' reference log-probs were computed for different "
            "runs; recompute them for all rows with dpov2 reference-logps",
            file=shown,
            row=int(np.argmax(differs)),
            field=TAG_COLUMN,
        )
    return ReferenceTag.from_json(first, file=shown, row=0)


def use_stored_logps(
    datasets_by_name: dict[str, tuple[datasets.Dataset | None, str]],
    args: AlignArguments,
    tokenizer: PreTrainedTokenizerBase,
) -> bool:
    """Whether the run `args` describes can train on the stored reference log-probs of its
    datasets (name: (dataset or None, what it is, for messages)) instead of running the
    reference: False when none has them, True when all have them and their tags match.

    Raises:
        InputError: some datasets with stored log-probs and some without, or a tag that does
            not match this run (saying what differs).
    """
    given = {name: pair for name, pair in datasets_by_name.items() if pair[0] is not None}
    tags = {}
    for name, (dataset, shown) in given.items():
        assert dataset is not None
        tags[name] = stored_tag(dataset, shown)
    without = [name for name, tag in tags.items() if tag is None]
    if len(without) == len(tags):
        return False
    if without:
        having = next(name for name, tag in tags.items() if tag is not None)
        raise InputError(
            f"the {having} dataset has stored reference log-probs ({REF_CHOSEN}) and the "
            f"{' and '.join(without)} dataset ({given[without[0]][1]}) has none; compute them "
            "for it too with dpov2 reference-logps, or drop them"
        )
    current = reference_tag(args, tokenizer)
    for name, tag in tags.items():
        assert tag is not None
        differing = tag.differences(current)
        if differing:
            raise InputError(
                f"{REF_CHOSEN} and {REF_REJECTED} were computed with {tag.describe(differing)}; "
                f"this run uses {current.describe(differing)}: recompute them with dpov2 "
                "reference-logps or drop the columns",
                file=given[name][1],
            )
    return True


def carries_stored_logps(source: str | os.PathLike[str] | datasets.Dataset) -> bool:
    """Whether a paired dataset has the reference log-prob columns, reading its first table
    only (a scored dataset has none). Lets `run_alignment` skip loading the reference."""
    if dataset_type(source) == SCORED_TYPE:
        return False
    if is_dataset(source):
        dataset: datasets.Dataset = source
        return all(name in dataset.column_names for name in REF_LOGPS_COLUMNS)
    tables = pair_tables(source)
    try:
        first = next(tables, None)
    finally:
        close = getattr(tables, "close", None)
        if close is not None:
            close()
    return first is not None and all(name in first.column_names for name in REF_LOGPS_COLUMNS)


def compute_reference_logps(
    pairs: str | os.PathLike[str] | datasets.Dataset,
    args: AlignArguments,
    *,
    reference: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> datasets.Dataset:
    """The pairs with `STORED_COLUMNS` added (replaced, if there): each pair's reference
    log-probs as `DPOv2Trainer` computes them in training for the run `args` describes (null
    for a pair it drops), and their tag.

    `reference` defaults to the model `args` names for the reference (else the policy's),
    `tokenizer` to the policy's; either given must be what `args` names, or the tag lies.

    Raises:
        InputError: a scored dataset, unreadable pairs, or a model that cannot be loaded.
    """
    shown = "a datasets.Dataset" if is_dataset(pairs) else str(pairs)
    if dataset_type(pairs) == SCORED_TYPE:
        raise InputError(
            "is a scored dataset; pair it first (dpov2 pair) and compute the log-probs of the "
            "pairs",
            file=shown,
        )
    dataset = read_pairs(pairs)
    check_pair_columns(dataset, shown)
    dataset = dataset.remove_columns([c for c in STORED_COLUMNS if c in dataset.column_names])
    trust = args.aligner.trust_remote_code
    if tokenizer is None:
        tokenizer = load_tokenizer(args.model, trust_remote_code=trust)
    tokenizer = with_chat_template(tokenizer, args.data.conversation_template)
    tag = reference_tag(args, tokenizer).to_json()
    if reference is None:
        reference_args, prefix = _reference_args(args)
        reference = load_model(reference_args, trust_remote_code=trust, prefix=prefix)
    chosen, rejected = _trainer_logps(dataset, reference, tokenizer, args)
    dataset = dataset.add_column(REF_CHOSEN, chosen)
    dataset = dataset.add_column(REF_REJECTED, rejected)
    return dataset.add_column(TAG_COLUMN, [tag] * len(dataset))


def _trainer_logps(
    dataset: datasets.Dataset,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    args: AlignArguments,
) -> tuple[list[float | None], list[float | None]]:
    """Each row's reference log-probs from a `DPOv2Trainer` over `reference` with TRL's
    precompute pass (its datasets map is written to a temporary folder); None for the rows the
    trainer drops."""
    config = copy.copy(args.aligner)
    config.precompute_ref_log_probs = True
    config.loss_type = "sigmoid"  # any loss: none is computed, and margins are not needed
    config.eval_strategy = IntervalStrategy.NO
    config.do_eval = False
    config.report_to = []
    rows = len(dataset)
    indexed = dataset.add_column(_ROW, list(range(rows)))
    reference.train(False)  # as the trainer's reference: prepared in evaluation mode
    with tempfile.TemporaryDirectory(prefix="dpov2-reference-logps-") as folder:
        config.output_dir = folder
        trainer = DPOv2Trainer(
            reference, args=config, train_dataset=indexed, processing_class=tokenizer
        )
        try:
            prepared = trainer.train_dataset
            assert isinstance(prepared, Dataset)  # built from a Dataset
            computed = prepared.select_columns([_ROW, *REF_LOGPS_COLUMNS])
            columns = computed.with_format("numpy")[:]
            kept = columns[_ROW]
            values = {name: columns[name].astype(np.float64) for name in REF_LOGPS_COLUMNS}
        finally:
            trainer.accelerator.free_memory()
            del trainer
            gc.collect()
            clear_device_cache()
    result = []
    for name in REF_LOGPS_COLUMNS:
        column: list[float | None] = [None] * rows
        for row, value in zip(kept.tolist(), values[name].tolist(), strict=True):
            column[row] = value
        result.append(column)
    return result[0], result[1]


def write_reference_logps(
    pairs: str | os.PathLike[str] | datasets.Dataset,
    output: str | os.PathLike[str],
    args: AlignArguments,
    *,
    overwrite: bool = False,
    batch_size: int = 8192,
) -> tuple[int, int]:
    """Writes the pairs with their reference log-probs (`compute_reference_logps`) to `output`
    (any pair format: every reader keeps the columns), whole or not at all; returns (pairs
    written, pairs with log-probs).

    Raises:
        InputError: an output that exists (without `overwrite`) or is of no known format, and
            what `compute_reference_logps` raises.
    """
    target = Path(output)
    detect_format(target, None, output=True)
    check_output_path(target, overwrite=overwrite)  # before the work, not after it
    dataset = compute_reference_logps(pairs, args)
    with open_writer(target, overwrite=overwrite) as writer:
        table: Any
        for table in dataset.with_format("arrow").iter(batch_size):
            writer.write(pa.table(table))
        writer.finish(dataset.data.schema)
    kept = len(dataset) - pa.chunked_array(dataset.with_format("arrow")[REF_CHOSEN]).null_count
    return len(dataset), kept
