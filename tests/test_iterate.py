"""`dpov2 iterate`: how a config's keys reach the stages, what is refused before anything runs,
the reward statistics the score stage records for the report, and a run killed after each
stage resuming without redoing any finished one."""

from __future__ import annotations

import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from interrupts import default_sigint

from dpov2.aligner import TINY_MODEL
from dpov2.errors import InputError
from dpov2.iterative import (
    STAGES,
    iterate,
    parse_overrides,
    plan_iterations,
    record_reward_stats,
    round_report,
    run_stage,
    split_config,
)
from dpov2.tiny_model import TINY_REWARD_MODEL

LMFLOW_CONFIG = Path(__file__).parent / "data" / "lmflow" / "iterative_dpo.yaml"


def _prompts(path: Path, count: int = 4) -> Path:
    rows = [{"text": f"Question {i}: which answer is best?"} for i in range(count)]
    path.write_text(json.dumps({"type": "text_only", "instances": rows}))
    return path


def _settings(tmp: Path, **changes: Any) -> dict[str, Any]:
    """A one-round CPU config on the tiny models, small enough to run in seconds per stage."""
    settings: dict[str, Any] = {
        "model_name_or_path": TINY_MODEL,
        "reward_model_name_or_path": TINY_REWARD_MODEL,
        "dataset_path_list": [str(_prompts(tmp / "prompts.json"))],
        "output_dir": str(tmp / "out"),
        "num_output_sequences": 3,
        "max_new_tokens": 8,
        "sampling_paired_method": "max_min",
        "max_length": 64,
        "max_prompt_length": 32,
        "max_steps": 1,
        "per_device_train_batch_size": 4,
        "save_strategy": "no",
        "use_cpu": True,
        "bf16": False,
        "disable_tqdm": True,
        "report_to": "none",
    }
    settings.update(changes)
    return settings


