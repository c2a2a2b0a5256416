"""Reference log-probs computed once and stored with the pairs (`dpov2.reference_logps`), on the
tiny in-code model, on CPU: the stored values are those the reference computes inside the
trainer; training on them logs what training with the reference logs, without running (or
loading) the reference; a tag that does not fit the run is refused, saying what differs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets import Dataset

import dpov2.aligner
from dpov2.aligner import TINY_MODEL, DPOv2Aligner, load_model, load_tokenizer, run_alignment
from dpov2.args import AlignArguments, DatasetArguments, DPOv2AlignerArguments, ModelArguments
from dpov2.cli import main
from dpov2.errors import InputError
from dpov2.formats.kinds import read_pairs
from dpov2.reference_logps import (
    TAG_COLUMN,
    ReferenceTag,
    compute_reference_logps,
    model_fingerprint,
    tokenizer_fingerprints,
    write_reference_logps,
)
from dpov2.tiny_model import build_tiny_model, build_tiny_tokenizer
from dpov2.trainer import DPOv2Trainer

TINY = ModelArguments(model_name_or_path=TINY_MODEL)
MAX_LENGTH = 40
# Responses of different lengths; pair 5 is cut to fit MAX_LENGTH, and pair 6's prompt fills it
# (max_prompt_length None: never cut), so the trainer drops that pair.
PAIRS: list[dict[str, Any]] = [
    {
        "prompt": f"Question {i}: is this good?" + (" Really?" * 30 if i == 6 else ""),
        "chosen": " yes" * (i + 1) + (" and so on" * 10 if i == 5 else ""),
        "rejected": " no, bad" * (7 - i),
        "margin": 0.5 + i,
    }
    for i in range(8)
]
DROPPED = 6
# Float tolerance of stored against in-training values: both are float32 sums over at most
# MAX_LENGTH tokens of the same model on the same tokens, but in batches of other widths and
# orders, so matrix products may round differently in the last bits (a few ulps of values
# around 10-60 nats, ~1e-6); 1e-5 is ten times that, far below any real difference (a token
# more or less changes a sum by ~1 nat).
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def _run(
    output_dir: Path, reference: ModelArguments | None = None, **overrides: Any
) -> AlignArguments:
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "no",
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "max_length": MAX_LENGTH,
        "max_prompt_length": None,
        "seed": 0,
    }
    data = {
        key: overrides.pop(key)
        for key in ("dataset_path", "conversation_template")
        if key in overrides
    }
    settings.update(overrides)
    return AlignArguments(
        TINY,
        DatasetArguments(**data),
        DPOv2AlignerArguments(**settings),
        reference or ModelArguments(),
    )


def _aligner(run: AlignArguments) -> DPOv2Aligner:
    return DPOv2Aligner(run.model, run.data, run.aligner, run.reference)


def _count_reference_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of `DPOv2Trainer.compute_ref_log_probs`, the one path by which the
    trainer runs a reference (in training and in TRL's precompute pass)."""
    calls: list[int] = []
    original = DPOv2Trainer.compute_ref_log_probs

    def counting(self: DPOv2Trainer, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        calls.append(1)
        return original(self, model, inputs)

    monkeypatch.setattr(DPOv2Trainer, "compute_ref_log_probs", counting)
    return calls


def _saved_tiny(folder: Path, seed: int) -> Path:
    build_tiny_model(build_tiny_tokenizer(), seed=seed).save_pretrained(folder)
    return folder


# --- the values -------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_prompt", [False, True])
def test_stored_logps_equal_those_the_reference_computes_in_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mask_prompt: bool
) -> None:
    run = _run(tmp_path, mask_prompt=mask_prompt)
    stored = compute_reference_logps(Dataset.from_list(PAIRS), run)

    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    original = DPOv2Trainer.compute_ref_log_probs

    def recording(self: DPOv2Trainer, model: torch.nn.Module, inputs: dict[str, Any]) -> Any:
        chosen, rejected = original(self, model, inputs)
        seen.append((inputs["input_ids"], inputs["attention_mask"], torch.cat([chosen, rejected])))
        return chosen, rejected

    monkeypatch.setattr(DPOv2Trainer, "compute_ref_log_probs", recording)
    config = _run(tmp_path, mask_prompt=mask_prompt, max_steps=1, per_device_train_batch_size=8)
    trainer = DPOv2Trainer(
        load_model(TINY),
        args=config.aligner,
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=load_tokenizer(TINY),
    )
    assert trainer.ref_model is not None  # a frozen copy of the policy: the reference is run
    trainer.train()

    # Each sequence the reference scored in training, back to its pair and response.
    prepared = trainer.train_dataset
    assert isinstance(prepared, Dataset)
    where = {}
    for example in prepared:
        row = next(i for i, pair in enumerate(PAIRS) if pair["prompt"] == example["prompt"])
        where[tuple(example["prompt_ids"] + example["chosen_ids"])] = (row, "ref_chosen_logps")
        where[tuple(example["prompt_ids"] + example["rejected_ids"])] = (row, "ref_rejected_logps")
    compared = set()
    for input_ids, attention_mask, logps in seen:
        for ids, mask, value in zip(input_ids, attention_mask, logps, strict=True):
            row, column = where[tuple(ids[mask.bool()].tolist())]
            expected = torch.tensor(stored[row][column], dtype=torch.float32)
            torch.testing.assert_close(value.float(), expected, **TOLERANCE)
            compared.add((row, column))
    kept = [row for row in range(len(PAIRS)) if row != DROPPED]
    assert compared == {
        (row, col) for row in kept for col in ("ref_chosen_logps", "ref_rejected_logps")
    }
    assert stored[DROPPED]["ref_chosen_logps"] is None  # the trainer drops it
    assert stored[DROPPED]["ref_rejected_logps"] is None


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])  # ipo scores per-token averages
def test_training_on_stored_logps_logs_what_training_with_the_reference_logs_and_runs_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss_type: str
) -> None:
    pairs = Dataset.from_list(PAIRS)
    stored = compute_reference_logps(pairs, _run(tmp_path / "stored", loss_type=loss_type))
    passes = _count_reference_passes(monkeypatch)
    plain = _aligner(_run(tmp_path / "plain", loss_type=loss_type)).align(
        load_model(TINY), None, pairs
    )
    assert passes, "training without stored log-probs runs the reference"
    passes.clear()
    with_stored = _aligner(_run(tmp_path / "stored", loss_type=loss_type)).align(
        load_model(TINY), None, stored
    )
    assert passes == [], "the reference ran although the log-probs were stored"

    assert len(with_stored) == len(plain) == 3  # two steps logged, and the summary
    for step, (expected, got) in enumerate(zip(plain, with_stored, strict=True)):
        numbers = {key for key in expected if not key.startswith("train_") or key == "train_loss"}
        assert numbers <= set(got), step
        for key in numbers:
            assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), (step, key)
    assert f"loss/{loss_type}" in plain[0]
    assert plain[1]["rewards/margins"] != 0  # the second step sees a trained policy


