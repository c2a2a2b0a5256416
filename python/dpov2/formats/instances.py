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
    "OUTPUT_TYPE",
    "PAIRED_TYPE",
    "SCORED_TYPE",
    "RowProblem",
    "ScoredBatch",
    "batch_rows",
    "conform_scored_table",
    "is_prompt_type",
    "scored_row_problem",
]

SCORED_TYPE = "text_to_scored_textlist"
PAIRED_TYPE = "paired_text_to_text"

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
    """Why one instance cannot be used: the ``field`` at fault (``None``: the whole row)."""

    field: str | None
    message: str

    def error(self, file: str, row: int) -> InputError:
        return InputError(self.message, file=file, row=row, field=self.field)


@dataclass(frozen=True)
class ScoredBatch:
    """Consecutive instances of one source.

    ``table`` has the columns ``input`` and ``output``; rows listed in ``problems`` (by
    position in the batch) could not be read into it and are null there. ``first_row`` is the
    instance index of the batch's first row in its source: error messages name rows by it and
    the pairing draws its random numbers by it, so results never depend on batching.
    ``progress`` is how much of the source the batch consumed (bytes or rows, as the reader
    counts its total).
    """

    table: pa.Table
    first_row: int
    progress: int
    problems: dict[int, RowProblem] = field(default_factory=dict)


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
    """The first thing wrong with one instance as plain Python values, or ``None``.

    This is the definition of a valid row: readers use it on rows that Arrow could not type,
    the reference path on every row, and the fast path to word its vectorised findings.
    """
    if not isinstance(row, dict):
        return RowProblem(None, f"expected an object with 'input' and 'output', got {_show(row)}")
    prompt = row.get("input")
    if prompt is None:
        return RowProblem("input", "missing or null; expected the prompt (text or chat messages)")
    if not isinstance(prompt, (str, list)):
        return RowProblem(
            "input", f"expected a string or a list of chat messages, got {_show(prompt)}"
        )
    output = row.get("output")
    if output is None:
        return RowProblem("output", "missing or null; expected a list of {text, score}")
    if not isinstance(output, list):
        return RowProblem("output", f"expected a list of {{text, score}}, got {_show(output)}")
    for k, response in enumerate(output):
        where = f"output[{k}]"
        if not isinstance(response, dict):
            return RowProblem(
                where, f"expected an object with text and score, got {_show(response)}"
            )
        text, score = response.get("text"), response.get("score")
        if text is None:
            return RowProblem(f"{where}.text", "missing or null; expected a string")
        if not isinstance(text, str):
            return RowProblem(f"{where}.text", f"expected a string, got {_show(text)}")
        if score is None:
            return RowProblem(f"{where}.score", "missing or null; expected a number")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            return RowProblem(f"{where}.score", f"expected a number, got {_show(score)}")
        if not _is_finite(score):
            return RowProblem(f"{where}.score", f"must be a finite number, got {score}")
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
