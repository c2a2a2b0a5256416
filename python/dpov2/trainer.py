"""`DPOv2Trainer`: TRL's `DPOTrainer` with LMFlow's DPOv2 loss family and per-example margins.

What it adds to `trl.DPOTrainer` (1.16), through its override points only:

- `compute_loss` scores both responses with TRL's fused LM head, takes the reference log-probs from
  TRL's `compute_ref_log_probs` (separate model, PEFT base, or precomputed), and applies a loss
  from `dpov2.losses` with each pair's `margin` and a per-example length penalty.
- `ipo` scores log-probs averaged per response token (LMFlow and TRL do), for the loss and for the
  logged rewards and log-probs; every other loss scores sums.
- `_prepare_dataset` tokenises with TRL (plain text or the chat template), drops the BOS the
  tokenizer adds to a prompt whose text already starts with BOS, then truncates each pair by
  LMFlow's rule (`truncate_pair`).
- `_set_signature_columns_if_needed` keeps the `margin` column, and the data collator is wrapped so
  every batch carries a `margin` tensor aligned with its rows.
- `mask_prompt` (as in LMFlow) hides the prompt tokens from the response tokens' attention.
- A train dataset that carries `ref_chosen_logps` and `ref_rejected_logps` columns (TRL's names;
  `dpov2.reference_logps` computes them) is trained on with those reference log-probs: the
  reference model is neither built nor run. Checking that they fit the run is the caller's
  (`DPOv2Aligner` checks their tag).
- `bf16=None` (the default) means bf16 where the accelerator supports it, float32 otherwise.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from datasets.fingerprint import Hasher
from transformers import PreTrainedModel
from transformers.utils.import_utils import is_torch_bf16_gpu_available
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.utils import global_then_local_main_first

from dpov2.errors import InputError
from dpov2.formats.instances import REF_LOGPS_COLUMNS
from dpov2.losses import (
    LABEL_SMOOTHING_LOSS_TYPES,
    LOSSES,
    MARGIN_LOSS_TYPES,
    PER_TOKEN_LOSS_TYPES,
    PairLoss,
    get_loss,
)

if TYPE_CHECKING:
    from peft import PeftModel

__all__ = [
    "REF_LOGPS_COLUMNS",
    "DPOv2Config",
    "DPOv2Trainer",
    "MarginCollator",
    "drop_added_bos",
    "has_ref_logps",
    "truncate_pair",
]

logger = logging.getLogger(__name__)

# Batch keys that are not model inputs.
_NON_MODEL_KEYS = frozenset({"completion_mask", *REF_LOGPS_COLUMNS})


@dataclass
class DPOv2Config(DPOConfig):
    """`trl.DPOConfig` plus LMFlow's DPOv2 options.

    `loss_type` is a single name from `dpov2.losses.LOSSES` (TRL's is a list of its own losses).
    TRL options that reshape the loss in ways the DPOv2 losses do not define (`loss_weights`,
    `ld_alpha`, `use_weighting`, a non-default `f_divergence_type`, a non-zero `label_smoothing`
    for a loss other than sigmoid) are rejected rather than silently ignored.

    `bf16` defaults to None: bf16 mixed precision where the accelerator supports it (transformers'
    `is_torch_bf16_gpu_available`) and `use_cpu` is off, float32 otherwise, so a CPU-only machine
    trains without setting anything. An explicit `bf16=True` there still fails, in transformers.
    """

    # TRL types this field as list[str]; a DPOv2 run uses exactly one loss.
    loss_type: str = field(  # type: ignore[assignment]
        default="sigmoid",
        metadata={
            "help": "DPOv2 loss: " + ", ".join(LOSSES) + ". kl, tv, hellinger and rev_kl need a "
            "per-example `margin` column.",
            "choices": list(LOSSES),
        },
    )
    len_penalty: float = field(
        default=0.0,
        metadata={
            "help": "Added to the reference log-ratio per pair as len_penalty * (chosen response "
            "tokens - rejected response tokens); positive values ask longer chosen responses for a "
            "larger log-ratio. (LMFlow counts the batch's padded widths instead, the same for "
            "every pair, and ignores negative values.)"
        },
    )
    mask_prompt: bool = field(
        default=False,
        metadata={
            "help": "Hide the prompt tokens from attention (as LMFlow does): response tokens "
            "cannot attend to them. Prompt tokens never count in the loss either way."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "LMFlow's rule: only when prompt + the longer response exceeds max_length is "
            "the prompt cut to its last max_prompt_length tokens; the responses are then cut to "
            "fit. None never cuts the prompt (pairs whose prompt fills max_length are dropped)."
        },
    )

    def __post_init__(self) -> None:
        loss_type = self.loss_type
        if isinstance(loss_type, list):  # e.g. a TRL-style config dict
            if len(loss_type) != 1:
                raise ValueError(f"DPOv2Config takes one loss_type, got {loss_type}")
            loss_type = loss_type[0]
        get_loss(loss_type)  # raises ValueError naming the valid choices
        if self.loss_weights is not None:
            raise ValueError("loss_weights is not supported: DPOv2Config runs a single loss_type")
        if self.ld_alpha is not None:
            raise ValueError("ld_alpha is not supported by the DPOv2 losses; leave it None")
        if self.use_weighting:
            raise ValueError("use_weighting (WPO) is not supported by the DPOv2 losses")
        if self.f_divergence_type != "reverse_kl":
            raise ValueError(
                f"f_divergence_type={self.f_divergence_type!r} is not supported by the DPOv2 "
                "losses; use 'reverse_kl'"
            )
        if not math.isfinite(self.len_penalty):
            raise ValueError(f"len_penalty must be a finite float, got {self.len_penalty}")
        _check_ranges(self)
        if self.label_smoothing != 0.0 and loss_type not in LABEL_SMOOTHING_LOSS_TYPES:
            raise ValueError(
                f"label_smoothing={self.label_smoothing} is not used by loss_type={loss_type!r} "
                f"(only {', '.join(sorted(LABEL_SMOOTHING_LOSS_TYPES))} uses it); set it to 0"
            )
        if self.bf16 is None:
            self.bf16 = not self.fp16 and not self.use_cpu and is_torch_bf16_gpu_available()
        if self.max_prompt_length is not None:
            if self.max_prompt_length < 1:
                raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
            if self.max_length is not None and self.max_prompt_length >= self.max_length:
                raise ValueError(
                    f"max_prompt_length ({self.max_prompt_length}) must be smaller than max_length "
                    f"({self.max_length}) to leave room for the responses"
                )
        super().__post_init__()  # type: ignore[no-untyped-call]  # wraps loss_type in a list
        self.loss_type = loss_type


# The numeric training options and the range each must lie in, besides being finite: a NaN
# beta trains a NaN model without a word, beta=0 divides by zero in the ipo loss.
_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "beta": ("> 0", lambda v: v > 0),
    "learning_rate": (">= 0", lambda v: v >= 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "adam_beta1": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_beta2": ("in [0, 1)", lambda v: 0 <= v < 1),
    "adam_epsilon": ("> 0", lambda v: v > 0),
    "max_grad_norm": (">= 0", lambda v: v >= 0),
    "num_train_epochs": (">= 0", lambda v: v >= 0),
    "warmup_steps": (">= 0", lambda v: v >= 0),
    "label_smoothing": ("in [0, 0.5)", lambda v: 0 <= v < 0.5),
    "max_length": (">= 1 (or None: no truncation)", lambda v: v >= 1),
}


def _check_ranges(config: DPOv2Config) -> None:
    """Refuses, naming it, a numeric option that is not a finite number in its range."""
    for name, (expected, in_range) in _RANGES.items():
        value = getattr(config, name)
        if name == "max_length" and value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and in_range(value)):
            raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")


def truncate_pair(
    prompt_ids: list[int],
    chosen_ids: list[int],
    rejected_ids: list[int],
    max_length: int | None,
    max_prompt_length: int | None,
) -> dict[str, list[int]]:
    """Truncate one tokenised pair by LMFlow's rule; all lengths in tokens.

    Nothing is cut while prompt + the longer response fits `max_length`. Otherwise the prompt keeps
    its last `max_prompt_length` tokens (all of them when None), and each response then keeps its
    first `max_length - len(prompt)` tokens. LMFlow cuts the responses to `max_length -
    max_prompt_length` even when the prompt is shorter than that; here they keep the room actually
    left. A prompt that alone fills `max_length` leaves empty responses (callers drop such pairs).
    """
    if (
        max_length is None
        or len(prompt_ids) + max(len(chosen_ids), len(rejected_ids)) <= max_length
    ):
        return {"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids}
    if max_prompt_length is not None:
        prompt_ids = prompt_ids[-max_prompt_length:]
    budget = max(max_length - len(prompt_ids), 0)
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids[:budget],
        "rejected_ids": rejected_ids[:budget],
    }


def drop_added_bos(prompt_ids: list[int], bos_token_id: int | None) -> list[int]:
    """The prompt's tokens without the BOS the tokenizer put before a prompt whose text already
    starts with BOS (a prompt rendered by a chat template, say): one BOS, never two.

    LMFlow tokenises with `add_special_tokens=False`, TRL 1.16 with the tokenizer's special tokens;
    a plain prompt thus still gets the tokenizer's BOS, as at inference.
    """
    if bos_token_id is not None and prompt_ids[:2] == [bos_token_id, bos_token_id]:
        return prompt_ids[1:]
    return prompt_ids


def _fit_pair(
    prompt_ids: list[int],
    chosen_ids: list[int],
    rejected_ids: list[int],
    bos_token_id: int | None,
    max_length: int | None,
    max_prompt_length: int | None,
) -> dict[str, list[int]]:
    """One row of `_prepare_dataset`'s pass after TRL's tokenisation."""
    prompt_ids = drop_added_bos(prompt_ids, bos_token_id)
    return truncate_pair(prompt_ids, chosen_ids, rejected_ids, max_length, max_prompt_length)


@dataclass
class MarginCollator:
    """Wraps a preference collator so each batch also carries its rows' `margin` (float32, shape
    (batch,)), in the same order as the rows. The wrapped collator never sees the margin."""

    collator: Callable[[list[dict[str, Any]]], dict[str, Any]]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator([{k: v for k, v in ex.items() if k != "margin"} for ex in examples])
        if "margin" in examples[0]:
            margins = [ex["margin"] for ex in examples]
            if any(m is None for m in margins):
                raise ValueError(
                    "a pair in this batch has margin=None; every pair needs a float margin"
                )
            batch["margin"] = torch.tensor(margins, dtype=torch.float32)
        return batch


def _check_margins(dataset: Dataset | IterableDataset, loss_type: str, name: str) -> None:
    """Fail early, naming the row, when a margin-aware loss meets missing or non-finite margins:
    a mistake in the data, so an :class:`InputError` (a ``ValueError``)."""
    if loss_type not in MARGIN_LOSS_TYPES:
        return
    columns = dataset.column_names or list(next(iter(dataset)).keys())
    if "margin" not in columns:
        raise InputError(
            f"loss_type={loss_type!r} needs a float `margin` column in the {name} dataset "
            f"(chosen score minus rejected score); found columns {columns}"
        )
    if isinstance(dataset, Dataset):
        given = dataset["margin"]
        margins = np.array([np.nan if m is None else m for m in given], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(margins))
        if bad.size:
            first = int(bad[0])
            shown = "null" if given[first] is None else margins[first]
            raise InputError(
                f"{name} dataset row {first}: margin is {shown}, expected a finite float "
                f"({bad.size} such rows)"
            )


def has_ref_logps(dataset: Dataset | IterableDataset) -> bool:
    """Whether `dataset` carries both reference log-prob columns (`REF_LOGPS_COLUMNS`)."""
    columns = dataset.column_names or list(next(iter(dataset)).keys())
    return all(name in columns for name in REF_LOGPS_COLUMNS)


def _check_ref_logps(dataset: Dataset, name: str) -> None:
    """Refuses stored reference log-probs that are missing (null) or not finite in a pair the
    trainer keeps: they would fail in the collator, or train a NaN model."""
    for column in REF_LOGPS_COLUMNS:
        values = dataset.with_format("arrow")[column].to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isfinite(values.astype(np.float64)))
        if bad.size:
            raise InputError(
                f"{name} dataset: {bad.size} of the {len(dataset)} pairs kept after truncation "
                f"have a null or non-finite {column} (the first: kept pair {int(bad[0])}); "
                "recompute them with dpov2 reference-logps and the settings of this run"
            )


class DPOv2Trainer(DPOTrainer):
    """DPO trainer for LMFlow's DPOv2 losses on pair datasets with prompt, chosen, rejected and
    margin columns.

    Takes the same arguments as `trl.DPOTrainer`, with `args` a `DPOv2Config`. The reference is
    `ref_model` when given; else, for a PEFT model, the base model (adapter disabled); else, with
    `precompute_ref_log_probs`, the policy before training; else a frozen copy of `model`. (TRL
    would reload the reference from `model.config._name_or_path`, which is empty for models built
    in code and may differ from an in-memory policy.) A train dataset with stored reference
    log-probs (`has_ref_logps`) turns `precompute_ref_log_probs` on, on a copy of `args`, and
    its columns are used as they are: with no `ref_model` no reference exists at all. An eval
    dataset without them gets them from TRL's precompute pass, with the reference above.

    Logs what TRL 1.16's DPOTrainer logs, under its names and definitions: rewards/chosen,
    rewards/rejected (raw, without length penalty), rewards/accuracies, rewards/margins,
    logps/chosen, logps/rejected (per-token averages for ipo, as LMFlow), entropy, num_tokens,
    logits/chosen, logits/rejected, mean_token_accuracy, aux_loss (MoE); and `loss/<loss_type>`.
    """

    _tag_names = ["trl", "dpo", "dpov2"]  # noqa: RUF012 (TRL declares it a plain list)
    _name = "DPOv2"
    args: DPOv2Config

    def __init__(
        self,
        model: str | PreTrainedModel | PeftModel,
        ref_model: PreTrainedModel | None = None,
        args: DPOv2Config | None = None,
        data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset
        | IterableDataset
        | dict[str, Dataset | IterableDataset]
        | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, DPOv2Config):
            raise TypeError(f"args must be a DPOv2Config, got {type(args).__name__}")
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        _check_margins(train_dataset, args.loss_type, "train")
        eval_sets = eval_dataset if isinstance(eval_dataset, dict) else {"eval": eval_dataset}
        for name, dataset in eval_sets.items():
            if dataset is not None:
                _check_margins(dataset, args.loss_type, name)

        self._loss_fn = get_loss(args.loss_type)
        if has_ref_logps(train_dataset) and not args.precompute_ref_log_probs:
            args = copy.copy(args)
            args.precompute_ref_log_probs = True  # TRL then builds no reference
        if (
            ref_model is None
            and isinstance(model, PreTrainedModel)
            and not is_peft_model(model)
            and kwargs.get("peft_config") is None
            and not args.precompute_ref_log_probs
        ):
            # Copied before TRL patches the policy's forward with its fused LM head.
            ref_model = copy.deepcopy(model).requires_grad_(False)

        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            **kwargs,
        )
        # Wrapped after TRL's reference precompute, which needs no margins.
        self.data_collator = MarginCollator(self.data_collator)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # type: ignore[no-untyped-call]
        assert self._signature_columns is not None
        if "margin" not in self._signature_columns:
            self._signature_columns.append("margin")

    def _prepare_dataset(
        self,
        dataset: Dataset | IterableDataset,
        processing_class: Any,
        args: DPOConfig,
        dataset_name: str,
    ) -> Dataset | IterableDataset:
        assert isinstance(args, DPOv2Config)  # TRL passes the trainer's own args
        # TRL drops pairs whose whole prompt fills max_length; the prompt is cut here first, so TRL
        # tokenises without a length limit and the dropping happens after truncation.
        unlimited = copy.copy(args)
        unlimited.max_length = None
        dataset = super()._prepare_dataset(dataset, processing_class, unlimited, dataset_name)

        # Like TRL's own maps: the main processes write the cache first, the others then read it.
        with global_then_local_main_first():
            dataset, dropped = self._fit(dataset, args, self._tokenizer.bos_token_id, dataset_name)
        if dropped:
            logger.warning(
                "dropped %d of %d %s pairs whose prompt fills max_length=%s; set "
                "max_prompt_length to keep them",
                dropped,
                len(dataset) + dropped,
                dataset_name,
                args.max_length,
            )
        return dataset

    @staticmethod
    def _fit(
        dataset: Dataset | IterableDataset,
        args: DPOv2Config,
        bos_token_id: int | None,
        dataset_name: str,
    ) -> tuple[Dataset | IterableDataset, int]:
        """Apply `drop_added_bos` and `truncate_pair` to every row, then drop pairs left without a
        response; returns the dataset and how many pairs were dropped (0 for an IterableDataset,
        which is not counted)."""
        map_kwargs: dict[str, Any] = {
            "fn_kwargs": {
                "bos_token_id": bos_token_id,
                "max_length": args.max_length,
                "max_prompt_length": args.max_prompt_length,
            },
            "input_columns": ["prompt_ids", "chosen_ids", "rejected_ids"],
        }
        if isinstance(dataset, Dataset):
            map_kwargs["num_proc"] = args.dataset_num_proc
            map_kwargs["desc"] = f"Truncating {dataset_name} dataset"
            # The fingerprint names every setting that changes what the model sees, so TRL's
            # cached precomputed reference log-probs are never reused across different settings.
            map_kwargs["new_fingerprint"] = Hasher.hash(
                (
                    dataset._fingerprint,
                    bos_token_id,
                    args.max_length,
                    args.max_prompt_length,
                    args.mask_prompt,
                )
            )
        dataset = dataset.map(_fit_pair, **map_kwargs)
        max_length = args.max_length
        if max_length is None:
            return dataset, 0
        if not isinstance(dataset, Dataset):
            return dataset.filter(lambda example: len(example["prompt_ids"]) < max_length), 0
        before = len(dataset)
        dataset = dataset.filter(
            lambda example: len(example["prompt_ids"]) < max_length,
            num_proc=args.dataset_num_proc,
            desc="Dropping prompts that fill max_length",
        )
        return dataset, before - len(dataset)

    def _model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The batch as the model and TRL's reference pass see it: no margin, and with
        `mask_prompt` the prompt positions zeroed in the attention mask."""
        batch = {k: v for k, v in inputs.items() if k != "margin"}
        if self.args.mask_prompt:
            batch["attention_mask"] = batch["attention_mask"] * batch["completion_mask"]
        return batch

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """TRL's precompute pass, for a dataset without stored reference log-probs; one that has
        them is used as it is (checked, where it can be, for nulls in the pairs kept)."""
        if isinstance(dataset, Dataset) and len(dataset) == 0:  # TRL's pass fails on none
            raise InputError(
                f"the {name} dataset has no pair left whose prompt fits max_length="
                f"{self.args.max_length}; set max_prompt_length, or a larger max_length"
            )
        if has_ref_logps(dataset):
            if isinstance(dataset, Dataset):
                _check_ref_logps(dataset, name)
            return dataset
        computed: Dataset = super()._precompute_ref_logps(dataset, name, batch_size)
        return computed

    def compute_ref_log_probs(
        self, model: torch.nn.Module, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference log-probs (chosen, rejected) summed over response tokens; also used by TRL's
        `precompute_ref_log_probs` pass, so precomputed values see the same masking."""
        batch = self._model_inputs(inputs)
        chosen, rejected = super().compute_ref_log_probs(model, batch)  # type: ignore[no-untyped-call]
        return chosen, rejected

    def sequence_logps(
        self, model: torch.nn.Module, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Policy log-probs of the chosen and rejected responses, summed over response tokens, in
        float32, plus the model's fused output (for MoE auxiliary losses)."""
        batch = self._model_inputs(inputs)
        model_kwargs = {k: v for k, v in batch.items() if k not in _NON_MODEL_KEYS}
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        scored = batch["completion_mask"][:, 1:]
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        # Prompt-learning PEFT prepends virtual positions; keep those of the real tokens.
        logps = outputs.log_probs[:, -scored.size(1) :].sum(dim=1).float()
        chosen, rejected = logps.chunk(2, dim=0)
        return chosen, rejected, outputs

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Mean DPOv2 loss over the batch's pairs (plus the MoE auxiliary loss, if any)."""
        mode = "train" if model.training else "eval"
        chosen_logps, rejected_logps, outputs = self.sequence_logps(model, inputs)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            assert reference is not None
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
        ref_chosen, ref_rejected = ref_chosen.float(), ref_rejected.float()

        # Response lengths per pair, counted from the completion mask (the scored tokens), not
        # from the padded batch width.
        lengths = inputs["completion_mask"][:, 1:].sum(dim=1)
        chosen_len, rejected_len = lengths.chunk(2, dim=0)
        if self.args.loss_type in PER_TOKEN_LOSS_TYPES:
            chosen_count = chosen_len.clamp(min=1).float()
            rejected_count = rejected_len.clamp(min=1).float()
            chosen_logps, ref_chosen = chosen_logps / chosen_count, ref_chosen / chosen_count
            rejected_logps = rejected_logps / rejected_count
            ref_rejected = ref_rejected / rejected_count
        len_penalty_term = self.args.len_penalty * (chosen_len - rejected_len).float()
        margin = inputs.get("margin")
        result = self._loss_fn(
            chosen_logps,
            rejected_logps,
            ref_chosen,
            ref_rejected,
            beta=self.beta,
            margin=None if margin is None else margin.float(),
            len_penalty_term=len_penalty_term,
            label_smoothing=self.args.label_smoothing,
        )
        loss = result.losses.mean()
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss
            self._metrics[mode]["aux_loss"].append(
                self.accelerator.gather_for_metrics(outputs.aux_loss.detach()).mean().item()
            )
        self._record_token_metrics(mode, inputs, outputs)
        self._record_pair_metrics(mode, result, chosen_logps, rejected_logps)

        if not return_outputs:
            return loss
        # `compute_metrics` needs logits, which the fused head does not build.
        model_kwargs = {
            k: v for k, v in self._model_inputs(inputs).items() if k not in _NON_MODEL_KEYS
        }
        with torch.no_grad():
            return loss, model(**model_kwargs, use_cache=False)

    def _record_token_metrics(self, mode: str, inputs: dict[str, Any], outputs: Any) -> None:
        """TRL 1.16's per-token metrics, under its names, from the fused head's outputs:
        `entropy` (mean over every response token), `num_tokens` (prompt and response tokens,
        no padding, trained on so far), `logits/chosen` and `logits/rejected` (the mean logit
        over the vocabulary, averaged over the response tokens; LMFlow's, under the same names,
        average every position of the padded sequence, prompt and padding included) and
        `mean_token_accuracy` (the share of chosen-response tokens that are the
        policy's top-1 prediction)."""
        scored = inputs["completion_mask"][:, 1:].bool()
        width = scored.size(1)  # prompt-learning PEFT prepends virtual positions to the outputs
        chosen_mask, rejected_mask = scored.chunk(2, dim=0)
        mean_logits = outputs.mean_logits[:, -width:].detach().float()
        chosen_logits, rejected_logits = mean_logits.chunk(2, dim=0)
        chosen_top1, _ = outputs.is_top1[:, -width:].chunk(2, dim=0)
        entropy = outputs.entropy[:, -width:].detach().float()

        # Sums and counts are gathered, then divided: a token-weighted mean over every process.
        def token_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
            total = self.accelerator.gather_for_metrics(values[mask].sum()).sum()
            count = self.accelerator.gather_for_metrics(mask.sum()).sum()
            return (total / count).item() if count > 0 else 0.0

        metrics = self._metrics[mode]
        metrics["entropy"].append(token_mean(entropy, scored))
        if mode == "train":
            seen = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum()
            self._total_train_tokens += int(seen.item()) // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        metrics["logits/chosen"].append(token_mean(chosen_logits, chosen_mask))
        metrics["logits/rejected"].append(token_mean(rejected_logits, rejected_mask))
        metrics["mean_token_accuracy"].append(token_mean(chosen_top1.float(), chosen_mask))

    def _record_pair_metrics(
        self,
        mode: str,
        result: PairLoss,
        chosen_logps: torch.Tensor,
        rejected_logps: torch.Tensor,
    ) -> None:
        """TRL's per-pair metrics, from the log-probs the loss scored (per-token averages for
        `ipo`, as LMFlow logs them), plus `loss/<loss_type>`."""
        gather = self.accelerator.gather_for_metrics
        chosen = gather(result.chosen_rewards)
        rejected = gather(result.rejected_rewards)
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(chosen.mean().item())
        metrics["rewards/rejected"].append(rejected.mean().item())
        metrics["rewards/accuracies"].append((chosen > rejected).float().mean().item())
        metrics["rewards/margins"].append((chosen - rejected).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
        metrics[f"loss/{self.args.loss_type}"].append(gather(result.losses.detach()).mean().item())