def test_a_kept_pair_with_a_null_stored_logp_is_refused(tmp_path: Path) -> None:
    run = _run(tmp_path)
    stored = compute_reference_logps(Dataset.from_list(PAIRS), run).to_list()
    stored[2]["ref_rejected_logps"] = None
    with pytest.raises(
        InputError,
        match=r"train dataset: 1 of the 7 pairs kept .* null or non-finite ref_rejected_logps",
    ):
        DPOv2Trainer(
            load_model(TINY),
            args=run.aligner,
            train_dataset=Dataset.from_list(stored),
            processing_class=load_tokenizer(TINY),
        )


# --- the tag ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pairs with log-probs for `_run`'s settings and dpov2:tiny, as a Parquet file."""
    folder = tmp_path_factory.mktemp("stored")
    source = folder / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS), source)
    written, kept = write_reference_logps(source, folder / "stored.parquet", _run(folder / "out"))
    assert (written, kept) == (len(PAIRS), len(PAIRS) - 1)
    return folder / "stored.parquet"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_length": 48}, f"with max_length {MAX_LENGTH}; this run uses max_length 48:"),
        ({"mask_prompt": True}, "with mask_prompt False; this run uses mask_prompt True:"),
        (
            {"max_prompt_length": 20},
            "with max_prompt_length None; this run uses max_prompt_length 20:",
        ),
        (
            {"conversation_template": "llama3"},
            r"with chat template sha256 \w{12}; this run uses chat template sha256 \w{12}:",
        ),
    ],
)
def test_a_tag_for_other_settings_is_refused_saying_what_differs(
    tmp_path: Path, stored_file: Path, overrides: dict[str, Any], message: str
) -> None:
    run = _run(tmp_path, **overrides)
    expected = (
        rf"^{stored_file}: ref_chosen_logps and ref_rejected_logps were computed {message} "
        "recompute them with dpov2 reference-logps or drop the columns$"
    )
    with pytest.raises(InputError, match=expected):
        _aligner(run).align(load_model(TINY), None, stored_file)


