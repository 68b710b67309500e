"""bench/tabular.py: the tabular comparison's table, its refused folds, and its
resumable units (every finished fold is kept; a killed run loses only the folds
in progress)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, load_bench


def load_tabular():
    return load_bench("tabular")


def test_folds_a_sampler_refuses_are_counted_not_scored():
    """ADASYN refuses a class whose rows have no neighbour of another class: its arm
    is scored on the other folds, and the table says how many it refused."""
    from argparse import Namespace

    tabular = load_tabular()
    folds = [{"seed": 0, "fold": i, "acsa": acsa, "gm": acsa, "fit_time_s": 1.0}
             for i, acsa in enumerate([0.5, None, 0.7])]
    result = {"dataset": "digits", "arm": "ADASYN + M", "folds": folds, "class_counts": [1, 2]}
    table = tabular.summary([result], Namespace(folds=3, seeds=[0], updates=4))
    assert "| digits | ADASYN + M (1 of 3 folds refused by the sampler) | 0.6000 ± 0.1414 |" in table
    X = np.vstack([np.zeros((20, 2)), np.full((6, 2), 100.0)]) + np.random.default_rng(0).normal(size=(26, 2))
    with pytest.raises(RuntimeError, match="ADASYN is not suited"):   # the refusal this handles
        tabular.ADASYN(random_state=0).fit_resample(X, np.array([0] * 20 + [1] * 6))


@pytest.mark.slow
@pytest.mark.compiled_steps
def test_the_tabular_comparison_writes_its_table_json_and_plot(tmp_path):
    tabular = load_tabular()
    results = tabular.main(["--datasets", "breast-cancer", "--arms", "M,SMOTE + M,GamoClassifier",
                            "--updates", "4", "--seeds", "0", "--folds", "2", "--no-jit", "--jobs", "2",
                            "--out-dir", str(tmp_path)])
    assert [r["arm"] for r in results] == ["M", "SMOTE + M", "GamoClassifier"]
    assert all(len(r["folds"]) == 2 and 0 <= r["folds"][0]["acsa"] <= 1 for r in results)
    assert results[0]["class_counts"] == [35, 357]                  # malignant cut to IR 10
    stored = json.loads((tmp_path / "tabular.json").read_text())
    assert stored["updates"] == 4 and len(stored["results"]) == 3
    table = (tmp_path / "tabular.md").read_text()
    assert "| breast-cancer | GamoClassifier |" in table
    assert (tmp_path / "tabular.png").stat().st_size > 1000


@pytest.mark.slow
def test_a_killed_comparison_keeps_its_finished_folds_and_the_rerun_plays_the_rest(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "tabular.py"), "--datasets", "breast-cancer", "--arms",
               "GamoClassifier", "--updates", "300", "--seeds", "0", "--folds", "3", "--no-jit", "--jobs", "1",
               "--out-dir", str(tmp_path)]
    folds = tmp_path / "runs" / "tabular" / "updates300_folds3" / "breast-cancer" / "gamoclassifier"
    first = folds / "seed0_fold0.json"
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not first.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)            # the whole run, its unit's child too, at once
    run.wait()
    assert first.exists() and not (folds / "seed0_fold2.json").exists(), "killed too late to show a resume"
    kept = (first.read_text(), first.stat().st_mtime_ns)
    results = load_tabular().main(command[2:])
    assert (first.read_text(), first.stat().st_mtime_ns) == kept           # not played again
    assert [fold["fold"] for fold in results[0]["folds"]] == [0, 1, 2]
    stored = json.loads((tmp_path / "tabular.json").read_text())
    assert len(stored["results"][0]["folds"]) == 3
    assert "| breast-cancer | GamoClassifier |" in (tmp_path / "tabular.md").read_text()
