"""LMFlow's DPOv2 aligners on dpov2's pairing and `DPOv2Trainer`.

`DPOv2Aligner.align` trains in this process: scored datasets are paired, the model is trained and
saved, and the memory the run allocated (optimizer state, the reference copy, caches) is released.
The model's own weights stay wherever the caller keeps them.

`MemorySafeDPOv2Aligner.align` runs the same alignment in a child process and waits for it, so the
parent never holds the model at all. This is what lets an iterative DPO loop (generate, score,
pair, train, repeat) fit on one GPU: each training round's memory goes away with its process,
leaving the GPU to the next generation round.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, TextIO

import numpy as np
import pyarrow as pa
import torch
from accelerate.utils.memory import clear_device_cache
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.trainer_utils import IntervalStrategy
from transformers.utils.import_utils import is_flash_attn_2_available

from dpov2.args import (
    CHAT_TEMPLATES,
    FLASH_ATTENTION,
    REFERENCE_PREFIX,
    TOKENIZER_TEMPLATE,
    TORCH_DTYPES,
    AlignArguments,
    DatasetArguments,
    DPOv2AlignerArguments,
    ModelArguments,
    to_config,
)
from dpov2.convert import convert_to_paired_dataset
from dpov2.errors import InputError
from dpov2.formats import SCORED_TYPE
from dpov2.formats.hf import is_dataset, one_line
from dpov2.formats.instances import is_prompt_type
from dpov2.formats.kinds import IMPLICIT_PAIR_COLUMNS, PAIR_COLUMNS, dataset_type, read_pairs
from dpov2.pairing import sampling_paired_idx_from_rewards
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Trainer

if TYPE_CHECKING:
    import datasets

__all__ = [
    "CHILD_ENV_REMOVED",
    "DTYPES",
    "FINAL_CHECKPOINT",
    "LOAD_ERRORS",
    "TINY_MODEL",
    "AlignmentError",
    "DPOv2Aligner",
    "MemorySafeDPOv2Aligner",
    "check_local",
    "check_pair_columns",
    "child_environment",
    "load_model",
    "load_tokenizer",
    "run_alignment",
    "with_chat_template",
]

logger = logging.getLogger(__name__)

TINY_MODEL = "dpov2:tiny"
FINAL_CHECKPOINT = "final_checkpoint"
# `ModelArguments.torch_dtype` names, "auto" aside (the checkpoint's own; float32 for dpov2:tiny).
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in TORCH_DTYPES[1:]}

# Variables set by torchrun / accelerate launch (and MPI launchers, which accelerate also reads)
# for the processes of one job. A child that inherited them would try to join its parent's
# process group (and hang, or take its rank) instead of starting a job of its own. Also
# OMP_NUM_THREADS, which torchrun sets to 1 for its workers (LMFlow removes it too): the child
# is a job of its own and should use every thread.
CHILD_ENV_REMOVED: frozenset[str] = frozenset(
    {
        "OMP_NUM_THREADS",
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "ROLE_RANK",
        "ROLE_NAME",
        "WORLD_SIZE",
        "LOCAL_WORLD_SIZE",
        "GROUP_WORLD_SIZE",
        "ROLE_WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "PMI_RANK",
        "PMI_SIZE",
        "MPI_LOCALRANKID",
        "MPI_LOCALNRANKS",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
        "MV2_COMM_WORLD_RANK",
        "MV2_COMM_WORLD_SIZE",
        "MV2_COMM_WORLD_LOCAL_RANK",
        "MV2_COMM_WORLD_LOCAL_SIZE",
    }
)
CHILD_ENV_REMOVED_PREFIXES = ("TORCHELASTIC_",)
# Lines of the child's output kept for the error raised when it fails.
TAIL_LINES = 40


def load_tokenizer(
    args: ModelArguments, *, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer named by `tokenizer_name`, else the model's (`dpov2:tiny`: built in code).

    Raises:
        InputError: no model named, or one that cannot be loaded.
    """
    field = "tokenizer_name" if args.tokenizer_name else "model_name_or_path"
    name = args.tokenizer_name or _model_name(args)
    if name == TINY_MODEL:
        return build_tiny_tokenizer()
    check_local(name, field)
    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            name, trust_remote_code=trust_remote_code
        )
    except LOAD_ERRORS as err:
        raise InputError(
            f"cannot load a tokenizer: {one_line(err)}", file=name, field=field
        ) from None
    return tokenizer


