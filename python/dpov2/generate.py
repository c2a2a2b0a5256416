"""``dpov2 generate``: several sampled responses per prompt from a causal LM, as LMFlow's
``text_to_textlist`` (``{"input": prompt, "output": [text, ...]}``).

Generation is batched ``transformers`` ``generate`` (CPU or one GPU). Prompts come from:

- LMFlow JSON files ``{"type": ..., "instances": [...]}`` of type ``text_only`` (``text``),
  ``text2text`` (``input``; its ``output`` is ignored) or ``conversation`` (``messages``, with
  ``system`` read as a first system message; a final assistant message, the reference reply,
  is dropped, and the conversation must then end with a user message);
- JSON Lines rows with ``input`` or ``prompt`` (not both): a string or chat messages;
- a folder of such files, read in name order as one dataset (:mod:`dpov2.formats.folders`).

With ``apply_chat_template`` (LMFlow's default) a text prompt becomes one user message, so the
output's prompts are chat messages that the reward model and the trainer render with their own
chat templates, exactly as the policy saw them rendered here; without it, text prompts are fed
as they are and chat prompts are refused. Prompt files are read whole (they are small) and
checked before the model is loaded; the responses are written batch by batch to a temporary
file renamed into place at the end (:func:`dpov2.formats.open_writer`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from dpov2.errors import InputError
from dpov2.formats import dataset_files, detect_format, open_writer
from dpov2.formats.atomic import check_apart, check_output_path
from dpov2.formats.instances import conversation_messages, scored_row_problem

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from dpov2.args import InputErrorParser

__all__ = [
    "PROMPT_TYPES",
    "TEXTLIST_TYPE",
    "GenerateArguments",
    "Prompt",
    "device_of",
    "encode_prompts",
    "generate",
    "generate_responses",
    "parse_stage_args",
    "prompt_problem",
    "read_prompts",
    "read_rows",
    "render_prompt",
    "stage_args_from",
]

TEXTLIST_TYPE = "text_to_textlist"
#: LMFlow's prompt dataset types, and the member each takes its prompt from.
PROMPT_TYPES = {"text_only": "text", "text2text": "input", "conversation": "messages"}
#: The members a JSON Lines prompt row may take its prompt from (one of them).
ROW_PROMPT_MEMBERS = ("input", "prompt")

#: A prompt: text, or chat messages ``{"role", "content"}``.
Prompt = str | list[dict[str, str]]
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@dataclass
class GenerateArguments:
    """What ``dpov2 generate`` reads, with LMFlow's names and defaults (but ``temperature``:
    LMFlow's 0 samples at 1e-6 in vLLM, giving ``num_output_sequences`` copies of one greedy
    reply, which make no pairs; and ``random_seed``, 42 as everywhere in dpov2)."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The policy: a folder, a Hub name, or dpov2:tiny."}
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Prompts: a file or a folder of files (see the README)."}
    )
    results_path: str | None = field(
        default=None,
        metadata={"help": "Output file (.json: LMFlow text_to_textlist, .jsonl, .parquet)."},
    )
    torch_dtype: str = field(default="auto", metadata={"help": "auto keeps the checkpoint's."})
    use_flash_attention: bool = field(default=False, metadata={"help": "flash_attention_2."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run checkpoint code."})
    conversation_template: str | None = field(
        default=None,
        metadata={"help": "Chat template: tokenizer (the tokenizer's own) or llama3."},
    )
    apply_chat_template: bool = field(
        default=True, metadata={"help": "Render prompts with the chat template."}
    )
    num_output_sequences: int = field(default=8, metadata={"help": "Responses per prompt."})
    temperature: float = field(default=1.0, metadata={"help": "0: greedy (one response)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass, in (0, 1]."})
    top_k: int = field(default=-1, metadata={"help": "-1: no top-k cut."})
    max_new_tokens: int = field(default=100, metadata={"help": "Tokens per response, at most."})
    random_seed: int = field(default=42, metadata={"help": "Seed of the sampling."})
    inference_batch_size: int | None = field(
        default=None, metadata={"help": "Prompts per generate call (default 8)."}
    )
    vllm_inference_batch_size: int | None = field(
        default=None, metadata={"help": "LMFlow's name for inference_batch_size."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing output."})
    use_beam_search: bool = field(default=False, metadata={"help": "Refused when true."})
    enable_decode_inference_result: bool = field(
        default=True, metadata={"help": "Refused when false: responses are texts."}
    )

    def __post_init__(self) -> None:
        for name in ("model_name_or_path", "dataset_path", "results_path"):
            if not getattr(self, name):
                raise InputError("missing; set it in the config or as --" + name, field=name)
        if self.use_beam_search:
            raise InputError(
                "beam search is not supported; responses are sampled", field="use_beam_search"
            )
        if not self.enable_decode_inference_result:
            raise InputError(
                "must be true: dpov2 writes response texts", field="enable_decode_inference_result"
            )
        batch = _same_option(self, "inference_batch_size", "vllm_inference_batch_size")
        self.inference_batch_size = 8 if batch is None else batch
        _at_least(self.inference_batch_size, 1, "inference_batch_size")
        _at_least(self.num_output_sequences, 1, "num_output_sequences")
        _at_least(self.max_new_tokens, 1, "max_new_tokens")
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise InputError(f"must be >= 0, got {self.temperature}", field="temperature")
        if self.temperature == 0 and self.num_output_sequences > 1:
            raise InputError(
                f"0 (greedy) gives {self.num_output_sequences} equal responses, which make no "
                "pairs; use a temperature > 0 or num_output_sequences 1",
                field="temperature",
            )
        if not 0 < self.top_p <= 1:
            raise InputError(f"must be in (0, 1], got {self.top_p}", field="top_p")
        if self.top_k != -1 and self.top_k < 1:
            raise InputError(f"must be -1 (off) or >= 1, got {self.top_k}", field="top_k")
        from dpov2.args import DatasetArguments  # its check of conversation_template

        try:
            DatasetArguments(conversation_template=self.conversation_template)
        except ValueError as err:
            raise InputError(str(err), field="conversation_template") from None

    @property
    def batch_size(self) -> int:
        assert self.inference_batch_size is not None  # set by __post_init__
        return self.inference_batch_size


def _same_option(args: object, name: str, lmflow: str) -> Any:
    """The value of an option that LMFlow names ``lmflow``: either name, not two values."""
    ours, theirs = getattr(args, name), getattr(args, lmflow)
    if ours is not None and theirs is not None and ours != theirs:
        raise InputError(
            f"{lmflow} (LMFlow's name) and {name} are the same option, given {theirs!r} and "
            f"{ours!r}; give one",
            field=lmflow,
        )
    return theirs if ours is None else ours


def _at_least(value: int, low: int, name: str) -> None:
    if value < low:
        raise InputError(f"must be >= {low}, got {value}", field=name)


# --- reading ----------------------------------------------------------------------------------


def read_rows(path: Path, types: Sequence[str]) -> Iterator[tuple[str, int, object]]:
    """``(file, row, value)`` of every instance of a dataset file or folder (its files in name
    order, each row numbered within its file), as plain Python values: JSON Lines line by line,
    an LMFlow JSON file whole (its ``type`` must be one of ``types``), Parquet by batch.

    Raises:
        InputError: a missing or empty file, invalid JSON (with its line), a wrong ``type``.
    """
    if not path.exists():
        raise InputError("no such file or folder", file=str(path))
    fmt = detect_format(path, None)
    if fmt == "hf":
        raise InputError("a save_to_disk folder is not read here; give JSON files", file=str(path))
    files = dataset_files(path) if fmt == "folder" else [(path, fmt)]
    for file, file_fmt in files:
        if file.stat().st_size == 0:
            raise InputError("is empty", file=str(file))
        yield from _file_rows(file, file_fmt, types)


def _file_rows(path: Path, fmt: str, types: Sequence[str]) -> Iterator[tuple[str, int, object]]:
    name = str(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        row = 0
        for batch in pq.ParquetFile(path).iter_batches():
            for value in batch.to_pylist():
                yield name, row, value
                row += 1
        return
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as lines:
            row = 0
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as err:
                    raise InputError(
                        f"line {number}: not valid JSON: {err}", file=name, row=row
                    ) from None
                yield name, row, value
                row += 1
        return
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"not valid JSON: {err}", file=name) from None
    wanted = " or ".join(f'"{kind}"' for kind in types)
    if not isinstance(document, dict) or not isinstance(document.get("instances"), list):
        raise InputError(f'expected LMFlow\'s {{"type": {wanted}, "instances": [...]}}', file=name)
    if document.get("type") not in types:
        raise InputError(
            f"dataset type {json.dumps(document.get('type'))}; expected {wanted}",
            file=name,
            field="type",
        )
    for row, value in enumerate(document["instances"]):
        yield name, row, value


def prompt_problem(value: object, name: str) -> InputError | None:
    """What is wrong with ``value`` as a prompt (text, or chat messages of exactly a string
    ``role`` and ``content``: the rule of :func:`dpov2.formats.scored_row_problem`), its field
    named from ``name``; ``None`` if nothing."""
    problem = scored_row_problem({"input": value, "output": []})
    if problem is None:
        return None
    return InputError(problem.message, field=name + (problem.field or "")[len("input") :])


def read_prompts(path: str | os.PathLike[str], *, apply_chat_template: bool) -> list[Prompt]:
    """Every prompt of a prompt dataset (see the module), in order; with
    ``apply_chat_template`` text prompts become one user message.

    Raises:
        InputError: naming the file, row and field of the first bad prompt.
    """
    prompts: list[Prompt] = []
    for file, row, value in read_rows(Path(path), tuple(PROMPT_TYPES)):
        try:
            member, prompt = _row_prompt(value, file)
            if not isinstance(prompt, str) and not apply_chat_template:
                raise InputError("chat messages need apply_chat_template (true)", field=member)
        except InputError as err:
            raise InputError(err.message, file=file, row=row, field=err.field) from None
        if isinstance(prompt, str) and apply_chat_template:
            prompt = [{"role": "user", "content": prompt}]
        prompts.append(prompt)
    if not prompts:
        raise InputError("holds no prompts", file=str(path))
    return prompts


def _members(file: str) -> tuple[str, ...]:
    """The members a row's prompt may be in: by LMFlow's types in LMFlow JSON, else
    ``input`` or ``prompt``."""
    return tuple(PROMPT_TYPES.values()) if file.endswith(".json") else ROW_PROMPT_MEMBERS


def _row_prompt(value: object, file: str) -> tuple[str, Prompt]:
    """The member holding one row's prompt, and the prompt, checked."""
    members = _members(file)
    if not isinstance(value, dict):
        raise InputError(f"expected an object with {' or '.join(members)}")
    given = [member for member in members if member in value]
    if not given:
        raise InputError(f"no prompt; expected one of {', '.join(members)}")
    if len(given) > 1:
        raise InputError(f"both {given[0]} and {given[1]}; give the prompt once", field=given[1])
    member = given[0]
    if member == "messages":
        return member, _conversation_prompt(value)
    problem = prompt_problem(value[member], member)
    if problem is not None:
        raise problem
    prompt: Prompt = value[member]
    return member, prompt


def _conversation_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """An LMFlow conversation as a prompt: ``system`` first, a final assistant reply dropped,
    ending with a user message."""
    if not isinstance(row["messages"], list):
        raise InputError("expected a list of chat messages", field="messages")
    problem = prompt_problem(row["messages"], "messages")
    if problem is not None:
        raise problem
    if row.get("system") is not None and not isinstance(row["system"], str):
        raise InputError("expected a string", field="system")
    if row.get("tools") not in (None, []):
        raise InputError("tools are not supported in a prompt", field="tools")
    messages: list[dict[str, str]] = conversation_messages(row)  # type: ignore[assignment]
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        raise InputError(
            "must end with a user message (or a user message and the reply)", field="messages"
        )
    return messages


# --- generating -------------------------------------------------------------------------------


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> str:
    """The text the model continues: chat messages through the chat template with the
    assistant turn opened, text as it is."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template is None:
        raise InputError(
            "the tokenizer has no chat template for chat prompts; set conversation_template, "
            "or apply_chat_template false for text prompts",
            field="apply_chat_template",
        )
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert isinstance(text, str)
    return text


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Prompt]) -> Any:
    """The left-padded token batch of ``prompts`` (rendered by :func:`render_prompt`), for
    ``generate``: text prompts get the tokenizer's special tokens (BOS), chat-templated ones
    only those their template writes."""
    texts = [render_prompt(tokenizer, prompt) for prompt in prompts]
    chat = not isinstance(prompts[0], str)
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)


def device_of(model: PreTrainedModel) -> Any:
    """The device the model's weights are on."""
    return next(model.parameters()).device


def generate_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Prompt],
    args: GenerateArguments,
    *,
    first_row: int = 0,
) -> list[list[str]]:
    """``args.num_output_sequences`` responses (decoded, special tokens left out) to each of
    ``prompts``, in one ``generate`` call of left-padded prompts.

    The sampling draws from torch's RNG seeded by ``(random_seed, first_row)`` (``first_row``:
    the index of ``prompts[0]`` in its dataset), inside a forked RNG state: the same batch on
    the same device and software gives the same responses, whatever ran before it.
    """
    import torch

    encoded = encode_prompts(tokenizer, prompts)
    device = device_of(model)
    encoded = encoded.to(device)
    seed = int(np.random.SeedSequence([args.random_seed, first_row]).generate_state(1)[0])
    eos = model.generation_config.eos_token_id
    sampling = args.temperature > 0
    options: dict[str, Any] = {
        "do_sample": sampling,
        "max_new_tokens": args.max_new_tokens,
        "num_return_sequences": args.num_output_sequences,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id if eos is None else eos,
    }
    if sampling:
        options.update(
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=0 if args.top_k == -1 else args.top_k,
        )
    from transformers import GenerationConfig

    # Only these settings (not the checkpoint's generation defaults), as vLLM's SamplingParams.
    config = GenerationConfig(**options)  # type: ignore[no-untyped-call]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        generated = model.generate(**encoded, generation_config=config)  # type: ignore[operator]
    new_tokens = generated[:, encoded["input_ids"].shape[1] :]
    decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    n = args.num_output_sequences
    return [decoded[i * n : (i + 1) * n] for i in range(len(prompts))]


def generate(args: GenerateArguments, *, progress: Callable[[int], None] | None = None) -> int:
    """Generates for every prompt of ``args.dataset_path`` and writes ``args.results_path``;
    returns the number of prompts. Everything is checked (prompts, output path, model) before
    the first batch, and the output appears only when complete. ``progress`` is called with
    the prompts of each batch written."""
    from dpov2.aligner import load_model, load_tokenizer, with_chat_template
    from dpov2.args import ModelArguments

    output, source = Path(str(args.results_path)), Path(str(args.dataset_path))
    check_outputs(output, [source], overwrite=args.overwrite)
    prompts = read_prompts(source, apply_chat_template=args.apply_chat_template)
    model_args = ModelArguments(
        model_name_or_path=args.model_name_or_path,
        torch_dtype=args.torch_dtype,
        attn_implementation="flash_attention_2" if args.use_flash_attention else None,
    )
    tokenizer = load_tokenizer(model_args, trust_remote_code=args.trust_remote_code)
    tokenizer = with_chat_template(tokenizer, args.conversation_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    render_prompt(tokenizer, prompts[0])  # a missing chat template fails before the model loads
    model = load_model(model_args, trust_remote_code=args.trust_remote_code)
    import torch

    model.to("cuda" if torch.cuda.is_available() else "cpu")  # type: ignore[arg-type]
    model.eval()  # type: ignore[no-untyped-call]
    kind = pa.string() if isinstance(prompts[0], str) else MESSAGES_TYPE
    schema = pa.schema([("input", kind), ("output", pa.list_(pa.string()))])
    with open_writer(output, dataset_type=TEXTLIST_TYPE, overwrite=args.overwrite) as writer:
        for start in range(0, len(prompts), args.batch_size):
            batch = prompts[start : start + args.batch_size]
            responses = generate_responses(model, tokenizer, batch, args, first_row=start)
            writer.write(
                pa.table(
                    {
                        "input": pa.array(batch, kind),
                        "output": pa.array(responses, schema.field("output").type),
                    }
                )
            )
            if progress is not None:
                progress(len(batch))
        writer.finish(schema)
    return len(prompts)


def check_outputs(output: Path, inputs: Sequence[Path], *, overwrite: bool) -> None:
    """Refuses, before any work, an output of unknown format, one that exists (unless
    ``overwrite``) or has no folder, and one that is, holds or lies inside an input."""
    detect_format(output, None, output=True)
    check_output_path(output, overwrite=overwrite)
    check_apart(output, [path for path in inputs if path.exists()])


# --- arguments --------------------------------------------------------------------------------

T = TypeVar("T")


def parse_stage_args(cls: type[T], argv: Sequence[str], prog: str) -> T:
    """``cls`` from ``[CONFIG] [--flag value ...]``: a JSON or YAML file of field names
    (LMFlow's), overridden by flags of the same names, as ``dpov2 align`` reads them.

    Raises:
        InputError: an unreadable config, an unknown key or flag, a bad value (naming the
            config file, when there is one).
    """
    from dpov2.args import InputErrorParser, read_config

    parser = InputErrorParser(cls, prog=prog)  # type: ignore[arg-type]
    for action in parser._actions:
        action.default = argparse.SUPPRESS  # only the flags given override the config
    argv = list(argv)
    config_file = argv.pop(0) if argv and not argv[0].startswith("-") else None
    settings = {} if config_file is None else read_config(Path(config_file))
    settings.update(vars(parser.parse_args(argv)))  # typed by the parser; `_typed` keeps them
    return _stage_args(parser, cls, settings, config_file)


def stage_args_from(cls: type[T], settings: dict[str, Any], file: str | None) -> T:
    """``cls`` from a mapping of its field names, as a config file ``file`` gives them.

    Raises:
        InputError: an unknown key or a bad value, naming ``file``.
    """
    from dpov2.args import InputErrorParser

    return _stage_args(InputErrorParser(cls), cls, settings, file)  # type: ignore[arg-type]


def _stage_args(
    parser: InputErrorParser, cls: type[T], settings: dict[str, Any], file: str | None
) -> T:
    """``cls`` from ``settings`` by ``parser`` (one for ``cls``), errors naming ``file``."""
    try:
        (parsed,) = parser.parse_dict(_typed(cls, settings, file))
    except InputError as err:
        raise InputError(err.message, file=file, field=err.field) from None
    except (TypeError, ValueError) as err:  # unknown keys, values of the wrong type
        raise InputError(" ".join(str(err).split()), file=file) from None
    result: T = parsed
    return result


def _typed(cls: type[Any], settings: dict[str, Any], file: str | None) -> dict[str, Any]:
    """A config's values checked against the fields of ``cls`` (flags are typed by the
    parser): yes/no as LMFlow writes them (true/false, 1/0), integers, numbers (a numeric
    string too: YAML reads ``1e-6`` as one), strings; unknown keys are left for the parser."""
    import typing

    from dpov2.args import as_bool

    hints = typing.get_type_hints(cls)
    typed = dict(settings)
    for name, value in settings.items():
        kinds = typing.get_args(hints[name]) or (hints[name],) if name in hints else ()
        if value is None or not kinds:
            continue
        if bool in kinds:
            typed[name] = as_bool(value, name, file)
        elif int in kinds and not (isinstance(value, int) and not isinstance(value, bool)):
            raise InputError(f"expected an integer, got {value!r}", file=file, field=name)
        elif float in kinds:
            try:
                typed[name] = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"expected a number, got {value!r}", file=file, field=name
                ) from None
        elif str in kinds and not isinstance(value, str):
            raise InputError(f"expected a string, got {value!r}", file=file, field=name)
    return typed
