"""Scored instances to pairs: the fast and reference paths agree row for row, batching changes
nothing, the values are LMFlow's, and TRL's DPOTrainer takes the result."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plain_trl import plain_trl_trainer

from dpov2.convert import (
    Outcome,
    PairOptions,
    PairSummary,
    convert_to_paired_dataset,
    fast,
    reference,
    write_pairs,
)
from dpov2.convert.lengths import TokenLengths, length_unit
from dpov2.convert.summary import SAMPLE_SIZE
from dpov2.errors import InputError
from dpov2.formats import ScoredBatch, open_scored
from dpov2.formats.instances import OUTPUT_TYPE, RowProblem
from dpov2.pairing import METHODS

SCHEMA = pa.schema([("input", pa.string()), ("output", OUTPUT_TYPE)])

ROWS = [
    {
        "input": "q0",
        "output": [
            {"text": "bad", "score": -1.0},
            {"text": "best", "score": 2.0},
            {"text": "ok", "score": 0.5},
        ],
    },
    {"input": "q1", "output": [{"text": "only", "score": 1.0}]},
    {"input": "q2", "output": [{"text": "same", "score": 1.0}, {"text": "same too", "score": 1.0}]},
    {"input": "q3", "output": []},
    {
        "input": "q4",
        "output": [{"text": "a much longer answer", "score": 1.0}, {"text": "short", "score": 0.9}],
    },
]


def batch(rows: list[dict[str, object]], first_row: int = 0, **problems: RowProblem) -> ScoredBatch:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return ScoredBatch(table, first_row, len(rows), {int(k[1:]): p for k, p in problems.items()})


def pair_both(b: ScoredBatch, options: PairOptions, key_offset: int = 0) -> tuple[object, object]:
    return (
        fast.pair_batch(b, options, "f", key_offset=key_offset),
        reference.pair_batch(b, options, "f", key_offset=key_offset),
    )


def assert_same(one: object, other: object) -> None:
    assert one.table.equals(other.table), (one.table.to_pylist(), other.table.to_pylist())  # type: ignore[attr-defined]
    for name in ("outcomes", "margins", "rows"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name))


def test_max_min_pairs_best_with_worst_and_margins_are_raw_score_differences() -> None:
    options = PairOptions(method="max_min", margin_scale=2.0, provenance=True)
    result, ref = pair_both(batch(ROWS), options)
    assert_same(result, ref)
    assert result.table.to_pylist() == [
        {
            "prompt": "q0",
            "chosen": "best",
            "rejected": "bad",
            "margin": 6.0,
            "chosen_score": 2.0,
            "rejected_score": -1.0,
            "chosen_index": 1,
            "rejected_index": 0,
        },
        {
            "prompt": "q4",
            "chosen": "a much longer answer",
            "rejected": "short",
            "margin": pytest.approx(0.2),
            "chosen_score": 1.0,
            "rejected_score": 0.9,
            "chosen_index": 0,
            "rejected_index": 1,
        },
    ]
    assert result.outcomes.tolist() == [
        Outcome.PAIRED,
        Outcome.TOO_FEW_RESPONSES,
        Outcome.TIE,
        Outcome.TOO_FEW_RESPONSES,
        Outcome.PAIRED,
    ]
    assert result.rows.tolist() == [0, 4]


def test_ties_are_kept_on_request_with_a_zero_margin() -> None:
    result, ref = pair_both(batch(ROWS), PairOptions(method="max_max", keep_ties=True))
    assert_same(result, ref)
    assert result.table.to_pylist()[1] == {
        "prompt": "q2",
        "chosen": "same",
        "rejected": "same too",
        "margin": 0.0,
    }


def test_length_penalty_in_characters_reorders_and_margin_can_use_penalised_rewards() -> None:
    # 0.01 per character: "a much longer answer" (20) scores 0.8 < "short" (5) 0.85.
    options = PairOptions(method="max_min", length_penalty=0.01, margin_from="penalized")
    result, ref = pair_both(batch(ROWS), options)
    assert_same(result, ref)
    q4 = result.table.to_pylist()[-1]
    assert (q4["chosen"], q4["rejected"]) == ("short", "a much longer answer")
    assert q4["margin"] == pytest.approx((0.9 - 0.05) - (1.0 - 0.2))
    raw = fast.pair_batch(batch(ROWS), PairOptions(method="max_min", length_penalty=0.01), "f")
    assert raw.table.to_pylist()[-1]["margin"] == pytest.approx(0.9 - 1.0)


def test_lengths_count_code_points_not_bytes() -> None:
    rows = [
        {"input": "p", "output": [{"text": "ééé", "score": 1.0}, {"text": "abcd", "score": 1.0}]}
    ]
    # By characters "ééé" (3) beats "abcd" (4); by UTF-8 bytes (6) it would lose.
    result, ref = pair_both(batch(rows), PairOptions(method="max_min", length_penalty=1.0))
    assert_same(result, ref)
    assert result.table.column("chosen").to_pylist() == ["ééé"]


def test_lengths_in_tokens_of_a_tokenizer() -> None:
    from dpov2.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    unit = length_unit(tokenizer)
    assert isinstance(unit, TokenLengths)
    texts = ["good good good", "zqxjv"]
    tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert tokens[0] < tokens[1]  # more characters, fewer tokens: common words are merged
    assert unit.measure(pa.array(texts)).tolist() == tokens
    assert [unit.measure_one(t) for t in texts] == tokens
    rows = [{"input": "p", "output": [{"text": t, "score": 0.0} for t in texts]}]
    result, ref = pair_both(
        batch(rows), PairOptions(method="max_min", length_penalty=1.0, length_unit=unit)
    )
    assert_same(result, ref)
    assert result.table.column("chosen").to_pylist() == ["good good good"]


def test_min_margin_drops_close_pairs() -> None:
    result, ref = pair_both(batch(ROWS), PairOptions(method="max_min", min_margin=0.5))
    assert_same(result, ref)
    assert result.table.column("prompt").to_pylist() == ["q0"]
    assert result.outcomes[4] == Outcome.BELOW_MIN_MARGIN


def test_sliced_tables_are_read_from_their_own_offset() -> None:
    options = PairOptions(method="max_min", provenance=True)
    sliced = ScoredBatch(pa.Table.from_pylist(ROWS, schema=SCHEMA).slice(3), 3, 2)
    assert_same(
        fast.pair_batch(sliced, options, "f"), fast.pair_batch(batch(ROWS[3:], 3), options, "f")
    )
    assert_same(fast.pair_batch(sliced, options, "f"), reference.pair_batch(sliced, options, "f"))


@pytest.mark.parametrize("path", [fast, reference], ids=["fast", "reference"])
def test_a_key_offset_draws_as_rows_that_far_on_but_errors_name_the_row_in_the_file(
    path: object,
) -> None:
    options = PairOptions(method="random", seed=9, skip_invalid=True)
    shifted = path.pair_batch(batch(ROWS * 20, 7), options, "f", key_offset=1000)  # type: ignore[attr-defined]
    moved = path.pair_batch(batch(ROWS * 20, 1007), options, "f")  # type: ignore[attr-defined]
    assert_same(shifted, moved)
    assert shifted.rows[0] == 1007
    unshifted = path.pair_batch(batch(ROWS * 20, 7), options, "f")  # type: ignore[attr-defined]
    assert not shifted.table.equals(unshifted.table)  # the draws did change
    bad = [ROWS[0], {"input": "x", "output": [{"text": "t", "score": None}]}]
    with pytest.raises(InputError, match=r"^f: row 8, field 'output\[0\]\.score'"):
        path.pair_batch(batch(bad, 7), PairOptions(), "f", key_offset=1000)  # type: ignore[attr-defined]


def test_invalid_rows_stop_the_run_naming_row_and_field() -> None:
    rows = [*ROWS, {"input": "bad", "output": [{"text": "x", "score": None}]}]
    for path in (fast, reference):
        with pytest.raises(
            InputError, match=r"^f: row 105, field 'output\[0\]\.score': null; expected a number"
        ):
            path.pair_batch(batch(rows, first_row=100), PairOptions(), "f")


def test_the_first_invalid_row_is_reported_whoever_found_it() -> None:
    rows = [ROWS[0], {"input": None, "output": None}, {"input": None, "output": []}]
    problem = RowProblem(None, "malformed JSON: Expecting value")
    for path in (fast, reference):
        with pytest.raises(InputError, match=r"^f: row 1: malformed JSON"):
            path.pair_batch(batch(rows, r1=problem), PairOptions(), "f")


def test_skipped_invalid_rows_keep_the_other_rows_draws() -> None:
    invalid = [
        {"input": "x", "output": [{"text": "t", "score": math.inf}]},
        {"input": None, "output": []},
    ]
    options = PairOptions(method="random", skip_invalid=True, seed=3)
    clean = fast.pair_batch(batch(ROWS), options, "f")
    mixed_rows = [ROWS[0], invalid[0], ROWS[2], invalid[1], ROWS[4]]
    result, ref = pair_both(batch(mixed_rows), options)
    assert_same(result, ref)
    assert result.outcomes.tolist()[1::2] == [Outcome.INVALID, Outcome.INVALID]
    # Rows 0, 2 and 4 drew with their own keys, as in the clean run.
    assert result.table.to_pylist() == [clean.table.to_pylist()[0], clean.table.to_pylist()[-1]]


scores = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]), st.floats(-1e6, 1e6, allow_nan=False))
bad_scores = st.sampled_from([None, math.nan, math.inf])
responses = st.fixed_dictionaries(
    {
        "text": st.one_of(st.text(max_size=8), st.none()),
        "score": st.one_of(scores, scores, scores, bad_scores),
    }
)
rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "input": st.one_of(st.text(max_size=5), st.text(max_size=5), st.none()),
            "output": st.one_of(
                st.lists(st.one_of(responses, responses, responses, st.none()), max_size=5),
                st.none(),
            ),
        }
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    rows=rows_strategy,
    method=st.sampled_from(METHODS),
    penalty=st.sampled_from([0.0, 0.25, -0.1]),
    keep_ties=st.booleans(),
    min_margin=st.sampled_from([None, 0.0, 0.3]),
    margin_from=st.sampled_from(["raw", "penalized"]),
    seed=st.integers(0, 2**64 - 1),
    first_row=st.integers(0, 10**6),
    key_offset=st.sampled_from([0, 1, 10**12]),
    more=st.fixed_dictionaries(
        {},
        optional={
            "tie_order": st.sampled_from(["dpov2", "lmflow"]),
            "pairs_per_prompt": st.integers(1, 4),
            "max_length_ratio": st.sampled_from([1.0, 2.0]),
            "max_length_diff": st.sampled_from([0.0, 3.0]),
            "key": st.sampled_from(["row", "content"]),
        },
    ),
)
def test_fast_and_reference_paths_agree(
    rows: list[dict[str, object]],
    method: str,
    penalty: float,
    keep_ties: bool,
    min_margin: float | None,
    margin_from: str,
    seed: int,
    first_row: int,
    key_offset: int,
    more: dict[str, Any],
) -> None:
    options = PairOptions(
        method=method,
        length_penalty=penalty,
        keep_ties=keep_ties,
        min_margin=min_margin,
        margin_from=margin_from,
        seed=seed,
        skip_invalid=True,
        provenance=True,
        **more,
    )
    result, ref = pair_both(batch(rows, first_row), options, key_offset)
    assert_same(result, ref)
    strict = PairOptions(method=method, seed=seed)
    errors = []
    for path in (fast, reference):
        try:
            path.pair_batch(batch(rows, first_row), strict, "f")
        except InputError as err:
            errors.append(str(err))
    assert len(errors) in (0, 2) and len(set(errors)) <= 1  # both raise the same error, or neither


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, sizes=st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_any_batching_gives_the_same_pairs_and_summary(
    rows: list[dict[str, object]], sizes: list[int]
) -> None:
    options = PairOptions(method="random", skip_invalid=True, seed=11)
    whole = fast.pair_batch(batch(rows), options, "f")
    tables, summary, start, k = [], PairSummary(), 0, 0
    while start < len(rows):
        size = sizes[k % len(sizes)]
        part = fast.pair_batch(batch(rows[start : start + size], start), options, "f")
        tables.append(part.table)
        summary.add(part.outcomes, part.margins, part.rows)
        start, k = start + size, k + 1
    joined = pa.concat_tables(tables) if tables else whole.table
    assert joined.to_pylist() == whole.table.to_pylist()
    one = PairSummary()
    one.add(whole.outcomes, whole.margins, whole.rows)
    assert (summary.outcomes, summary.margin_quantiles()) == (
        one.outcomes,
        one.margin_quantiles(),
    ) or (not rows)


def test_summary_quantiles_are_exact_up_to_the_sample_size_then_sampled() -> None:
    rng = np.random.default_rng(0)
    margins = rng.normal(size=3 * SAMPLE_SIZE)
    small = PairSummary()
    small.add(np.zeros(1000, np.uint8), margins[:1000], np.arange(1000))
    assert small.margin_quantiles((0.5,))[0.5] == pytest.approx(float(np.median(margins[:1000])))
    big, other = PairSummary(), PairSummary()
    for start in range(0, len(margins), 5000):
        part = slice(start, start + 5000)
        big.add(
            np.zeros(len(margins[part]), np.uint8), margins[part], np.arange(len(margins))[part]
        )
    for start in range(0, len(margins), 777):
        part = slice(start, start + 777)
        other.add(
            np.zeros(len(margins[part]), np.uint8), margins[part], np.arange(len(margins))[part]
        )
    assert (
        big.margin_quantiles() == other.margin_quantiles()
    )  # the same sample, whatever the batches
    assert big.margin_quantiles((0.5,))[0.5] == pytest.approx(np.median(margins), abs=0.02)
    assert big.pairs_written == len(margins) and big.margin_min == margins.min()
    assert big.margin_mean == pytest.approx(margins.mean())


@settings(max_examples=100, deadline=None)
@given(
    margins=st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([0.1, -0.3])),
        min_size=1,
        max_size=60,
    ),
    cut=st.integers(0, 60),
)
def test_summary_mean_is_the_exact_mean_rounded_whatever_the_grouping_and_order(
    margins: list[float], cut: int
) -> None:
    values = np.array(margins)
    rows = np.arange(len(values))
    whole, split = PairSummary(), PairSummary()
    whole.add(np.zeros(len(values), np.uint8), values, rows)
    for part in (slice(cut, None), slice(0, cut)):  # the second half first
        split.add(np.zeros(len(values[part]), np.uint8), values[part][::-1], rows[part][::-1])
    exact = sum(map(Fraction, margins), Fraction(0)) / len(margins)
    assert whole.margin_mean == split.margin_mean == float(exact)


def test_summary_mean_of_overflowed_margins_is_infinite_or_nan() -> None:
    for margins, mean in (([1.0, math.inf], math.inf), ([-math.inf, 2.0], -math.inf)):
        summary = PairSummary()
        summary.add(np.zeros(2, np.uint8), np.array(margins), np.arange(2))
        assert summary.margin_mean == mean
    summary = PairSummary()
    summary.add(np.zeros(2, np.uint8), np.array([math.inf, -math.inf]), np.arange(2))
    assert math.isnan(summary.margin_mean)


def test_summary_counts_drops_by_reason() -> None:
    result = fast.pair_batch(batch(ROWS), PairOptions(method="max_min", min_margin=0.5), "f")
    summary = PairSummary()
    summary.add(result.outcomes, result.margins, result.rows)
    assert summary.prompts_read == 5 and summary.pairs_written == 1
    assert summary.dropped == {
        "too_few_responses": 2,
        "tie": 1,
        "duplicate_responses": 0,
        "below_min_margin": 1,
        "length_limits": 0,
        "invalid": 0,
        "non_finite_margin": 0,
    }
    lines = summary.lines()
    assert lines[:3] == [
        "prompts read: 5",
        "pairs written: 1",
        "prompts dropped: 4 (2 too few responses, 1 tie, 0 duplicate responses, 1 below min "
        "margin, 0 length limits, 0 invalid, 0 non finite margin)",
    ]
    assert lines[3].startswith("margin: mean 3  min 3  p5 3")


def test_options_are_checked() -> None:
    with pytest.raises(InputError, match="unknown sampling method 'best'; expected one of: random"):
        PairOptions(method="best")
    with pytest.raises(InputError, match="length penalty must be a finite number, got nan"):
        PairOptions(length_penalty=math.nan)
    with pytest.raises(InputError, match="unknown margin source 'x'"):
        PairOptions(margin_from="x")
    with pytest.raises(InputError, match="seed must be an integer in"):
        PairOptions(seed=-1)
    with pytest.raises(InputError, match="no such folder; expected a local tokenizer folder"):
        length_unit("/nonexistent/tokenizer")


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_convert_to_paired_dataset_gives_the_same_pairs_from_every_source(tmp_path: Path) -> None:
    import datasets

    source = datasets.Dataset.from_list(ROWS)
    expected = convert_to_paired_dataset(source, sampling_paired_method="max_min")
    assert expected.column_names == ["prompt", "chosen", "rejected", "margin"]
    assert expected["chosen"] == ["best", "a much longer answer"]
    source.save_to_disk(str(tmp_path / "saved"))
    source.to_parquet(str(tmp_path / "d.parquet"))
    for path in (
        write_jsonl(tmp_path / "d.jsonl", ROWS),
        tmp_path / "d.parquet",
        tmp_path / "saved",
    ):
        for use_fast in (True, False):
            got = convert_to_paired_dataset(
                path, sampling_paired_method="max_min", use_fast=use_fast, batch_size=2
            )
            assert got.to_list() == expected.to_list()


def test_convert_to_paired_dataset_takes_every_pair_option(tmp_path: Path) -> None:
    """Each keyword reaches the pairing: the dataset holds what ``write_pairs`` writes with
    the same options, and the options change it (all pairs of q0, none over the ratio)."""
    import datasets

    keywords: dict[str, Any] = {
        "tie_order": "lmflow",
        "pairs_per_prompt": 3,
        "max_length_ratio": 3.0,
        "max_length_diff": 50.0,
        "key": "content",
    }
    got = convert_to_paired_dataset(
        write_jsonl(tmp_path / "d.jsonl", ROWS),
        sampling_paired_method="all_pairs",
        provenance=True,
        **keywords,
    )
    options = PairOptions(method="all_pairs", provenance=True, **keywords)
    rows = datasets.Dataset.from_list(ROWS)
    write_pairs(open_scored(rows), tmp_path / "pairs.parquet", options)
    assert got.to_list() == datasets.Dataset.from_parquet(str(tmp_path / "pairs.parquet")).to_list()
    # q0's three pairs; q4's lengths 20 and 5 are more than 3 apart as a ratio. By default,
    # one pair per prompt and no length limit:
    assert got["prompt"] == ["q0", "q0", "q0"]
    plain = convert_to_paired_dataset(rows, sampling_paired_method="all_pairs")
    assert plain["prompt"] == ["q0", "q4"]


def _scored_rows(prompt: Callable[[int], Any]) -> list[dict[str, Any]]:
    return [
        {
            "input": prompt(i),
            "output": [
                {"text": "yes, this is good", "score": 1.0},
                {"text": "no", "score": -1.0},
                {"text": "maybe", "score": 0.0},
            ],
        }
        for i in range(8)
    ]


def test_trl_dpo_trainer_accepts_the_pairs(tmp_path: Path) -> None:
    rows = _scored_rows(lambda i: f"Question {i}: is this good?")
    pairs = convert_to_paired_dataset(
        write_jsonl(tmp_path / "s.jsonl", rows), sampling_paired_method="max_min"
    )
    trainer = plain_trl_trainer(pairs, tmp_path)
    tokenizer = trainer.processing_class
    tokenized = trainer.train_dataset[0]
    assert tokenized["prompt_ids"] == tokenizer(pairs[0]["prompt"])["input_ids"]
    chosen_ids = tokenizer("yes, this is good")["input_ids"][1:]  # no bos
    assert tokenized["chosen_ids"] == [*chosen_ids, tokenizer.eos_token_id]
    assert tokenized["rejected_ids"][-1] == tokenizer.eos_token_id
    result = trainer.train()
    assert math.isfinite(result.training_loss)


def test_chat_prompts_give_trl_conversational_pairs(tmp_path: Path) -> None:
    rows = _scored_rows(lambda i: [{"role": "user", "content": f"Question {i}: is this good?"}])
    pairs = convert_to_paired_dataset(
        write_jsonl(tmp_path / "s.jsonl", rows), sampling_paired_method="max_min"
    )
    assert pairs[3] == {
        "prompt": [{"role": "user", "content": "Question 3: is this good?"}],
        "chosen": [{"role": "assistant", "content": "yes, this is good"}],
        "rejected": [{"role": "assistant", "content": "no"}],
        "margin": 2.0,
    }
    trainer = plain_trl_trainer(pairs, tmp_path)
    tokenizer = trainer.processing_class
    prompt_ids = tokenizer.apply_chat_template(
        pairs[0]["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert trainer.train_dataset[0]["prompt_ids"] == prompt_ids
    assert trainer.train_dataset[0]["chosen_ids"][-1] == tokenizer.eos_token_id


def test_the_api_never_writes_over_its_input(tmp_path: Path) -> None:
    source = tmp_path / "scored.jsonl"
    source.write_text('{"input": "p", "output": [{"text": "a", "score": 1}]}\n')
    before = source.read_bytes()
    with pytest.raises(InputError, match="OUTPUT is the input"):
        write_pairs(open_scored(source), source, PairOptions(), overwrite=True)
    assert source.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scored.jsonl"]


def test_copies_of_a_text_are_one_candidate_and_never_a_pair() -> None:
    rows = [
        {"input": "a", "output": [{"text": "x", "score": 1.0}, {"text": "x", "score": 5.0}]},
        {
            "input": "b",
            "output": [
                {"text": "y", "score": 0.0},
                {"text": "y ", "score": 2.0},  # not a copy: byte-equal only
                {"text": "y", "score": 9.0},
            ],
        },
    ]
    for result in pair_both(batch(rows), PairOptions(method="all_pairs", pairs_per_prompt=9)):
        assert result.outcomes.tolist() == [Outcome.DUPLICATE_RESPONSES, Outcome.PAIRED]  # type: ignore[attr-defined]
        pairs = result.table.to_pylist()  # type: ignore[attr-defined]
        assert [(p["chosen"], p["rejected"]) for p in pairs] == [("y ", "y")]


@settings(max_examples=40, deadline=None)
@given(
    rows=rows_strategy,
    method=st.sampled_from(METHODS),
    order=st.randoms(use_true_random=False),
    seed=st.integers(0, 2**64 - 1),
)
def test_content_keys_give_each_instance_its_pairs_in_any_row_order(
    rows: list[dict[str, object]], method: str, order: Any, seed: int
) -> None:
    options = PairOptions(
        method=method, key="content", pairs_per_prompt=2, seed=seed, skip_invalid=True
    )
    shuffled = list(rows)
    order.shuffle(shuffled)
    kept = shuffled[: len(shuffled) // 2 + 1]  # some rows removed, the rest moved

    def by_instance(rows: list[dict[str, object]]) -> dict[str, list[object]]:
        table = fast.pair_batch(batch(rows), options, "f").table
        found: dict[str, list[object]] = {}
        for pair in table.to_pylist():
            found.setdefault(repr(pair["prompt"]), []).append(pair)
        return found

    everything, subset = by_instance(rows), by_instance(kept)
    for prompt, pairs in subset.items():
        # An instance given twice draws alike both times; compare within one copy's pairs.
        assert all(pair in everything[prompt] for pair in pairs)