def load_model(
    args: ModelArguments, *, trust_remote_code: bool = False, prefix: str = ""
) -> PreTrainedModel:
    """The causal LM named by `model_name_or_path`, in `torch_dtype`; errors name the fields
    with `prefix` (`reference_` for the reference model's arguments).

    `dpov2:tiny` builds `dpov2.tiny_model`'s model (seed 0) instead of loading one: the same
    weights every time, so it also serves as its own reference, and nothing is downloaded.

    `attn_implementation` picks the attention kernel (`flash_attention_2`, LMFlow's
    `use_flash_attention`, is refused where flash_attn or CUDA is missing).

    Raises:
        InputError: no model named, an unknown dtype, flash attention where it cannot run, or a
            model that cannot be loaded.
    """
    field = prefix + "model_name_or_path"
    name = _model_name(args, prefix)
    if args.torch_dtype not in TORCH_DTYPES:
        raise InputError(
            f"unknown torch_dtype {args.torch_dtype!r}; expected {', '.join(TORCH_DTYPES)}",
            field=prefix + "torch_dtype",
        )
    if args.attn_implementation == FLASH_ATTENTION and not is_flash_attn_2_available():
        raise InputError(
            f"{FLASH_ATTENTION} (use_flash_attention) needs the flash_attn package and a CUDA "
            "GPU, and this environment lacks one; install flash-attn or leave it off",
            field=prefix + "attn_implementation",
        )
    dtype = DTYPES.get(args.torch_dtype, torch.float32)
    if name == TINY_MODEL:
        tiny = build_tiny_model(build_tiny_tokenizer(), dtype=dtype)
        if args.attn_implementation is not None:
            tiny.set_attn_implementation(args.attn_implementation)
        return tiny
    check_local(name, field)
    try:
        model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
            name,
            dtype="auto" if args.torch_dtype == "auto" else dtype,
            attn_implementation=args.attn_implementation,
            trust_remote_code=trust_remote_code,
        )
    except LOAD_ERRORS as err:
        raise InputError(f"cannot load a model: {one_line(err)}", file=name, field=field) from None
    return model


# What loading a checkpoint raises for a folder that is not one, or is damaged (configs of
# valid JSON but the wrong shape fail in the parser with whatever it met first).
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)


def _model_name(args: ModelArguments, prefix: str = "") -> str:
    if not args.model_name_or_path:
        raise InputError(
            f"no model given; set {prefix}model_name_or_path (a folder, a Hub name or {TINY_MODEL})"
        )
    return args.model_name_or_path


def check_local(name: str, field: str) -> None:
    """Refuses a name written as a local path (absolute, ``./``, ``../``, ``~``, or with more
    than one ``/``, which no Hub repo id has) when there is no such folder, rather than
    letting it be taken for a Hub repo id."""
    if os.path.isdir(os.path.expanduser(name)):
        return
    if name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name:
        what = "is not a folder" if os.path.exists(name) else "no such folder"
        raise InputError(
            f"{what}; expected a model folder, a Hugging Face Hub name (org/name) or {TINY_MODEL}",
            file=name,
            field=field,
        )