def test_a_tag_for_another_reference_model_or_dtype_is_refused(
    tmp_path: Path, stored_file: Path
) -> None:
    other = _saved_tiny(tmp_path / "other", seed=1)
    run = _run(tmp_path, reference=ModelArguments(model_name_or_path=str(other)))
    with pytest.raises(
        InputError,
        match=rf"computed with reference {TINY_MODEL} \(weights sha256 \w{{12}}\); this run uses "
        rf"reference {other} \(weights sha256 \w{{12}}\): recompute",
    ):
        _aligner(run).align(load_model(TINY), None, stored_file)
    half = ModelArguments(model_name_or_path=TINY_MODEL, torch_dtype="bfloat16")
    run = _run(tmp_path, reference=half)
    with pytest.raises(InputError, match=r"torch_dtype auto; this run uses .*torch_dtype bfloat16"):
        _aligner(run).align(load_model(TINY), None, stored_file)


def test_a_copied_reference_folder_is_the_same_reference_and_is_never_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _saved_tiny(tmp_path / "reference", seed=0)
    source = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS), source)
    stored = tmp_path / "stored.parquet"
    write_reference_logps(
        source, stored, _run(tmp_path / "out", ModelArguments(model_name_or_path=str(folder)))
    )
    copied = tmp_path / "copied"
    shutil.copytree(folder, copied)

    loaded: list[str] = []
    original = dpov2.aligner.load_model

    def recording(args: ModelArguments, **kwargs: Any) -> Any:
        loaded.append(str(args.model_name_or_path))
        return original(args, **kwargs)

    monkeypatch.setattr(dpov2.aligner, "load_model", recording)
    passes = _count_reference_passes(monkeypatch)
    reference = ModelArguments(model_name_or_path=str(copied))
    history = run_alignment(_run(tmp_path / "out", reference, dataset_path=str(stored)))
    assert loaded == [TINY_MODEL]  # the policy only
    assert passes == []
    assert "loss" in history[0]
    # Without stored log-probs the same run loads the reference, and runs it.
    run_alignment(_run(tmp_path / "out", reference, dataset_path=str(source)))
    assert loaded == [TINY_MODEL, TINY_MODEL, str(copied)]
    assert passes


def test_stored_columns_that_are_incomplete_or_inconsistent_are_refused(
    tmp_path: Path, stored_file: Path
) -> None:
    run = _run(tmp_path)
    rows = read_pairs(stored_file).to_list()

    def align(rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]] | None = None) -> None:
        evaluation = None if eval_rows is None else Dataset.from_list(eval_rows)
        _aligner(run).align(load_model(TINY), None, Dataset.from_list(rows), evaluation)

    without_tag = [{k: v for k, v in row.items() if k != TAG_COLUMN} for row in rows]
    with pytest.raises(
        InputError, match=r"has ref_chosen_logps, ref_rejected_logps but no ref_logps_tag"
    ):
        align(without_tag)
    mixed = [dict(row) for row in rows]
    mixed[3][TAG_COLUMN] = mixed[3][TAG_COLUMN].replace('"max_length":40', '"max_length":41')
    with pytest.raises(InputError, match=r"row 3, field 'ref_logps_tag': differs from row 0's"):
        align(mixed)
    broken = [dict(row, **{TAG_COLUMN: "{}"}) for row in rows]
    with pytest.raises(
        InputError, match=r"row 0, field 'ref_logps_tag': is not a reference log-prob tag"
    ):
        align(broken)
    with pytest.raises(
        InputError, match=r"the train dataset has stored .* the eval dataset .* has none"
    ):
        align(rows, PAIRS)


