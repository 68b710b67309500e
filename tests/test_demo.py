"""`make demo`, the README's first command, runs twice in a row into the same
folder: the demo replaces its own run (it passes --overwrite), where a user's
repeated command would be refused (tests/test_robustness.py)."""

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.long]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_demo_runs_twice_in_a_row(tmp_path):
    installed = ".venv/.installed-requirements"      # the project is installed here: make no venv
    command = ["make", "--no-print-directory", "-o", installed, "demo", f"PY={sys.executable}",
               f"DEMO_DIR={tmp_path}", "DEMO_STEPS=20"]
    finished = []
    for _ in range(2):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        finished.append({path.parent.name: path.stat().st_mtime_ns for path in tmp_path.glob("*/Results.npz")})
    assert len(finished[0]) == 1 and finished[0].keys() == finished[1].keys()
    assert finished[1] != finished[0]        # the second demo trained again and replaced its run
