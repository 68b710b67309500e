"""bench/tabular.py: the earlier tabular comparison, now a case of gamo-benchmark
(scikit-learn's digits and breast cancer, GAMO's classifier M after each sampler)."""

import json

import numpy as np
import pytest
from conftest import load_bench


def test_the_sets_are_the_earlier_comparisons():
    from gamo.compare.datasets import load

    assert np.bincount(load("breast-cancer").labels).tolist() == [357, 35]       # malignant cut to IR 10
    assert np.bincount(load("digits").labels).tolist() == [174, 87, 44, 33, 22, 15, 10, 10, 10, 10]


@pytest.mark.slow
@pytest.mark.compiled_steps
def test_the_tabular_comparison_writes_its_table_json_and_plot(tmp_path):
    units = load_bench("tabular").main(["--datasets", "breast-cancer", "--samplers", "none,smote,gamo",
                                        "--updates", "4", "--gamo-steps", "4", "--repeats", "1",
                                        "--jobs", "2", "--out-dir", str(tmp_path)])
    assert len(units) == 3 * 5 and all(unit["status"] == "ok" for unit in units)
    assert {unit["sampler"] for unit in units} == {"none", "smote", "gamo"}
    assert all(0 <= unit["scores"]["gamo-m"]["bacc"] <= 1 for unit in units)
    stored = json.loads((tmp_path / "tabular.json").read_text())
    assert stored["gamo_options"] == {"learning_rate": 0.0002, "steps": 4}
    assert "| breast-cancer | " in (tmp_path / "tabular.md").read_text()
    assert (tmp_path / "tabular.png").stat().st_size > 1000
