"""What a scored instance (LMFlow's ``text_to_scored_textlist``) is, and what is wrong with one.

An instance is ``{"input": prompt, "output": [{"text": str, "score": number}, ...]}``: the
prompt is a string or a list of chat messages (kept as they are), each response a text with a
finite raw reward. Readers hand on Arrow tables with exactly the columns ``input`` and
``output`` (of type :data:`OUTPUT_TYPE`) as :class:`ScoredBatch` es; extra fields are dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pyarrow as pa

from dpov2.errors import InputError

__all__ = [
    "BATCH_BYTES",
    "COMPLETIONS",
    "OUTPUT_TYPE",
    "PAIRED_CONVERSATION_TYPE",
    "PAIRED_EXTRAS",
    "PAIRED_MEMBERS",
    "PAIRED_TYPE",
    "PROVENANCE_EXTRAS",
    "REFERENCE_EXTRAS",
    "REF_LOGPS_COLUMNS",
    "REF_TAG_COLUMN",
    "SCORED_TYPE",
    "RowProblem",
    "ScoredBatch",
    "batch_rows",
    "conform_scored_table",
    "conversation_messages",
    "implicit_prompt",
    "is_prompt_type",
    "paired_extra_problem",
    "paired_member_problem",
    "paired_row_problem",
    "scored_row_problem",
]

SCORED_TYPE = "text_to_scored_textlist"
PAIRED_TYPE = "paired_text_to_text"
#: LMFlow's pairs of whole conversations, read as pairs with an implicit prompt.
PAIRED_CONVERSATION_TYPE = "paired_conversation"

RESPONSE_TYPE = pa.struct([("text", pa.string()), ("score", pa.float64())])
OUTPUT_TYPE = pa.list_(RESPONSE_TYPE)

# Batches also stop at about this much data: a few MiB keeps the working set in cache and lets
# the allocator reuse freed buffers; both throughput and memory suffer with much larger ones.
BATCH_BYTES = 8 << 20


def batch_rows(batch_size: int, bytes_per_row: float) -> int:
    """Rows per batch: ``batch_size``, or fewer to stay near :data:`BATCH_BYTES`."""
    return max(1, min(batch_size, int(BATCH_BYTES / max(bytes_per_row, 1.0))))


@dataclass(frozen=True)
class RowProblem:
    """Why one instance cannot be used: the ``field`` at fault (``None``: the whole row), and
    the ``byte`` of the file where it was found, when the reader knows it. A problem in one
    file of a folder names that ``file`` and its ``row`` there itself."""

    field: str | None
    message: str
    byte: int | None = None
    file: str | None = None
    row: int | None = None

    def error(self, file: str, row: int) -> InputError:
        """The error for row ``row`` of ``file``, unless the problem names its own."""
        return InputError(
            self.message,
            file=self.file or file,
            row=row if self.row is None else self.row,
            field=self.field,
            byte=self.byte,
        )


@dataclass(frozen=True)
class ScoredBatch:
    """Consecutive instances of one source.

    ``table`` has the columns ``input`` and ``output``; rows listed in ``problems`` (by
    position in the batch) could not be read into it and are null there. ``first_row`` is the
    instance index of the batch's first row in its source: error messages name rows by it and
    the pairing draws its random numbers by it, so results never depend on batching.
    ``progress`` is how much of the source the batch consumed (bytes or rows, as the reader
    counts its total). ``origin`` is, for a batch of one file of a folder, that file and the
    row of the batch's first row within it: errors found later name them (:meth:`locate`).
    """

    table: pa.Table
    first_row: int
    progress: int
    problems: dict[int, RowProblem] = field(default_factory=dict)
    origin: tuple[str, int] | None = None

    def locate(self, i: int, source: str) -> tuple[str, int]:
        """The file and row an error about row ``i`` of the batch names: ``source`` and the
        row's index there, or for a folder's batch its own file and the row within it."""
        if self.origin is None:
            return source, self.first_row + i
        file, first_row = self.origin
        return file, first_row + i


def is_prompt_type(kind: pa.DataType) -> bool:
    """A prompt is text, or a list (of chat messages)."""
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
    )


def conform_scored_table(table: pa.Table, file: str) -> pa.Table:
    """``input`` and ``output`` only, ``output`` cast to :data:`OUTPUT_TYPE`.

    Columnar sources (Parquet, datasets) fix their types for the whole file, so a wrong type
    is reported for the column, not for a row.
    """
    for name in ("input", "output"):
        if name not in table.column_names:
            raise InputError(
                f"no '{name}' column (columns: {', '.join(table.column_names) or 'none'}); "
                "expected 'input' (the prompt) and 'output' (a list of {text, score})",
                file=file,
                field=name,
            )
    prompts, outputs = table.column("input"), table.column("output")
    if not (is_prompt_type(prompts.type) or pa.types.is_null(prompts.type)):
        raise InputError(
            f"has type {prompts.type}; expected a string or a list of chat messages",
            file=file,
            field="input",
        )
    if outputs.type != OUTPUT_TYPE:
        outputs = _cast_output(outputs, file)
    return pa.table({"input": prompts, "output": outputs})


def _cast_output(outputs: pa.ChunkedArray, file: str) -> pa.ChunkedArray:
    kind = outputs.type
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(outputs), OUTPUT_TYPE)])
    expected = "a list of {text: string, score: number}"
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_struct(
        kind.value_type
    ):
        raise InputError(f"has type {kind}; expected {expected}", file=file, field="output")
    item = kind.value_type
    for name, wanted in (("text", "a string"), ("score", "a number")):
        if item.get_field_index(name) < 0:
            raise InputError(
                f"has no '{name}' (type {kind}); expected {expected}", file=file, field="output"
            )
        child = item.field(name).type
        ok = (
            pa.types.is_string(child) or pa.types.is_large_string(child)
            if name == "text"
            else pa.types.is_integer(child) or pa.types.is_floating(child)
        )
        if not (ok or pa.types.is_null(child)):
            raise InputError(
                f"has type {child}; expected {wanted}", file=file, field=f"output[].{name}"
            )
    # Arrow casts structs by field name: extra fields (a response id, say) are dropped.
    return outputs.cast(OUTPUT_TYPE)


def scored_row_problem(row: object) -> RowProblem | None:
    """The first thing wrong with one scored instance as plain Python values, or ``None``.

    This is the readable definition of a valid row: the reference pairing path checks every
    row with it, the fast path words its vectorised findings with it, and the tests hold the
    Rust JSON reader (``rust/json/src/read``) to it.
    """
    if not isinstance(row, dict):
        return RowProblem(None, f"expected an object with 'input' and 'output', got {_show(row)}")
    problem = _prompt_problem(row, "input")
    if problem is not None:
        return problem
    if "output" not in row:
        return RowProblem("output", "missing; expected a list of {text, score}")
    output = row["output"]
    if output is None:
        return RowProblem("output", "null; expected a list of {text, score}")
    if not isinstance(output, list):
        return RowProblem("output", f"expected a list of {{text, score}}, got {_show(output)}")
    for k, response in enumerate(output):
        where = f"output[{k}]"
        if not isinstance(response, dict):
            return RowProblem(
                where, f"expected an object with text and score, got {_show(response)}"
            )
        problem = _text_problem(response, "text", f"{where}.text") or _number_problem(
            response, "score", f"{where}.score"
        )
        if problem is not None:
            return problem
    return None


#: The members of a paired instance, in the order :func:`paired_row_problem` checks them.
PAIRED_MEMBERS = ("prompt", "chosen", "rejected", "margin")
#: A pair's completions.
COMPLETIONS = ("chosen", "rejected")
#: Optional members of a paired instance that readers keep as columns of their own (Arrow type
#: names), so that a pair file reads back with the columns it was written with: the raw scores
#: and response indices of ``dpov2 pair --provenance`` ...
PROVENANCE_EXTRAS = {
    "chosen_score": "float64",
    "rejected_score": "float64",
    "chosen_index": "int64",
    "rejected_index": "int64",
}
#: ... and the stored reference log-probs of ``dpov2 reference-logps`` (TRL's column names)
#: with the tag of what they were computed with.
REF_LOGPS_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
REF_TAG_COLUMN = "ref_logps_tag"
REFERENCE_EXTRAS = {**dict.fromkeys(REF_LOGPS_COLUMNS, "float64"), REF_TAG_COLUMN: "string"}
#: Every optional member, in column order. Null or absent in a row: null. The JSON reader
#: gives a file the columns of those its first valid row has (null or not); a later row with a
#: value for another is a problem (:func:`paired_extra_problem`).
PAIRED_EXTRAS = {**PROVENANCE_EXTRAS, **REFERENCE_EXTRAS}
#: The int64 range, which an ``int64`` extra must be in.
_INT64 = range(-(2**63), 2**63)


def paired_row_problem(row: object) -> RowProblem | None:
    """The first thing wrong with one paired instance, or ``None``; the counterpart of
    :func:`scored_row_problem`.

    ``prompt`` is a prompt; ``chosen`` and ``rejected`` are both strings or both chat
    messages: a list of messages, or LMFlow's conversation ``{"messages": [...], "system":
    ...}`` (see :func:`conversation_messages`), and chat completions need a chat prompt (TRL's
    conversational format). Chat completions may leave the prompt out: it is then the
    messages both start with (:func:`implicit_prompt`). ``margin`` is a number, null or absent.
    First each member's own shape (:func:`paired_member_problem`), then the row's.
    """
    if not isinstance(row, dict):
        return RowProblem(
            None, f"expected an object with 'prompt', 'chosen' and 'rejected', got {_show(row)}"
        )
    for name in PAIRED_MEMBERS:
        if name in row or name in COMPLETIONS:
            problem = paired_member_problem(row, name)
            if problem is not None:
                return problem
    chosen, rejected = row["chosen"], row["rejected"]
    if isinstance(chosen, str) != isinstance(rejected, str):
        return RowProblem(
            "rejected", f"expected {_kind_name(chosen)}, as chosen is, got {_kind_name(rejected)}"
        )
    if "prompt" not in row:
        if isinstance(chosen, str):
            return RowProblem(
                "prompt", "missing; expected the prompt (text, or implicit in chat completions)"
            )
        split = implicit_prompt(conversation_messages(chosen), conversation_messages(rejected))
        return split if isinstance(split, RowProblem) else None
    if isinstance(row["prompt"], str) and not isinstance(chosen, str):
        return RowProblem("chosen", "chat messages beside a string prompt")
    return None


def paired_extra_problem(row: dict[str, object], name: str, held: bool) -> RowProblem | None:
    """What is wrong with the optional member ``name`` (of :data:`PAIRED_EXTRAS`) of a paired
    instance, or ``None``: null or of its type (a number; an integer in the int64 range,
    written without fraction or exponent; a string), and null unless ``held``, that is unless
    the file has a column for it."""
    value = row.get(name)
    if value is None:
        return None
    if not held:
        return RowProblem(name, "a value with no column to go to: the first row lacks this member")
    kind = PAIRED_EXTRAS[name]
    if kind == "string":
        if isinstance(value, str):
            return None
        return RowProblem(name, f"expected a string, got {_show(value)}")
    if kind == "int64" and not (
        isinstance(value, int) and not isinstance(value, bool) and value in _INT64
    ):
        return RowProblem(name, f"expected an integer in the int64 range, got {_show(value)}")
    return _number_problem(row, name, name)


def paired_member_problem(row: dict[str, object], name: str) -> RowProblem | None:
    """What is wrong with member ``name`` of a paired instance on its own (its presence and
    shape), or ``None``."""
    if name == "prompt":
        return _prompt_problem(row, name)
    if name == "margin":
        return None if row.get("margin") is None else _number_problem(row, name, name)
    if name not in row:
        return RowProblem(name, "missing; expected a string or chat messages")
    value = row[name]
    if value is None:
        return RowProblem(name, "null; expected a string or chat messages")
    if isinstance(value, str):
        return None
    if isinstance(value, list):
        return _messages_problem(value, name)
    if not isinstance(value, dict):
        return RowProblem(name, f"expected a string or chat messages, got {_show(value)}")
    if "messages" not in value:
        return RowProblem(f"{name}.messages", "missing; expected a list of chat messages")
    messages = value["messages"]
    if not isinstance(messages, list):
        return RowProblem(
            f"{name}.messages", f"expected a list of chat messages, got {_show(messages)}"
        )
    if value.get("system") is not None and not isinstance(value["system"], str):
        return RowProblem(f"{name}.system", f"expected a string, got {_show(value['system'])}")
    if value.get("tools") not in (None, []):
        return RowProblem(f"{name}.tools", "tools cannot be carried into a preference pair")
    return _messages_problem(messages, f"{name}.messages")


def conversation_messages(value: object) -> list[object]:
    """A chat completion's messages: the list itself, or those of LMFlow's conversation
    object after its ``system`` prompt as a first ``system`` message."""
    if isinstance(value, list):
        return value
    assert isinstance(value, dict)
    system = value.get("system")
    head: list[object] = [] if system is None else [{"role": "system", "content": system}]
    return head + list(value["messages"])


def implicit_prompt(chosen: list[object], rejected: list[object]) -> int | RowProblem:
    """How many first messages ``chosen`` and ``rejected`` share (their implicit prompt, as
    TRL's ``extract_prompt`` takes it), or the problem: none shared, or a completion that is
    all prompt."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        return RowProblem("prompt", "missing, and chosen and rejected share no first message")
    for name, messages in (("chosen", chosen), ("rejected", rejected)):
        if len(messages) == shared:
            return RowProblem(name, f"is all prompt: its {shared} messages start both")
    return shared


def _kind_name(value: object) -> str:
    return "a string" if isinstance(value, str) else "chat messages"


def _prompt_problem(row: dict[str, object], name: str) -> RowProblem | None:
    """A prompt is a string, or chat messages: objects with exactly a string ``role`` and a
    string ``content`` (other members are refused rather than dropped)."""
    if name not in row:
        return RowProblem(name, "missing; expected the prompt (text or chat messages)")
    prompt = row[name]
    if prompt is None:
        return RowProblem(name, "null; expected the prompt (text or chat messages)")
    if isinstance(prompt, str):
        return None
    if not isinstance(prompt, list):
        return RowProblem(
            name, f"expected a string or a list of chat messages, got {_show(prompt)}"
        )
    return _messages_problem(prompt, name)


def _messages_problem(messages: list[object], name: str) -> RowProblem | None:
    """Chat messages are objects with exactly a string ``role`` and a string ``content``
    (other members are refused rather than dropped)."""
    for i, message in enumerate(messages):
        where = f"{name}[{i}]"
        if not isinstance(message, dict):
            return RowProblem(where, f"expected a message {{role, content}}, got {_show(message)}")
        problem = _text_problem(message, "role", f"{where}.role") or _text_problem(
            message, "content", f"{where}.content"
        )
        if problem is not None:
            return problem
        for key in message:
            if key not in ("role", "content"):
                return RowProblem(
                    f"{where}.{key}", "unexpected member; a message has only role and content"
                )
    return None


def _text_problem(parent: dict[str, object], key: str, where: str) -> RowProblem | None:
    if key not in parent:
        return RowProblem(where, "missing; expected a string")
    value = parent[key]
    if value is None:
        return RowProblem(where, "null; expected a string")
    if not isinstance(value, str):
        return RowProblem(where, f"expected a string, got {_show(value)}")
    return None


def _number_problem(parent: dict[str, object], key: str, where: str) -> RowProblem | None:
    if key not in parent:
        return RowProblem(where, "missing; expected a number")
    value = parent[key]
    if value is None:
        return RowProblem(where, "null; expected a number")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return RowProblem(where, f"expected a number, got {_show(value)}")
    if not _is_finite(value):
        return RowProblem(where, f"must be a finite number, got {value}")
    return None


def _is_finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond the float range
        return False


def _show(value: object, limit: int = 40) -> str:
    """A short JSON rendering of a value, for messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."
