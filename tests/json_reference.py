"""The test-side reference for the Rust JSON reader (``rust/json/src/read``): the same rules,
written with Python's ``json`` and the row definitions of :mod:`dpov2.formats.instances`.

It reads a list of raw instances (the bytes of each row, as a test wrote them into a JSON Lines
or LMFlow file) and returns what the reader must return: every row as plain values, or ``None``
with the field at fault (``None`` for a problem with the row's JSON itself, whose field the
reference does not try to name).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from dpov2.formats.instances import RowProblem, paired_row_problem, scored_row_problem

__all__ = ["MAX_DEPTH", "PROMPT_COLUMN", "ReferenceResult", "read_rows"]

#: Nesting deeper than this is refused (the reader's stack stays bounded).
MAX_DEPTH = 128
PROMPT_COLUMN = {"scored": "input", "paired": "prompt"}
_CHECKS: dict[str, Callable[[object], RowProblem | None]] = {
    "scored": scored_row_problem,
    "paired": paired_row_problem,
}
_COLUMNS = {"scored": ("input", "output"), "paired": ("prompt", "chosen", "rejected", "margin")}


class _Refused(ValueError):
    """A row whose JSON breaks one of the reader's rules."""


@dataclass
class ReferenceResult:
    rows: list[dict[str, object] | None]
    problems: dict[int, str | None]


def read_rows(raw_rows: list[bytes], schema: str) -> ReferenceResult:
    """The rows the reader accepts (only the schema's columns, scores as floats) and the
    problem rows with their field. The prompt kind (text or messages) is fixed by the first
    valid row; a later prompt of the other kind is a problem of the prompt as a
    whole, whatever is wrong inside it."""
    result = ReferenceResult([], {})
    prompt_kind: type | None = None
    column = PROMPT_COLUMN[schema]
    for index, raw in enumerate(raw_rows):
        try:
            value = _decode(raw)
        except _Refused:
            result.rows.append(None)
            result.problems[index] = None
            continue
        problem = _CHECKS[schema](value)
        prompt = value.get(column) if isinstance(value, dict) else None
        kind = type(prompt) if isinstance(prompt, (str, list)) else None
        if kind is not None and prompt_kind not in (None, kind):
            # A prompt of the other kind is that, whatever else is wrong inside it.
            if problem is None or _in_prompt(problem.field, column):
                problem = RowProblem(column, "a prompt of another kind than the rows before")
        elif kind is not None and problem is None:
            prompt_kind = kind
        if problem is not None:
            result.rows.append(None)
            result.problems[index] = problem.field
        else:
            assert isinstance(value, dict)
            result.rows.append(_columns(value, schema))
    return result


def _in_prompt(field: str | None, column: str) -> bool:
    return field is not None and (field == column or field.startswith(f"{column}["))


def _columns(row: dict[str, object], schema: str) -> dict[str, object]:
    out: dict[str, object] = {name: row.get(name) for name in _COLUMNS[schema]}
    if schema == "scored":
        responses = row["output"]
        assert isinstance(responses, list)
        out["output"] = [{"text": r["text"], "score": float(r["score"])} for r in responses]
    elif out["margin"] is not None:
        out["margin"] = float(out["margin"])  # type: ignore[arg-type]
    return out


def _decode(raw: bytes) -> object:
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_unique_members,
            parse_constant=_no_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise _Refused(str(err)) from None
    if _depth(value) > MAX_DEPTH:
        raise _Refused("too deep")
    if not _all_strings_encodable(value):
        raise _Refused("a lone surrogate")
    return value


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Refused("duplicate member")
    return dict(pairs)


def _no_constant(name: str) -> float:
    raise _Refused(f"{name} is not JSON")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _Refused("out of the float64 range")
    return number


def _int(text: str) -> int | float:
    number = int(text)
    try:
        float(number)
    except OverflowError:
        raise _Refused("out of the float64 range") from None
    return number


def _depth(value: object) -> int:
    """Nesting depth: a scalar is 0, ``[]`` and ``{}`` are 1."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in _children(item))
    return deepest


def _children(item: list[object] | dict[str, object]) -> list[object]:
    return list(item.values()) if isinstance(item, dict) else item


def _all_strings_encodable(value: object) -> bool:
    """No lone surrogates (``json`` accepts ``"\\ud800"``; UTF-8 cannot hold it)."""
    stack = [value]
    while stack:
        item = stack.pop()
        strings = [item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return False
        if isinstance(item, (list, dict)):
            stack.extend(_children(item))
    return True
