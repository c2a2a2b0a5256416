"""``python -m dpov2`` is the ``dpov2`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYTHON_PATH = str(Path(__file__).parent.parent / "python")


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([PYTHON_PATH, os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "dpov2", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_python_m_dpov2_runs_the_cli(tmp_path: Path) -> None:
    source = Path(__file__).parent.parent / "examples" / "data" / "scored_sample.json"
    out = tmp_path / "pairs.jsonl"
    done = run_module("pair", str(source), str(out), "--method", "max_min")
    assert done.returncode == 0, done.stderr
    assert "pairs written: 300" in done.stdout
    assert len(out.read_text().splitlines()) == 300
    bad = run_module("pair", str(source), str(out))
    assert bad.returncode == 2  # the output exists: a user error, one line, as from `dpov2`
    assert bad.stderr.startswith("dpov2 pair: error:") and len(bad.stderr.splitlines()) == 1