class DPOv2Aligner:
    """Pairs (if needed), trains with `DPOv2Trainer`, saves, and releases memory, as LMFlow's
    `DPOv2Aligner` does. `model_args` and `ref_model_args` describe the models passed to
    `align` (`model_args.use_lora`: a LoRA adapter is trained); `data_args` (max_train_samples,
    eval_sample_size, conversation_template) and every option in `aligner_args` apply.

    Scored datasets are paired by `self.convert_to_paired_dataset`, so that a subclass can
    change the pairing, as in LMFlow."""

    convert_to_paired_dataset = staticmethod(convert_to_paired_dataset)
    sampling_paired_idx_from_rewards = staticmethod(sampling_paired_idx_from_rewards)

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DatasetArguments,
        aligner_args: DPOv2AlignerArguments,
        ref_model_args: ModelArguments | None = None,
    ) -> None:
        self.model_args = model_args
        self.data_args = data_args
        self.aligner_args = aligner_args
        self.ref_model_args = ref_model_args or ModelArguments()

    def align(
        self,
        model: PreTrainedModel,
        ref_model: PreTrainedModel | None,
        train_dataset: str | os.PathLike[str] | datasets.Dataset,
        eval_dataset: str | os.PathLike[str] | datasets.Dataset | None = None,
        transform_dataset_in_place: bool = True,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> list[dict[str, float]]:
        """Trains `model` on the train set and saves it to `output_dir` and to
        `output_dir/final_checkpoint`; returns the trainer's log history (losses, rewards),
        also saved as `output_dir/trainer_state.json`.

        Each dataset is a path or a `datasets.Dataset`, scored (`text_to_scored_textlist`: paired
        here with `sampling_paired_method`, `length_penalty`, `margin_scale` and `random_seed`,
        the eval set like the train set) or paired (`paired_text_to_text`). With evaluation on
        and no `eval_dataset`, `data_args.eval_sample_size` training pairs (drawn with
        `random_seed`) are the eval set, as in LMFlow's memory-safe aligner. `ref_model=None`
        uses a frozen copy of `model` (with `use_lora`: `model` with the adapter off). Pairs that
        carry stored reference log-probs (`dpov2 reference-logps`; every dataset must, then) are
        trained on with them, and no reference is run, when their tag matches this run
        (`ref_model_args`, else `model_args`, the tokenizer and the settings): an InputError says
        what differs otherwise.
        `tokenizer` defaults to the one `model_args` names; with `conversation_template`, a
        copy of it carries that chat template.
        `transform_dataset_in_place` is LMFlow's parameter; the datasets given are never
        modified (a `datasets.Dataset` cannot be), so it changes nothing.

        Raises:
            InputError: a dataset that is neither scored nor paired, or that cannot be read, or
                `conversation_template` tokenizer with a tokenizer that has no chat template.
        """
        del transform_dataset_in_place  # see the docstring
        args = self.aligner_args
        train, train_origin = self._pairs(train_dataset, "train")
        evaluation, eval_origin = None, ""
        if eval_dataset is not None:
            evaluation, eval_origin = self._pairs(eval_dataset, "eval")
        elif args.eval_strategy != IntervalStrategy.NO:
            size = min(self.data_args.eval_sample_size, len(train))
            evaluation = train.shuffle(seed=args.random_seed).select(range(size))
            eval_origin = (
                f"drawn from the training pairs (seed {args.random_seed}; no eval dataset given, "
                f"eval_sample_size {self.data_args.eval_sample_size})"
            )
        if self.data_args.max_train_samples is not None:
            train = train.select(range(min(self.data_args.max_train_samples, len(train))))
        if tokenizer is None:
            tokenizer = load_tokenizer(self.model_args, trust_remote_code=args.trust_remote_code)
        tokenizer = with_chat_template(tokenizer, self.data_args.conversation_template)
        if self._stored_reference(train, train_dataset, evaluation, eval_dataset, tokenizer):
            ref_model = None  # the trainer reads the stored log-probs and builds no reference
        if args.gradient_checkpointing:  # the KV cache is useless there and costs memory
            for each in (model, ref_model):
                if each is not None:
                    each.config.use_cache = False

        trainer = DPOv2Trainer(
            model,
            ref_model=ref_model,
            args=args,
            train_dataset=train,
            eval_dataset=evaluation,
            processing_class=tokenizer,
            peft_config=self.model_args.lora_config(),
        )
        try:
            if trainer.accelerator.is_main_process:
                logger.info("dpov2 align: train: %d pairs %s", len(train), train_origin)
                if evaluation is not None:
                    logger.info("dpov2 align: eval: %d pairs %s", len(evaluation), eval_origin)
                logger.info("dpov2 align: %d process(es)", trainer.accelerator.num_processes)
            trainer.train()
            trainer.save_state()  # output_dir/trainer_state.json: the log history, for reports
            trainer.save_model(args.output_dir)
            final = os.path.join(str(args.output_dir), FINAL_CHECKPOINT)
            trainer.save_model(final)
            if trainer.accelerator.is_main_process:
                logger.info("dpov2 align: saved the model to %s and %s", args.output_dir, final)
            history: list[dict[str, float]] = trainer.state.log_history
        finally:
            # The optimizer state, the reference copy and the accelerator's references go; the
            # caller's model stays.
            trainer.accelerator.free_memory()
            del trainer
            gc.collect()
            clear_device_cache()
        return history

    def _stored_reference(
        self,
        train: datasets.Dataset,
        train_source: str | os.PathLike[str] | datasets.Dataset,
        evaluation: datasets.Dataset | None,
        eval_source: str | os.PathLike[str] | datasets.Dataset | None,
        tokenizer: PreTrainedTokenizerBase,
    ) -> bool:
        """Whether the pairs carry stored reference log-probs that fit this run (so that no
        reference is run); refuses, saying what differs, those that do not fit."""
        from dpov2.reference_logps import use_stored_logps  # (it imports this module)

        def shown(source: str | os.PathLike[str] | datasets.Dataset) -> str:
            return "a datasets.Dataset" if is_dataset(source) else str(source)

        run = AlignArguments(
            self.model_args, self.data_args, self.aligner_args, self.ref_model_args
        )
        eval_shown = shown(train_source if eval_source is None else eval_source)
        by_name = {"train": (train, shown(train_source)), "eval": (evaluation, eval_shown)}
        stored = use_stored_logps(by_name, run, tokenizer)
        if stored:
            logger.info("dpov2 align: reference log-probs stored with the pairs; no reference run")
        return stored

    def _pairs(
        self, source: str | os.PathLike[str] | datasets.Dataset, name: str
    ) -> tuple[datasets.Dataset, str]:
        """The pairs from `source`, and where they came from (for the log)."""
        shown = "a datasets.Dataset" if is_dataset(source) else str(source)
        if dataset_type(source) != SCORED_TYPE:
            paired = read_pairs(source)
            check_pair_columns(paired, shown)
            return paired, f"read from {shown}"
        args = self.aligner_args
        pairs = self.convert_to_paired_dataset(
            source,
            sampling_paired_method=args.sampling_paired_method,
            length_penalty=args.length_penalty,
            margin_scale=args.margin_scale,
            seed=args.random_seed,
        )
        if len(pairs) == 0:
            raise InputError(f"the {name} dataset yielded no pairs", file=shown)
        method = f"{args.sampling_paired_method} (seed {args.random_seed})"
        return pairs, f"from the scored {shown}, paired by {method}"


def with_chat_template(
    tokenizer: PreTrainedTokenizerBase, template: str | None
) -> PreTrainedTokenizerBase:
    """`tokenizer`, or a copy of it carrying the named chat template (`DatasetArguments`'s
    `conversation_template`; the caller's tokenizer is left as it is)."""
    if template is None:
        return tokenizer
    if template == TOKENIZER_TEMPLATE:
        if tokenizer.chat_template is None:
            raise InputError(
                f"conversation_template {TOKENIZER_TEMPLATE} asks for the tokenizer's own chat "
                f"template, and this tokenizer has none; name one of {', '.join(CHAT_TEMPLATES)} "
                "or give a tokenizer_name that has one",
                field="conversation_template",
            )
        return tokenizer
    templated = copy.deepcopy(tokenizer)
    templated.chat_template = CHAT_TEMPLATES[template]
    return templated


def check_pair_columns(pairs: datasets.Dataset, shown: str) -> None:
    """Refuses a paired dataset (as :func:`~dpov2.formats.kinds.read_pairs` gives it, read
    from ``shown``, the name used in the error) whose prompt, chosen or rejected column is not
    text (or chat messages) in every row, naming the first row at fault: the trainer, and the
    reference log-probs run before it, would fail deep in tokenisation instead. (Margins are
    the trainer's to check: only some losses need them.)

    Raises:
        InputError: the first column, and row, at fault, in ``shown``.
    """
    if "prompt" not in pairs.column_names:  # TRL's implicit prompt: in the conversations
        for name in IMPLICIT_PAIR_COLUMNS:
            kind = pairs.data.column(name).type
            if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
                raise InputError(
                    f"has type {kind} and there is no prompt column; only chat-message "
                    "completions carry their prompt (the messages both start with)",
                    file=shown,
                    field=name,
                )
    for name in PAIR_COLUMNS if "prompt" in pairs.column_names else IMPLICIT_PAIR_COLUMNS:
        column = pairs.data.column(name)
        kind = column.type
        if not (is_prompt_type(kind) or pa.types.is_null(kind)):
            raise InputError(
                f"has type {kind}; expected text or a list of chat messages", file=shown, field=name
            )
        if column.null_count:
            row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise InputError(
                "missing or null; expected text or a list of chat messages",
                file=shown,
                row=row,
                field=name,
            )


def run_alignment(args: AlignArguments) -> list[dict[str, float]]:
    """Loads the models and datasets that `args` names and aligns: what `dpov2 align` and the
    memory-safe aligner's child process run. The reference defaults to a copy of the policy, and
    is not loaded for pairs that carry stored reference log-probs (`dpov2.reference_logps`).

    Raises:
        InputError: no training dataset, or a model or dataset that cannot be loaded.
    """
    from dpov2.reference_logps import carries_stored_logps  # (it imports this module)

    if args.data.dataset_path is None:
        raise InputError("no training data given; set dataset_path")
    trust = args.aligner.trust_remote_code
    model = load_model(args.model, trust_remote_code=trust)
    ref_model = None
    if args.reference.model_name_or_path and not carries_stored_logps(args.data.dataset_path):
        ref_model = load_model(args.reference, trust_remote_code=trust, prefix=REFERENCE_PREFIX)
    aligner = DPOv2Aligner(args.model, args.data, args.aligner, args.reference)
    return aligner.align(model, ref_model, args.data.dataset_path, args.data.eval_dataset_path)


class AlignmentError(RuntimeError):
    """The memory-safe aligner's child process failed: its exit code and last output lines."""

    def __init__(self, returncode: int, output_tail: str) -> None:
        self.returncode = returncode
        self.output_tail = output_tail
        super().__init__(
            f"the alignment process exited with code {returncode}; its last output:\n{output_tail}"
        )


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the distributed-launch variables (`CHILD_ENV_REMOVED`, `TORCHELASTIC_*`),
    and with unbuffered Python output so the child's lines stream as they are written."""
    env = {
        key: value
        for key, value in environ.items()
        if key not in CHILD_ENV_REMOVED and not key.startswith(CHILD_ENV_REMOVED_PREFIXES)
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class MemorySafeDPOv2Aligner:
    """Runs `dpov2 align` in a child process, with every argument, and waits for it.

    The child is `accelerate launch --config_file ACCELERATE_CONFIG_FILE` when
    `aligner_args.accelerate_config_file` is set, else the current Python. The arguments travel
    as a JSON file of `dpov2.args.to_config` (exact for every value, None and nested configs
    included; the file lives in a private temporary folder and is removed afterwards). The
    model is never loaded in this process.
    """

    def __init__(
        self,
        model_args: ModelArguments,
        data_args: DatasetArguments,
        aligner_args: DPOv2AlignerArguments,
        ref_model_args: ModelArguments | None = None,
    ) -> None:
        self.args = AlignArguments(
            model_args, data_args, aligner_args, ref_model_args or ModelArguments()
        )

    def command(self, config_file: str | os.PathLike[str]) -> list[str]:
        """The child's command line, reading its arguments from `config_file`."""
        align = ["-m", "dpov2.cli", "align", str(config_file)]
        accelerate_config = self.args.aligner.accelerate_config_file
        if accelerate_config is None:
            return [sys.executable, *align]
        launch = [sys.executable, "-m", "accelerate.commands.launch"]
        return [*launch, "--config_file", accelerate_config, *align]

    def align(self, *, stream: TextIO | None = None, err_stream: TextIO | None = None) -> None:
        """Runs the child, copying its stdout to `stream` (default: `sys.stdout`) and its stderr
        (logs, and a failed run's one-line error) to `err_stream` (default: `sys.stderr`), line
        by line. Ctrl-C or any error here stops the child and its workers.

        Raises:
            InputError: an `accelerate_config_file` that does not exist.
            AlignmentError: the child exited with a non-zero code.
        """
        out = sys.stdout if stream is None else stream
        err = sys.stderr if err_stream is None else err_stream
        accelerate_config = self.args.aligner.accelerate_config_file
        if accelerate_config is not None and not os.path.isfile(accelerate_config):
            raise InputError(
                "no such file; expected an accelerate config file (`accelerate config` writes one)",
                file=accelerate_config,
                field="accelerate_config_file",
            )
        with tempfile.TemporaryDirectory(prefix="dpov2-align-") as folder:
            config_file = Path(folder) / "align.json"
            config_file.write_text(json.dumps(to_config(self.args)), encoding="utf-8")
            tail: deque[str] = deque(maxlen=TAIL_LINES)  # both streams, as the lines come
            child = subprocess.Popen(
                self.command(config_file),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_environment(os.environ),
                start_new_session=True,  # its own process group, so its workers stop with it
            )
            assert child.stdout is not None and child.stderr is not None
            errors = threading.Thread(target=_copy_lines, args=(child.stderr, err, tail))
            errors.start()
            try:
                _copy_lines(child.stdout, out, tail)
                returncode = child.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):  # unless it has exited already
                    os.killpg(child.pid, signal.SIGTERM)
                child.wait()
                raise
            finally:
                errors.join()
        if returncode != 0:
            raise AlignmentError(returncode, "".join(tail))


def _copy_lines(source: IO[bytes], target: TextIO, tail: deque[str]) -> None:
    """Copies `source`'s lines to `target` as they come, keeping the last ones in `tail`."""
    for raw in source:
        line = raw.decode("utf-8", errors="replace")
        target.write(line)
        target.flush()
        tail.append(line)