def test_each_key_of_lmflows_config_reaches_the_stages_that_read_it() -> None:
    parts = split_config(yaml.safe_load(LMFLOW_CONFIG.read_text()), "iterative_dpo.yaml")
    assert set(parts["iterate"]) == {
        "dataset_path_list",
        "output_dir",
        "initial_iter_idx",
        "do_response_generation",
        "do_scoring",
        "do_dpo_align",
        "reward_model_name_or_path",
    }
    assert set(parts["ignored"]) == {
        "use_vllm",
        "vllm_gpu_memory_utilization",
        "vllm_tensor_parallel_size",
        "enable_distributed_inference",
        "distributed_inference_num_instances",
        "overwrite_cache",
    }
    assert {"num_output_sequences", "temperature", "top_p", "max_new_tokens"} <= set(
        parts["generate"]
    )
    assert "vllm_inference_batch_size" in parts["generate"]
    assert set(parts["score"]) == {
        "reward_arch_type",
        "reward_torch_dtype",
        "reward_use_flash_attention",
        "reward_model_inference_block_size",
        "reward_model_inference_batch_size",
        "trust_remote_code",
    }
    assert {"learning_rate", "loss_type", "max_prompt_length", "sampling_paired_method"} <= set(
        parts["align"]
    )
    for shared in ("trust_remote_code", "model_name_or_path"):
        assert shared in parts["generate"] and shared in parts["align"]
    assert not set(parts["generate"]) & {"learning_rate", "reward_torch_dtype"}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"num_beams_typo": 2}, "num_beams_typo", "is not a key of dpov2 iterate"),
        ({"dataset_path": "x.json"}, "dataset_path", "is set for each round"),
        ({"initial_iter_idx": 1}, "initial_iter_idx", "expected an index into dataset_path_list"),
        ({"dataset_path_list": "p.json"}, "dataset_path_list", "expected a list"),
        ({"output_dir": None}, "output_dir", "missing"),
        ({"reward_model_name_or_path": None}, "reward_model_name_or_path", "missing"),
        ({"temperature": -1}, "temperature", "must be >= 0"),
        ({"reward_torch_dtype": "int8"}, "reward_torch_dtype", "unknown dtype"),
        ({"use_lora": True}, "use_lora", "trains full models"),
        (
            {"update_reference_model": True, "reference_model_name_or_path": TINY_MODEL},
            "update_reference_model",
            "do not also give",
        ),
        ({"do_scoring": "sometimes"}, "do_scoring", "expected true/false"),
    ],
)
def test_a_bad_config_is_refused_before_anything_runs(
    tmp_path: Path, change: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        plan_iterations(_settings(tmp_path, **change), "it.yaml")
    assert caught.value.file == "it.yaml" and caught.value.field == field
    assert message in caught.value.message
    assert not (tmp_path / "out").exists()


def test_a_missing_prompt_set_and_a_bad_pair_option_are_named(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings["dataset_path_list"].append(str(tmp_path / "round2.json"))
    with pytest.raises(InputError, match="no such file") as caught:
        plan_iterations(settings, "it.yaml")
    assert caught.value.field == "dataset_path_list[1]"
    with pytest.raises(InputError, match="--pairs-per-prompt") as caught:
        plan_iterations(_settings(tmp_path, pairs_per_prompt=0), "it.yaml")
    assert caught.value.file == "it.yaml"


def test_the_pair_stage_pairs_as_dpov2_align_pairs_a_scored_file(tmp_path: Path) -> None:
    """LMFlow's pairing keys take the aligner's defaults; dpov2's own pair keys pass on."""
    settings = _settings(tmp_path, pairs_per_prompt=2, keep_ties=True)
    del settings["sampling_paired_method"]
    plan = plan_iterations(settings, "it.yaml")

    def value(flag: str) -> str:
        return plan.pair[plan.pair.index(flag) + 1]

    assert value("--method") == "max_random" and value("--seed") == "42"  # LMFlow's defaults
    assert value("--pairs-per-prompt") == "2" and "--keep-ties" in plan.pair


def test_the_reference_is_the_first_policy_unless_updated(tmp_path: Path) -> None:
    plan = plan_iterations(_settings(tmp_path), "it.yaml")
    assert plan.reference_of(1) is None  # the first policy itself: a frozen copy of it
    assert plan.reference_of(2) == TINY_MODEL
    assert plan.policy(2) == str(tmp_path / "out" / "iter_1" / "train")
    updated = plan_iterations(_settings(tmp_path, update_reference_model=True), "it.yaml")
    assert updated.reference_of(2) is None


def test_overrides_are_read_as_yaml_values() -> None:
    given = ["--max_steps", "3", "--do_scoring=false", "--learning_rate", "1e-5"]
    # (YAML reads 1e-5 as text; the stages take a number's text, as from a config file.)
    expected = {"max_steps": 3, "do_scoring": False, "learning_rate": "1e-5"}
    assert parse_overrides(given) == expected
    with pytest.raises(InputError, match="needs a value"):
        parse_overrides(["--max_steps"])
    with pytest.raises(InputError, match="expected --KEY VALUE"):
        parse_overrides(["max_steps", "3"])


def test_a_stage_whose_input_is_neither_done_nor_to_be_done_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "it.yaml"
    config.write_text(yaml.safe_dump(_settings(tmp_path, do_response_generation=False)))
    with pytest.raises(InputError, match="do_response_generation is false"):
        iterate(config)
    assert not (tmp_path / "out" / "iter_1" / "score").exists()


# --- the report -------------------------------------------------------------------------------


def _scored_rows(scores: list[list[float]]) -> str:
    """A scored JSON Lines file's text: one prompt per list, one response per score."""
    rows = [
        {
            "input": f"prompt {i}",
            "output": [{"text": f"answer {j}", "score": s} for j, s in enumerate(each)],
        }
        for i, each in enumerate(scores)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows)


def _expected_reward(scores: list[list[float]]) -> dict[str, Any]:
    flat = [s for each in scores for s in each]
    return {
        "count": len(flat),
        "mean": pytest.approx(statistics.fmean(flat)),
        "std": pytest.approx(statistics.pstdev(flat)),
        "min": min(flat),
        "max": max(flat),
    }


SCORES = [[0.5, -1.0, 2.0], [3.0, 0.25]]
OTHER_SCORES = [[10.0, 20.0]]


def test_the_score_stage_records_its_reward_statistics_and_the_report_reads_them(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "iter_1"
    write = f"import pathlib, sys; pathlib.Path(sys.argv[1]).write_text({_scored_rows(SCORES)!r})"
    run_stage(
        "score",
        1,
        folder / "score",
        lambda tmp: [sys.executable, "-c", write, str(tmp / "scored.jsonl")],
        io.StringIO(),
        finish=record_reward_stats,
    )
    recorded = json.loads((folder / "score" / "reward.json").read_text())
    assert recorded == _expected_reward(SCORES)  # published with the stage
    # The report takes them from the record, never from the scores again.
    (folder / "score" / "scored.jsonl").write_text(_scored_rows(OTHER_SCORES))
    assert round_report(folder, 1, tmp_path / "prompts.json")["reward"] == recorded


def test_a_score_stage_that_recorded_no_reward_statistics_has_them_computed_and_recorded(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "iter_1"
    (folder / "score").mkdir(parents=True)  # as a stage finished before they were recorded
    (folder / "score" / "stage.json").write_text(
        json.dumps({"seconds": 1.0, "peak_rss_mb": 1.0, "gpu_memory_used_mb": None})
    )
    (folder / "score" / "scored.jsonl").write_text(_scored_rows(SCORES))
    reward = round_report(folder, 1, tmp_path / "prompts.json")["reward"]
    assert reward == _expected_reward(SCORES)
    assert json.loads((folder / "score" / "reward.json").read_text()) == reward


# --- a run killed after each stage ----------------------------------------------------------


def _live_processes_naming(text: str) -> list[int]:
    """Processes whose command line holds ``text`` (the stages of a killed run, on Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _records(round_folder: Path) -> dict[str, tuple[str, int]]:
    """Each finished stage's start time, as its record says, and the record's mtime."""
    records = {}
    for stage in STAGES:
        record = round_folder / stage / "stage.json"
        if record.is_file():
            records[stage] = (json.loads(record.read_text())["started"], record.stat().st_mtime_ns)
    return records


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_run_killed_after_each_stage_resumes_without_redoing_a_finished_one(
    tmp_path: Path,
) -> None:
    config = tmp_path / "it.yaml"
    # With precompute_ref_log_probs the round has every stage, the reference log-probs too.
    config.write_text(yaml.safe_dump(_settings(tmp_path, precompute_ref_log_probs=True)))
    out = tmp_path / "out"
    round_folder = out / "iter_1"
    seen: dict[str, tuple[str, int]] = {}
    for stage in STAGES:
        log = (tmp_path / f"killed-after-{stage}.log").open("w")
        run = subprocess.Popen(
            [sys.executable, "-m", "dpov2", "iterate", str(config)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 600
        while not (round_folder / stage / "stage.json").exists():
            assert run.poll() is None and time.monotonic() < deadline, tmp_path / log.name
            time.sleep(0.05)
        run.kill()  # SIGKILL: nothing of iterate's own cleanup runs
        run.wait()
        log.close()
        while _live_processes_naming(str(out)):  # its stage's process follows it
            assert time.monotonic() < deadline
            time.sleep(0.05)
        records = _records(round_folder)
        assert set(records) == set(STAGES[: STAGES.index(stage) + 1])
        assert (round_folder / "score" / "reward.json").is_file() == ("score" in records)
        assert {k: records[k] for k in seen} == seen  # nothing finished was redone
        seen = records
    assert iterate(config)[0]["train"]["steps"] == 1
    assert _records(round_folder) == seen
    # What the killed stages had begun is gone; only finished stages and the report remain.
    assert sorted(p.name for p in round_folder.iterdir()) == sorted(STAGES)
    assert sorted(p.name for p in out.iterdir()) == ["iter_1", "report.json"]
    report = json.loads((out / "report.json").read_text())["rounds"][0]
    assert report["reward"]["count"] == 4 * 3 and report["pairs"]["pairs"] == 4
    assert report["reward"] == json.loads((round_folder / "score" / "reward.json").read_text())
    assert set(report["stages"]) == set(STAGES)
    # Training read the pairs with their stored reference log-probs.
    trained = json.loads((round_folder / "train" / "align.json").read_text())
    assert trained["dataset_path"] == str(round_folder / "reference" / "pairs.parquet")
    stored = pq.read_table(trained["dataset_path"])
    assert {"ref_chosen_logps", "ref_rejected_logps", "ref_logps_tag"} <= set(stored.column_names)


def test_ctrl_c_during_a_stage_exits_130_and_leaves_no_partial_stage(tmp_path: Path) -> None:
    config = tmp_path / "it.yaml"
    config.write_text(yaml.safe_dump(_settings(tmp_path)))
    round_folder = tmp_path / "out" / "iter_1"
    run = subprocess.Popen(
        [sys.executable, "-m", "dpov2", "iterate", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 300
    while not (round_folder.is_dir() and any(round_folder.iterdir())):  # generate's temporary
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert err.strip().endswith("dpov2 iterate: interrupted; no output written"), err
    assert list(round_folder.iterdir()) == []
