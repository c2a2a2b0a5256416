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
from dataclasses import dataclass

from dpov2.formats.instances import (
    COMPLETIONS,
    PAIRED_EXTRAS,
    PAIRED_MEMBERS,
    RowProblem,
    conversation_messages,
    implicit_prompt,
    paired_extra_problem,
    paired_member_problem,
    paired_row_problem,
    scored_row_problem,
)

__all__ = ["MAX_DEPTH", "PROMPT_COLUMN", "ReferenceResult", "read_rows"]

#: Nesting deeper than this is refused (the reader's stack stays bounded).
MAX_DEPTH = 128
PROMPT_COLUMN = {"scored": "input", "paired": "prompt"}
_COLUMNS = {"scored": ("input", "output"), "paired": ("prompt", "chosen", "rejected", "margin")}


class _Refused(ValueError):
    """A row whose JSON breaks one of the reader's rules."""


@dataclass
class ReferenceResult:
    rows: list[dict[str, object] | None]
    problems: dict[int, str | None]


def read_rows(raw_rows: list[bytes], schema: str) -> ReferenceResult:
    """The rows the reader accepts (only the schema's columns, scores as floats, pairs'
    conversations as their messages with an implicit prompt split off) and the problem rows
    with their field. The kinds (text or messages) of the prompt and of the completions, and
    the optional members a paired file has, are fixed by the first valid row; a later member of
    the other kind is a problem of that member as a whole, whatever is wrong inside it."""
    result = ReferenceResult([], {})
    kinds: dict[str, object] = {"prompt": None, "completion": None, "extras": None}
    for index, raw in enumerate(raw_rows):
        try:
            value = _decode(raw)
        except _Refused:
            result.rows.append(None)
            result.problems[index] = None
            continue
        check = _paired_problem if schema == "paired" else _scored_problem
        problem, found = check(value, kinds)
        if problem is not None:
            result.rows.append(None)
            result.problems[index] = problem.field
        else:
            assert isinstance(value, dict)
            kinds.update({kind: found[kind] for kind in found if kinds[kind] is None})
            result.rows.append(_columns(value, schema, kinds["extras"]))
    return result


def _kind(value: object, member: str) -> type | None:
    """``str`` for text, ``list`` for chat messages (for a completion, LMFlow's conversation
    object too), ``None`` for what is neither."""
    if isinstance(value, str):
        return str
    allowed = (list, dict) if member in COMPLETIONS else (list,)
    return list if isinstance(value, allowed) else None


def _scored_problem(
    value: object, kinds: dict[str, object]
) -> tuple[RowProblem | None, dict[str, object]]:
    problem = scored_row_problem(value)
    kind = _kind(value.get("input"), "input") if isinstance(value, dict) else None
    mismatch = kind is not None and kinds["prompt"] not in (None, kind)
    if mismatch and (problem is None or _in_member(problem.field, "input")):
        problem = RowProblem("input", "a prompt of another kind than the rows before")
    return problem, {"prompt": kind, "completion": None}


def _paired_problem(
    value: object, kinds: dict[str, object]
) -> tuple[RowProblem | None, dict[str, object]]:
    """The fault the reader meets first: members in the row's order (a member of another
    kind than the rows before is refused before its inside is read), then the row's own."""
    if not isinstance(value, dict):
        return paired_row_problem(value), {}
    held = kinds["extras"]
    for name in value:
        if name in PAIRED_EXTRAS:
            problem = paired_extra_problem(value, name, held is None or name in held)  # type: ignore[operator]
            if problem is not None:
                return problem, {}
            continue
        if name not in PAIRED_MEMBERS:
            continue
        kind = _kind(value[name], name)
        fixed = kinds["completion" if name in COMPLETIONS else "prompt"]
        if name != "margin" and kind is not None and fixed not in (None, kind):
            return RowProblem(name, "a member of another kind than the rows before"), {}
        problem = paired_member_problem(value, name)
        if problem is not None:
            return problem, {}
    problem = paired_row_problem(value)
    completion = _kind(value.get("chosen"), "chosen")
    prompt = _kind(value["prompt"], "prompt") if "prompt" in value else completion
    extras = [name for name in PAIRED_EXTRAS if name in value]
    return problem, {"prompt": prompt, "completion": completion, "extras": extras}


def _in_member(field: str | None, column: str) -> bool:
    return field is not None and (field == column or field.startswith(f"{column}["))


def _columns(row: dict[str, object], schema: str, extras: object) -> dict[str, object]:
    """The row's values as the reader returns them; ``extras``: the optional members the file
    has (paired rows)."""
    out: dict[str, object] = {name: row.get(name) for name in _COLUMNS[schema]}
    if schema == "scored":
        responses = row["output"]
        assert isinstance(responses, list)
        out["output"] = [{"text": r["text"], "score": float(r["score"])} for r in responses]
        return out
    if out["margin"] is not None:
        out["margin"] = float(out["margin"])  # type: ignore[arg-type]
    assert isinstance(extras, list)
    for name in extras:
        value = row.get(name)
        out[name] = (
            float(value) if PAIRED_EXTRAS[name] == "float64" and value is not None else value
        )  # type: ignore[arg-type]
    if not isinstance(row["chosen"], str):
        chosen = conversation_messages(row["chosen"])
        rejected = conversation_messages(row["rejected"])
        if "prompt" not in row:
            shared = implicit_prompt(chosen, rejected)
            assert isinstance(shared, int)
            out["prompt"] = chosen[:shared]
            chosen, rejected = chosen[shared:], rejected[shared:]
        out["chosen"], out["rejected"] = chosen, rejected
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
