"""The Rust JSON reader against the test-side reference (:mod:`json_reference`): on random
rows, valid and broken one way each, through both framings and both schemas, with random batch
limits and thread counts, it accepts exactly the reference's rows and names the same problem
rows (and, for problems of the schema, the same field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_reference import MAX_DEPTH, read_rows

from dpov2.errors import InputError
from dpov2.formats.instances import PAIRED_EXTRAS, PAIRED_TYPE, SCORED_TYPE
from dpov2.formats.json_reader import FRAMINGS, SCHEMAS, JsonReader

TYPES = {"scored": SCORED_TYPE, "paired": PAIRED_TYPE}

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**30), 10**30),
)
extras = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
messages = st.lists(st.fixed_dictionaries({"role": texts, "content": texts}), max_size=3)
#: Valid values of each type of optional member of a paired row (null aside).
EXTRA_VALUES = {
    "float64": numbers,
    "int64": st.integers(-(2**63), 2**63 - 1),
    "string": texts,
}


#: How a dataset's rows are written: a scored one, text or chat prompts; a paired one also
#: with chat completions (explicit prompt, implicit prompt, LMFlow's conversation objects).
STYLES = {
    "scored": ("text", "chat"),
    "paired": ("text", "chat", "conversational", "implicit", "conversation"),
}


@st.composite
def rows_of(
    draw: st.DrawFn, schema: str, style: str, extra_names: tuple[str, ...] = ()
) -> dict[str, object]:
    """A valid row; a paired one with some of ``extra_names`` (or, now and then, of any optional
    member: a later row with one the first row lacks is a problem unless it is null)."""
    prompt: object = draw(messages) if style != "text" else draw(texts)
    if schema == "scored":
        responses = draw(
            st.lists(st.fixed_dictionaries({"text": texts, "score": numbers}), max_size=4)
        )
        row: dict[str, object] = {"input": prompt, "output": responses}
    elif style in ("text", "chat"):
        row = {"prompt": prompt, "chosen": draw(texts), "rejected": draw(texts)}
    elif style == "conversational":
        row = {"prompt": prompt, "chosen": draw(messages), "rejected": draw(messages)}
    else:
        shared = draw(messages.filter(bool))
        chosen, rejected = shared + draw(messages), shared + draw(messages)
        row = {"chosen": chosen, "rejected": rejected}
        if style == "conversation":
            system = draw(st.none() | texts)
            row = {
                name: {"messages": value, "system": system, "conversation_id": draw(texts)}
                for name, value in row.items()
            }
    if schema == "paired" and draw(st.booleans()):
        row["margin"] = draw(st.none() | numbers)
    if schema == "paired":
        names = draw(st.sampled_from([extra_names, extra_names, extra_names, tuple(PAIRED_EXTRAS)]))
        for name in names:
            if draw(st.integers(0, 3)):
                row[name] = draw(st.none() | EXTRA_VALUES[PAIRED_EXTRAS[name]])
    if draw(st.booleans()):
        row["meta"] = draw(extras)
    keys = draw(st.permutations(list(row)))
    return {key: row[key] for key in keys}


def encode(row: object, ascii_only: bool) -> bytes:
    return json.dumps(row, ensure_ascii=ascii_only).encode()


def schema_defects(row: dict[str, object], schema: str) -> list[tuple[str, dict[str, object]]]:
    """Broken copies of a valid row, each with the one field at fault."""
    prompt = "input" if schema == "scored" else "prompt"
    broken: list[tuple[str, dict[str, object]]] = []

    def with_(field: str, **changes: object) -> None:
        copy = dict(row)
        for key, value in changes.items():
            if value is _DROP:
                copy.pop(key, None)
            else:
                copy[key] = value
        broken.append((field, copy))

    with_(prompt, **{prompt: _DROP})
    with_(prompt, **{prompt: None})
    with_(prompt, **{prompt: 3})
    with_(f"{prompt}[0]", **{prompt: ["hi"]})
    with_(f"{prompt}[0].role", **{prompt: [{"content": "x"}]})
    with_(f"{prompt}[0].name", **{prompt: [{"role": "u", "content": "x", "name": "n"}]})
    if schema == "scored":
        with_("output", output=_DROP)
        with_("output", output="text")
        with_("output[0]", output=[1])
        with_("output[0].text", output=[{"score": 1}])
        with_("output[0].text", output=[{"text": 5, "score": 1}])
        with_("output[1].score", output=[{"text": "a", "score": 1}, {"text": "b", "score": "1"}])
        with_("output[0].score", output=[{"text": "a", "score": True}])
        with_("output[0].score", output=[{"text": "a", "score": None}])
    else:
        with_("chosen", chosen=_DROP)
        with_("rejected[0]", rejected=[1])
        with_("rejected", rejected=5)
        with_("margin", margin="big")
        with_("chosen_score", chosen_score=True)
        with_("rejected_index", rejected_index=1.0)
        with_("chosen_index", chosen_index=2**63)
        with_("ref_chosen_logps", ref_chosen_logps="-1")
        with_("ref_logps_tag", ref_logps_tag=1)
        chat = [{"role": "user", "content": "q"}]
        with_("chosen[0].content", chosen=[{"role": "a", "content": 1}], rejected=chat)
        with_("rejected.messages", rejected={"system": "s"}, chosen=chat)
        with_("chosen.tools", chosen={"messages": chat, "tools": ["t"]}, rejected=chat)
        with_("rejected", rejected=chat)  # a string chosen beside it
        with_("prompt", prompt=_DROP, chosen=chat, rejected=[{"role": "user", "content": "r"}])
        with_("chosen", prompt=_DROP, chosen=chat, rejected=chat + chat)
    return broken


_DROP = object()

# Breaks of the JSON itself, on the raw bytes: (name, transform, survives LMFlow's scan).
RAW_DEFECTS = [
    ("not an object", lambda raw: b"[" + raw + b"]", True),
    ("a string row", lambda raw: b'"row"', True),
    ("duplicate member", lambda raw: raw[:-1] + b', "meta": 1, "meta": 2}', True),
    ("invalid UTF-8", lambda raw: raw[:-1] + b', "meta": "\xff\xfe"}', True),
    ("lone surrogate", lambda raw: raw[:-1] + b', "meta": "\\ud800"}', True),
    ("raw control byte", lambda raw: raw[:-1] + b', "meta": "a\x01b"}', True),
    ("NaN literal", lambda raw: raw[:-1] + b', "meta": NaN}', True),
    ("huge number", lambda raw: raw[:-1] + b', "meta": 1e400}', True),
    ("huge integer", lambda raw: raw[:-1] + b', "meta": 1' + b"0" * 400 + b"}", True),
    ("trailing comma", lambda raw: raw[:-1] + b", }", True),
    ("too deep", lambda raw: raw[:-1] + b', "meta": ' + b"[" * 200 + b"]" * 200 + b"}", True),
    ("deep enough", lambda raw: raw[:-1] + b', "meta": ' + b"[" * 100 + b"]" * 100 + b"}", True),
    ("trailing data", lambda raw: raw + b" 1", False),
    ("truncated", lambda raw: raw[: len(raw) // 2], False),
]


@st.composite
def datasets(draw: st.DrawFn, framing: str, schema: str) -> list[bytes]:
    style = draw(st.sampled_from(STYLES[schema]))
    extra_names = tuple(draw(st.sets(st.sampled_from(list(PAIRED_EXTRAS)))))
    raw_rows: list[bytes] = []
    for _ in range(draw(st.integers(0, 12))):
        row = draw(rows_of(schema, style, extra_names))
        ascii_only = draw(st.booleans())
        choice = draw(st.integers(0, 4))
        if choice == 0:
            _, broken = draw(st.sampled_from(schema_defects(row, schema)))
            raw_rows.append(encode(broken, ascii_only))
        elif choice == 1:
            usable = [d for d in RAW_DEFECTS if framing == "lines" or d[2]]
            _, transform, _ = draw(st.sampled_from(usable))
            raw_rows.append(transform(encode(row, ascii_only)))
        else:
            raw_rows.append(encode(row, ascii_only))
    return raw_rows


def write(path: Path, raw_rows: list[bytes], framing: str, schema: str, crlf: bool) -> None:
    if framing == "lines":
        end = b"\r\n" if crlf else b"\n"
        body = b"".join(
            raw + end + (b"  \t\n" if i % 3 == 2 else b"") for i, raw in enumerate(raw_rows)
        )
        path.write_bytes((b"\xef\xbb\xbf" if crlf else b"") + body)
    else:
        header = b'{"type": "' + TYPES[schema].encode() + b'", "instances": [\n'
        path.write_bytes(header + b",\n".join(raw_rows) + b"\n]}\n")


def read_with_rust(
    path: Path, framing: str, schema: str, batch_size: int, max_bytes: int, threads: int
) -> tuple[list[dict[str, object] | None], dict[int, str | None]]:
    reader = JsonReader(
        path,
        framing=framing,
        schema=schema,
        batch_size=batch_size,
        threads=threads,
        max_bytes=max_bytes,
    )
    rows: list[dict[str, object] | None] = []
    problems: dict[int, str | None] = {}
    for batch in reader:
        assert batch.first_row == len(rows)
        for i, row in enumerate(batch.table.to_pylist()):
            if i in batch.problems:
                assert all(v is None for v in row.values())
                problems[batch.first_row + i] = batch.problems[i].field
                rows.append(None)
            else:
                rows.append(row)
    return rows, problems


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("framing", FRAMINGS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_reader_accepts_and_refuses_what_the_reference_does(
    tmp_path_factory: pytest.TempPathFactory, framing: str, schema: str, data: st.DataObject
) -> None:
    raw_rows = data.draw(datasets(framing, schema))
    path = tmp_path_factory.mktemp("r") / ("d.jsonl" if framing == "lines" else "d.json")
    write(path, raw_rows, framing, schema, crlf=data.draw(st.booleans()))
    expected = read_rows(raw_rows, schema)
    rows, problems = read_with_rust(
        path,
        framing,
        schema,
        batch_size=data.draw(st.integers(1, 20)),
        max_bytes=data.draw(st.sampled_from([1, 64, 1 << 20])),
        threads=data.draw(st.integers(1, 3)),
    )
    assert sorted(problems) == sorted(expected.problems)
    for row, field in expected.problems.items():
        if field is not None:
            assert problems[row] == field, (row, raw_rows[row])
    assert rows == expected.rows


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("framing", FRAMINGS)
def test_each_defect_of_the_schema_is_named_by_its_field(
    tmp_path: Path, framing: str, schema: str
) -> None:
    """The reference and the reader both name the one field each defect breaks, and read the
    valid row after it."""
    valid: dict[str, object] = (
        {"input": "p", "output": [{"text": "a", "score": 1}]}
        if schema == "scored"
        else {"prompt": "p", "chosen": "a", "rejected": "b", "margin": 1.0}
    )
    for field, broken in schema_defects(valid, schema):
        # First in its file, so that no earlier row fixes the prompt kind.
        raw_rows = [encode(broken, True), encode(valid, True)]
        assert read_rows(raw_rows, schema).problems == {0: field}
        path = tmp_path / ("d.jsonl" if framing == "lines" else "d.json")
        write(path, raw_rows, framing, schema, crlf=False)
        assert read_with_rust(path, framing, schema, 100, 1 << 20, 1)[1] == {0: field}, broken


def test_the_reference_refuses_what_each_raw_defect_breaks() -> None:
    """The reference itself can fail: each raw defect (but the one within the depth limit)
    makes it refuse a valid row."""
    raw = encode({"input": "p", "output": []}, True)
    for name, transform, _ in RAW_DEFECTS:
        refused = read_rows([transform(raw)], "scored").problems == {0: None}
        assert refused == (name != "deep enough"), name
    assert MAX_DEPTH == 128


@pytest.mark.parametrize("framing", FRAMINGS)
def test_nesting_a_million_deep_is_a_row_problem_not_a_crash(tmp_path: Path, framing: str) -> None:
    deep = b'{"input": "p", "output": [], "meta": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}"
    good = encode({"input": "q", "output": [{"text": "a", "score": 1}]}, True)
    path = tmp_path / ("d.jsonl" if framing == "lines" else "d.json")
    write(path, [deep, good], framing, "scored", crlf=False)
    rows, problems = read_with_rust(path, framing, "scored", 10, 1 << 20, 2)
    assert list(problems) == [0]
    assert rows[1] == {"input": "q", "output": [{"text": "a", "score": 1.0}]}


def test_problems_carry_row_field_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = b'{"input": "p", "output": []}\n'
    bad = b'{"input": "p", "output": [{"text": "a", "score": "high"}]}\n'
    path.write_bytes(good + bad)
    batch = next(iter(JsonReader(path, framing="lines", schema="scored", batch_size=10)))
    problem = batch.problems[1]
    assert problem.field == "output[0].score"
    assert problem.byte is not None and len(good) <= problem.byte < len(good + bad)
    error = problem.error(str(path), 1)
    assert isinstance(error, InputError) and error.byte == problem.byte
