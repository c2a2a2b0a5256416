"""Chunks of newline-delimited JSON instances into :class:`ScoredBatch` es.

Both JSON readers (JSON Lines, and LMFlow's JSON whose instances the Rust splitter turns into
lines) end here. Each chunk goes down the first of three parsers that takes it:

1. the Rust core's parser for the common case (string prompts, well-formed responses), which
   writes the Arrow buffers directly, on all cores;
2. ``pyarrow.json`` against an explicit schema, for everything else that is valid (chat
   prompts, nulls, extra fields of any type);
3. line by line in Python, only when pyarrow refuses the chunk (malformed JSON, a field of
   the wrong type), to find the rows at fault and keep the others.
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.json as pa_json

from dpov2 import _core
from dpov2.formats.instances import (
    OUTPUT_TYPE,
    RowProblem,
    ScoredBatch,
    is_prompt_type,
    scored_row_problem,
)

__all__ = ["NdjsonParser"]

# pyarrow.json cuts a chunk into blocks parsed in parallel; a line must fit in one block.
MIN_BLOCK_BYTES = 1 << 20


class NdjsonParser:
    """Parses the chunks of one source, in order.

    The prompt type (text, or the Arrow type of a chat-message list) is inferred from the
    first chunk that has one and then required of every later chunk, so that all batches share
    one schema.
    """

    def __init__(self, file: str, threads: int) -> None:
        self.file = file
        self.threads = max(1, threads)
        self.prompt_type: pa.DataType | None = None

    def parse(self, chunk: memoryview, *, first_row: int, progress: int) -> ScoredBatch:
        """The instances of ``chunk`` (whole lines; blank lines are skipped). The result does
        not refer to ``chunk``'s memory."""
        table = self._parse_simple(chunk)
        if table is None:
            table = self._parse_arrow(chunk)
        if table is None:
            table, problems = self._parse_python(chunk)
        else:
            problems = {}
        if self.prompt_type is None and is_prompt_type(table.column("input").type):
            self.prompt_type = table.column("input").type
        return ScoredBatch(table, first_row, progress, problems)

    def _schema(self) -> pa.Schema:
        fields = [] if self.prompt_type is None else [pa.field("input", self.prompt_type)]
        return pa.schema([*fields, pa.field("output", OUTPUT_TYPE)])

    def _parse_simple(self, chunk: memoryview) -> pa.Table | None:
        """The chunk as a table if every line is a simple case for the Rust parser."""
        if self.prompt_type is not None and not pa.types.is_string(self.prompt_type):
            return None
        columns = _core.parse_scored_lines(np.frombuffer(chunk, np.uint8), self.threads)
        if columns is None:
            return None
        prompt_offsets, prompt_data, output_offsets, text_offsets, text_data, scores = columns
        responses = pa.StructArray.from_arrays(
            [_strings(text_offsets, text_data), pa.array(scores)],
            fields=list(OUTPUT_TYPE.value_type),
        )
        outputs = pa.ListArray.from_arrays(pa.array(output_offsets), responses)
        return pa.table({"input": _strings(prompt_offsets, prompt_data), "output": outputs})

    def _parse_arrow(self, chunk: memoryview) -> pa.Table | None:
        """The chunk as a table, or ``None`` where pyarrow finds a row it cannot type."""
        block = max(MIN_BLOCK_BYTES, _longest_line(chunk) + 2, len(chunk) // (2 * self.threads) + 1)
        try:
            table = pa_json.read_json(
                pa.BufferReader(pa.py_buffer(chunk)),
                read_options=pa_json.ReadOptions(use_threads=self.threads > 1, block_size=block),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=self._schema(),
                    # Until the prompt type is known, infer it (and, harmlessly, any extra field).
                    unexpected_field_behavior="ignore" if self.prompt_type else "infer",
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        if "input" not in table.column_names:
            prompts = pa.nulls(table.num_rows, self.prompt_type or pa.null())
        else:
            prompts = table.column("input")
            if not (is_prompt_type(prompts.type) or pa.types.is_null(prompts.type)):
                return None  # say which rows, from the line-by-line parse
        return pa.table({"input": prompts, "output": table.column("output")})

    def _parse_python(self, chunk: memoryview) -> tuple[pa.Table, dict[int, RowProblem]]:
        """Line by line: every row checked by :func:`scored_row_problem`; bad rows become
        nulls, and their problems are returned by position."""
        rows: list[dict[str, object]] = []
        problems: dict[int, RowProblem] = {}
        for line in bytes(chunk).split(b"\n"):
            if not line.strip():
                continue
            i = len(rows)
            try:
                row = json.loads(line)
            except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8
                problem: RowProblem | None = RowProblem(None, f"malformed JSON: {err}")
            else:
                problem = scored_row_problem(row) or self._prompt_type_problem(row["input"])
            if problem is None:
                # float(): a JSON integer score may exceed what Arrow converts from a Python int.
                responses = [{"text": r["text"], "score": float(r["score"])} for r in row["output"]]
                rows.append({"input": row["input"], "output": responses})
            else:
                problems[i] = problem
                rows.append({"input": None, "output": None})
        table = pa.Table.from_pylist(rows, schema=self._schema()) if self.prompt_type else None
        if table is None:
            prompts = pa.array([row["input"] for row in rows])
            outputs = pa.array([row["output"] for row in rows], OUTPUT_TYPE)
            table = pa.table({"input": prompts, "output": outputs})
        return table, problems

    def _prompt_type_problem(self, prompt: object) -> RowProblem | None:
        """Whether a prompt fits the type fixed by the rows before it (inferring it if none)."""
        try:
            kind = pa.array([prompt], self.prompt_type).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return RowProblem(
                "input",
                f"does not match the earlier prompts' type {self.prompt_type}: {prompt!r:.60}",
            )
        if self.prompt_type is None:
            self.prompt_type = kind
        return None


def _strings(offsets: npt.NDArray[np.int32], data: npt.NDArray[np.uint8]) -> pa.StringArray:
    """A string array over NumPy buffers, without copying (the Rust parser has checked that
    the bytes are UTF-8)."""
    return pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


def _longest_line(chunk: memoryview) -> int:
    """The length in bytes of the longest line, its newline included."""
    ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == ord("\n"))
    if len(ends) == 0:
        return len(chunk)
    return max(int(np.diff(ends, prepend=-1).max()), len(chunk) - int(ends[-1]) - 1)
