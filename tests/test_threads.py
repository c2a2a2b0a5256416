"""The one thread setting: resolution, bounds, pools built once and reused, fork safety."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue as queue_module
import select
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from dpov2 import select_pairs
from dpov2.cli import main
from dpov2.threads import MAX_THREADS, NUM_THREADS_ENV, resolve_threads

SCORES = np.tile([0.0, 3.0, 1.0, 2.0], 20_000)
OFFSETS = np.arange(0, len(SCORES) + 1, 4)


def pool_threads(count: int) -> set[int]:
    """Thread ids of this process's dpov2 pool of ``count`` threads (named ``dpov2-N-i``).
    A thread takes its name once it first runs, which on a busy machine can be after the
    call that built the pool returned: the threads are looked for until ``count`` are found
    or a few seconds pass."""
    deadline = time.monotonic() + 10
    while True:
        found = set()
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                name = (task / "comm").read_text().strip()
                if name.startswith(f"dpov2-{count}-"):
                    found.add(int(task.name))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_none_means_the_environment_variable_else_the_usable_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert NUM_THREADS_ENV == "DPOV2_NUM_THREADS"
    monkeypatch.setenv(NUM_THREADS_ENV, "3")
    assert resolve_threads(None) == 3
    monkeypatch.delenv(NUM_THREADS_ENV)
    assert 1 <= resolve_threads(None) <= min(MAX_THREADS, len(os.sched_getaffinity(0)))
    assert resolve_threads(np.int64(2)) == 2 and resolve_threads(MAX_THREADS) == MAX_THREADS


@pytest.mark.parametrize("value", ["0", "1025", "-1", "two", ""])
def test_a_bad_environment_variable_is_refused_by_name(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NUM_THREADS_ENV, value)
    message = f"DPOV2_NUM_THREADS must be an integer from 1 to 1024, got '{value}'"
    for use_fast in (True, False):
        with pytest.raises(ValueError) as info:
            select_pairs([1.0, 2.0], [0, 2], method="random", use_fast=use_fast)
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (1025, ValueError),
        (100_000, ValueError),
        (-1, ValueError),
        (2**70, ValueError),
        (True, TypeError),
        (1.5, TypeError),
        ("2", TypeError),
    ],
)
def test_counts_outside_the_bound_or_of_the_wrong_type_are_refused(
    value: object, error: type
) -> None:
    with pytest.raises(error, match="num_threads"):
        resolve_threads(value)  # type: ignore[arg-type]


def test_a_pool_is_built_once_per_count_and_reused() -> None:
    select_pairs(SCORES, OFFSETS, method="random", num_threads=3)
    first = pool_threads(3)
    assert len(first) == 3
    select_pairs(SCORES, OFFSETS, method="max_min", num_threads=3)
    select_pairs(SCORES, OFFSETS, method="max_max", num_threads=5)
    assert pool_threads(3) == first  # the same threads: not rebuilt, not dropped
    assert len(pool_threads(5)) == 5


def test_the_environment_variable_sizes_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NUM_THREADS_ENV, "7")
    select_pairs(SCORES, OFFSETS, method="random")
    assert len(pool_threads(7)) == 7


def _select_in_child() -> list[int]:
    return select_pairs(SCORES, OFFSETS, method="max_random", num_threads=2).chosen.tolist()


def test_a_forked_child_selects_after_the_parent_used_the_pool() -> None:
    expected = _select_in_child()  # the parent builds (and keeps) its 2-thread pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only this thread exists; the inherited pool has none
        try:
            os.write(write, json.dumps(_select_in_child() == expected).encode())
        finally:
            os._exit(0)
    os.close(write)
    # Without the pid check the child would wait forever on threads it does not have.
    ready, _, _ = select.select([read], [], [], 60)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in select_pairs")
    answer = os.read(read, 100)
    os.waitpid(pid, 0)
    assert json.loads(answer) is True


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(_select_in_child())


def test_a_multiprocessing_fork_child_selects_after_the_parent_used_the_pool() -> None:
    expected = _select_in_child()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue,))
    process.start()
    try:  # read before joining: the child cannot exit until its result is taken
        result = queue.get(timeout=60)
    except queue_module.Empty:
        pytest.fail("the fork-context child hung in select_pairs")
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    assert process.exitcode == 0
    assert result == expected


def test_dpov2_pair_takes_threads_and_refuses_bad_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Path(__file__).parent.parent / "examples" / "data" / "scored_sample.json"
    default, two = tmp_path / "default.jsonl", tmp_path / "two.jsonl"
    assert main(["pair", str(source), str(default), "--quiet"]) == 0
    assert main(["pair", str(source), str(two), "--quiet", "--threads", "2"]) == 0
    assert two.read_bytes() == default.read_bytes()
    assert main(["pair", str(source), str(tmp_path / "x.jsonl"), "--threads", "0"]) == 2
    assert "num_threads must be from 1 to 1024, got 0" in capsys.readouterr().err