def test_the_tiny_model_and_tokenizer_have_the_same_fingerprints_in_every_process() -> None:
    script = (
        "import json; from dpov2.reference_logps import model_fingerprint, tokenizer_fingerprints;"
        "from dpov2.args import ModelArguments; from dpov2.tiny_model import build_tiny_tokenizer;"
        f"print(json.dumps([model_fingerprint(ModelArguments(model_name_or_path={TINY_MODEL!r})),"
        " *tokenizer_fingerprints(build_tiny_tokenizer())]))"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    here = [model_fingerprint(TINY), *tokenizer_fingerprints(build_tiny_tokenizer())]
    assert json.loads(out.stdout) == here
    assert (
        model_fingerprint(ModelArguments(model_name_or_path=TINY_MODEL, torch_dtype="bfloat16"))
        != here[0]
    )


def test_the_tag_reads_back_and_refuses_another_version() -> None:
    tag = ReferenceTag("m", "w" * 64, "auto", "no", "t" * 64, None, 40, None, False)
    assert ReferenceTag.from_json(tag.to_json(), file="f", row=0) == tag
    later = json.loads(tag.to_json()) | {"version": 2}
    with pytest.raises(
        InputError,
        match=r"^f: row 5, field 'ref_logps_tag': tag version 2, and this dpov2 reads version 1",
    ):
        ReferenceTag.from_json(json.dumps(later), file="f", row=5)


# --- the file and the command --------------------------------------------------------------------


def test_the_command_writes_every_format_and_align_refuses_it_for_another_run(
    tmp_path: Path, stored_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(PAIRS), source)
    config = tmp_path / "run.json"
    settings = {
        "model_name_or_path": TINY_MODEL,
        "dataset_path": str(source),
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "max_length": MAX_LENGTH,
        "max_prompt_length": None,
    }
    config.write_text(json.dumps(settings))
    output = tmp_path / "with-logps.parquet"
    assert main(["reference-logps", str(config), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    kept = "7 with reference log-probs (1 dropped by the trainer's truncation)"
    assert printed == f"wrote 8 pairs to {output}; {kept}\n"
    assert read_pairs(output).to_list() == read_pairs(stored_file).to_list()

    assert main(["reference-logps", str(config), "--output", str(output)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    for name in ("p.jsonl", "p.json"):  # the JSON pair reader keeps the columns too
        as_json = tmp_path / name
        assert main(["reference-logps", str(config), "--output", str(as_json)]) == 0
        capsys.readouterr()
        assert read_pairs(as_json).to_list() == read_pairs(output).to_list()
    assert main(["align", str(config), "--dataset_path", str(as_json), "--max_length", "48"]) == 2
    assert (
        "were computed with max_length 40; this run uses max_length 48" in capsys.readouterr().err
    )


def test_pairs_that_truncation_leaves_none_of_are_refused(tmp_path: Path) -> None:
    run = _run(tmp_path, max_length=8)  # every prompt fills it
    with pytest.raises(InputError, match=r"no pair left whose prompt fits max_length=8"):
        compute_reference_logps(Dataset.from_list(PAIRS), run)


def test_a_folder_fingerprint_follows_its_weights_and_unfit_models_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _saved_tiny(tmp_path / "model", seed=0)
    before = model_fingerprint(ModelArguments(model_name_or_path=str(folder)))
    _saved_tiny(folder, seed=1)  # other weights, same file names
    assert model_fingerprint(ModelArguments(model_name_or_path=str(folder))) != before
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"field 'reference_model_name_or_path': has no weights"):
        model_fingerprint(
            ModelArguments(model_name_or_path=str(empty)), field="reference_model_name_or_path"
        )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and no such repository on the Hub either
    with pytest.raises(InputError, match=r"^nobody/nothing: .*cannot fetch the model"):
        model_fingerprint(ModelArguments(model_name_or_path="nobody/nothing"))
