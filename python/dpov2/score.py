"""``dpov2 score``: every response of a ``text_to_textlist`` dataset (what ``dpov2 generate``
writes) scored by a reward model, as the ``text_to_scored_textlist`` that ``dpov2 pair`` reads
(``{"input": prompt, "output": [{"text": ..., "score": ...}]}``).

The reward model is a ``transformers`` sequence-classification model with one label (LMFlow's
``text_regression``; ``dpov2:tiny-reward`` builds a tiny one in code). It reads the prompt and
the response as one text: a chat prompt and the response as an assistant message through the
reward tokenizer's chat template, a text prompt followed by the response. Texts are
right-padded, so a padded batch gives each text the score it gets alone (up to float rounding),
and cut to ``reward_model_inference_block_size`` tokens (LMFlow's truncation; the count of cut
texts is reported). JSON Lines and Parquet are read row by row, an LMFlow JSON file is parsed
whole (:mod:`dpov2.formats`' streaming reader knows only scored and paired rows); the output is
written batch by batch and appears only when complete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats import SCORED_TYPE, open_writer
from dpov2.formats.instances import OUTPUT_TYPE
from dpov2.generate import (
    MESSAGES_TYPE,
    TEXTLIST_TYPE,
    Prompt,
    check_outputs,
    device_of,
    prompt_problem,
    read_rows,
)
from dpov2.tiny_model import TINY_REWARD_MODEL, build_tiny_reward_model, build_tiny_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "REWARD_DTYPES",
    "ScoreArguments",
    "ScoreResult",
    "load_reward_model",
    "read_textlist",
    "reward_texts",
    "score",
    "score_texts",
]

#: One row of a ``text_to_textlist`` dataset: its file, its row there, prompt and responses.
TextlistRow = tuple[str, int, Prompt, list[str]]

#: ``reward_torch_dtype`` values: dpov2's names and LMFlow's short ones.
REWARD_DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


@dataclass
class ScoreArguments:
    """What ``dpov2 score`` reads, with LMFlow's names and defaults."""

    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A sequence-classification model (num_labels 1) or dpov2:tiny-reward."},
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "text_to_textlist file or folder (dpov2 generate's)."}
    )
    results_path: str | None = field(
        default=None,
        metadata={"help": "Output file (.json: LMFlow text_to_scored_textlist, .jsonl, .parquet)."},
    )
    reward_model_inference_batch_size: int = field(
        default=1, metadata={"help": "Prompts per forward pass (all their responses together)."}
    )
    reward_model_inference_block_size: int = field(
        default=2048, metadata={"help": "Tokens per prompt + response; longer ones are cut."}
    )
    reward_torch_dtype: str = field(default="auto", metadata={"help": "auto, bf16, fp16, fp32."})
    reward_use_flash_attention: bool = field(default=False, metadata={"help": "flash_attention_2."})
    reward_arch_type: str = field(default="text_regression", metadata={"help": "Only that."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run checkpoint code."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output."})

    def __post_init__(self) -> None:
        for name in ("reward_model_name_or_path", "dataset_path", "results_path"):
            if not getattr(self, name):
                raise InputError("missing; set it in the config or as --" + name, field=name)
        for name in ("reward_model_inference_batch_size", "reward_model_inference_block_size"):
            if getattr(self, name) < 1:
                raise InputError(f"must be >= 1, got {getattr(self, name)}", field=name)
        if self.reward_torch_dtype not in REWARD_DTYPES:
            raise InputError(
                f"unknown dtype {self.reward_torch_dtype!r}; expected {', '.join(REWARD_DTYPES)}",
                field="reward_torch_dtype",
            )
        if self.reward_arch_type != "text_regression":
            raise InputError(
                f"{self.reward_arch_type!r} is not supported; expected text_regression (a "
                "sequence-classification model with one label)",
                field="reward_arch_type",
            )


def load_reward_model(
    name: str,
    *,
    torch_dtype: str = "auto",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The reward model and its tokenizer (pad token set: the model's, else EOS), in eval mode
    on the GPU if there is one. ``dpov2:tiny-reward`` builds :func:`build_tiny_reward_model`.

    Raises:
        InputError: a model that cannot be loaded, or one with more than one label.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from dpov2.aligner import DTYPES, LOAD_ERRORS, check_local
    from dpov2.formats.hf import one_line

    field_name = "reward_model_name_or_path"
    dtype = DTYPES.get(REWARD_DTYPES[torch_dtype], torch.float32)
    model: PreTrainedModel
    if name == TINY_REWARD_MODEL:
        tiny_tokenizer = build_tiny_tokenizer()
        model = build_tiny_reward_model(tiny_tokenizer, dtype=dtype)
        tokenizer: PreTrainedTokenizerBase = tiny_tokenizer
    else:
        check_local(name, field_name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
            model = AutoModelForSequenceClassification.from_pretrained(
                name,
                dtype="auto" if torch_dtype == "auto" else dtype,
                attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
            )
        except LOAD_ERRORS as err:
            raise InputError(
                f"cannot load a reward model: {one_line(err)}", file=name, field=field_name
            ) from None
    if model.config.num_labels != 1:
        raise InputError(
            f"has {model.config.num_labels} labels; a reward model has one (a text regression)",
            file=name,
            field=field_name,
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to("cuda" if torch.cuda.is_available() else "cpu")  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    return model, tokenizer


def reward_texts(
    tokenizer: PreTrainedTokenizerBase, prompt: Prompt, responses: Sequence[str]
) -> list[str]:
    """What the reward model reads for each response: a chat prompt and the response as an
    assistant message through the chat template, a text prompt followed by the response."""
    if isinstance(prompt, str):
        return [prompt + response for response in responses]
    if tokenizer.chat_template is None:
        raise InputError(
            "the reward tokenizer has no chat template for the chat prompts",
            field="reward_model_name_or_path",
        )
    texts = []
    for response in responses:
        text = tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": response}], tokenize=False
        )
        assert isinstance(text, str)
        texts.append(text)
    return texts


def score_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    chat: bool,
    block_size: int,
) -> tuple[list[float], int]:
    """The reward of each text in one right-padded forward pass (chat-templated texts carry
    their own special tokens, ``chat=True``), and how many were cut to ``block_size``."""
    import torch

    if not texts:
        return [], 0
    tokenizer.padding_side = "right"
    encoded = tokenizer(
        list(texts), add_special_tokens=not chat, truncation=False, return_length=True
    )
    lengths = encoded.pop("length")
    cut = sum(1 for length in lengths if length > block_size)
    ids = [row[:block_size] for row in encoded["input_ids"]]
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(device_of(model))
    with torch.inference_mode():
        logits = model(**batch).logits
    scores = logits[:, 0].float().tolist()
    return scores, cut


def read_textlist(path: Path) -> Iterator[TextlistRow]:
    """``(file, row, prompt, responses)`` of a ``text_to_textlist`` dataset, each row checked.

    Raises:
        InputError: naming file, row and field of the first bad row.
    """
    for file, row, value in read_rows(path, (TEXTLIST_TYPE,)):
        try:
            if not isinstance(value, dict):
                raise InputError("expected an object with 'input' and 'output'")
            if "input" not in value:
                raise InputError("missing; expected the prompt", field="input")
            problem = prompt_problem(value["input"], "input")
            if problem is not None:
                raise problem
            responses = value.get("output")
            if not isinstance(responses, list):
                raise InputError("expected a list of response texts", field="output")
            for k, text in enumerate(responses):
                if not isinstance(text, str):
                    raise InputError(
                        f"expected a string, got {type(text).__name__}", field=f"output[{k}]"
                    )
        except InputError as err:
            raise InputError(err.message, file=file, row=row, field=err.field) from None
        yield file, row, value["input"], responses


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run did: prompts and responses scored, texts cut to the block size."""

    prompts: int
    responses: int
    truncated: int


def score(args: ScoreArguments, *, progress: Callable[[int], None] | None = None) -> ScoreResult:
    """Scores every response of ``args.dataset_path`` and writes ``args.results_path``
    (``reward_model_inference_batch_size`` prompts per forward pass). The output path is
    checked before the model loads; a bad row discards everything written. ``progress`` is
    called with the prompts of each batch written."""
    output, source = Path(str(args.results_path)), Path(str(args.dataset_path))
    check_outputs(output, [source], overwrite=args.overwrite)
    rows = read_textlist(source)
    first = next(rows, None)
    if first is None:
        raise InputError("holds no rows", file=str(source))
    model, tokenizer = load_reward_model(
        str(args.reward_model_name_or_path),
        torch_dtype=args.reward_torch_dtype,
        attn_implementation="flash_attention_2" if args.reward_use_flash_attention else None,
        trust_remote_code=args.trust_remote_code,
    )
    chat = not isinstance(first[2], str)
    kind = MESSAGES_TYPE if chat else pa.string()
    schema = pa.schema([("input", kind), ("output", OUTPUT_TYPE)])
    prompts = responses = truncated = 0
    with open_writer(output, dataset_type=SCORED_TYPE, overwrite=args.overwrite) as writer:
        for batch in _batches(first, rows, args.reward_model_inference_batch_size):
            texts: list[str] = []
            for file, row, prompt, texts_of_row in batch:
                if isinstance(prompt, str) == chat:
                    raise InputError(
                        f"a {'text' if chat else 'chat'} prompt after {'chat' if chat else 'text'} "
                        "ones; a dataset's prompts are of one kind",
                        file=file,
                        row=row,
                        field="input",
                    )
                texts += reward_texts(tokenizer, prompt, texts_of_row)
            scores, cut = score_texts(
                model,
                tokenizer,
                texts,
                chat=chat,
                block_size=args.reward_model_inference_block_size,
            )
            outputs, k = [], 0
            for file, row, _, texts_of_row in batch:
                scored = []
                for j, text in enumerate(texts_of_row):
                    if not math.isfinite(scores[k]):
                        raise InputError(
                            f"the reward model gave {scores[k]}",
                            file=file,
                            row=row,
                            field=f"output[{j}]",
                        )
                    scored.append({"text": text, "score": scores[k]})
                    k += 1
                outputs.append(scored)
            table = pa.table(
                {
                    "input": pa.array([item[2] for item in batch], kind),
                    "output": pa.array(outputs, OUTPUT_TYPE),
                }
            )
            writer.write(table)
            prompts, responses, truncated = prompts + len(batch), responses + k, truncated + cut
            if progress is not None:
                progress(len(batch))
        writer.finish(schema)
    return ScoreResult(prompts, responses, truncated)


def _batches(
    first: TextlistRow, rows: Iterator[TextlistRow], size: int
) -> Iterator[list[TextlistRow]]:
    batch = [first]
    for item in rows:
        if len(batch) == size:
            yield batch
            batch = []
        batch.append(item)
    yield batch
