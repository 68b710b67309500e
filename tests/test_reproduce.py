"""The comparison (gamo-reproduce, bench/reproduce.py): baselines, SMOTE, GAMO
without D and GAMO, each through the trios' own commands on the imbalanced digits."""

import json
import sys

import numpy as np
import pytest
from conftest import DIGITS_TRAIN_COUNTS, ROOT, SEED, run_script

from gamo import learner, nets
from gamo.cli import dense, reproduce
from gamo.compare.runs import launches_and_finished
from gamo.data import read_labelled_csv, relabel_by_size
from gamo.errors import InputError
from gamo.methods import oversampled
from gamo.run import settings

keras = pytest.importorskip("keras")

STEPS = 40
METHODS = ["baseline", "smote", "gamo-nodis", "gamo"]
MAJORITY = max(DIGITS_TRAIN_COUNTS.values())



def reproduce_args(digits_csvs, out, dataset, methods, steps, name):
    train, test = digits_csvs
    return ["--dataset", dataset, "--train", str(train), "--test", str(test), "--name", name,
            "--methods", ",".join(methods), "--seeds", str(SEED), "--steps", str(steps),
            "--eval-every", "10", "--no-jit", "--out-dir", str(out)]


@pytest.fixture(scope="module")
def dense_comparison(digits_csvs, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    args = reproduce_args(digits_csvs, out, "mnist5k", METHODS, STEPS, "digits") + ["--report-steps", "10,30"]
    runs = reproduce.main(args)
    return out, args, {run["method"]: run for run in runs}


# ---------------------------------------------------------------- SMOTE

def test_smote_balances_every_class_to_the_majority(digits_csvs):
    x, y = read_labelled_csv(digits_csvs[0])
    balanced, labels = oversampled("smote", x, y, seed=SEED)
    assert np.bincount(labels)[list(DIGITS_TRAIN_COUNTS)].tolist() == [MAJORITY] * len(DIGITS_TRAIN_COUNTS)
    np.testing.assert_array_equal(balanced[:len(y)], x)     # the real rows are kept
    for label in DIGITS_TRAIN_COUNTS:                         # new rows lie between their class's
        own, new = x[y == label], balanced[len(y):][labels[len(y):] == label]
        assert (new >= own.min(axis=0) - 1e-4).all() and (new <= own.max(axis=0) + 1e-4).all()


def test_smote_refuses_a_class_with_a_single_row():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    with pytest.raises(InputError, match="t.csv: smote needs at least 2 training rows in every class, the "
                                         "smallest class has 1"):
        oversampled("smote", x, np.array([0, 0, 0, 0, 0, 1]), seed=SEED, path="t.csv")


# ---------------------------------------------------------------- the baseline learner

def test_baseline_update_trains_f_and_m_together_once_per_batch():
    keras.utils.set_random_seed(SEED)
    extractor = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(6, activation="tanh")])
    classifier = nets.build_classifier(6, 3)
    alone = learner.ClassifierOnly(classifier, extractor, jit=False)
    before = [v.numpy().copy() for v in extractor.weights + classifier.weights]
    rng = np.random.default_rng(SEED)
    alone.train_on_batch(rng.normal(size=(5, 8, 8, 1)).astype(np.float32),
                         np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]], rng)
    after = [v.numpy() for v in extractor.weights + classifier.weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))
    assert alone.classifier_updates() == 1


def test_no_discriminator_is_refused_for_a_baseline():
    args = dense.build_parser().parse_args(["--classifier-only", "--no-discriminator"])
    with pytest.raises(InputError, match="applies to GAMO"):
        settings.settings_from(args, dense.Settings)


# ---------------------------------------------------------------- gamo-reproduce

def test_bench_reproduce_is_the_command(tmp_path):
    result = run_script("bench/reproduce.py", "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--vmap K" in result.stdout


def test_vmap_groups_the_seeds_of_a_method_into_one_command(digits_csvs, tmp_path):
    argv = reproduce_args(digits_csvs, tmp_path, "mnist5k", ["baseline", "gamo"], STEPS, "digits")
    argv[argv.index("--seeds") + 1] = "0-2"
    args = reproduce.build_parser().parse_args(argv + ["--vmap", "2"])
    args.jobs = 1
    jobs, launches, finished = launches_and_finished(args, reproduce.DATASETS["mnist5k"], "digits", *digits_csvs)
    assert len(jobs) == 6 and not finished
    assert [(launch.jobs[0].method, [job.seed for job in launch.jobs]) for launch in launches] == [
        ("baseline", [0, 1]), ("baseline", [2]), ("gamo", [0, 1]), ("gamo", [2])]
    group, single = launches[2].command, launches[3].command
    assert group[group.index("--seeds") + 1] == "0,1" and "--seed" not in group
    assert group[group.index("--out-dir") + 1] == str(tmp_path / "runs" / "digits" / f"gamo_seed{{seed}}_steps{STEPS}")
    assert single[single.index("--seed") + 1] == "2" and "--seeds" not in single
    assert [folder.name for folder in launches[2].folders] == [f"gamo_seed{k}_steps{STEPS}" for k in (0, 1)]


def test_vmap_groups_the_seeds_of_a_convolutional_method_too(digits_csvs, tmp_path):
    argv = reproduce_args(digits_csvs, tmp_path, "conv", ["gamo"], STEPS, "digits")
    argv[argv.index("--seeds") + 1] = "0-1"
    args = reproduce.build_parser().parse_args(argv + ["--vmap", "2", "--no-scale"])
    args.jobs = 1
    reproduce.check_options(args, "jax")              # no longer refused for the convolutional trio
    _, launches, _ = launches_and_finished(args, reproduce.DATASETS["conv"], "digits", *digits_csvs)
    command = launches[0].command
    assert len(launches) == 1 and command[command.index("--seeds") + 1] == "0,1"
    assert "gamo-fashion-mnist" in command[0] or "fashion_mnist_gamo_main.py" in command[1]
    assert "--no-scale" in command


def test_your_own_files_go_to_the_dense_trio_and_dataset_is_documented(tmp_path, capsys):
    from gamo.compare.runs import DATASETS

    help_text = reproduce.build_parser().format_help()
    assert all(name in help_text for name in DATASETS) and "feature vectors of any kind" in help_text
    with pytest.raises(InputError, match="--dataset dense: give the files with --train and --test"):
        reproduce.main(["--dataset", "dense", "--out-dir", str(tmp_path)])


@pytest.mark.slow
def test_a_tabular_csv_runs_the_dense_trio_and_a_chance_level_table_says_so(tmp_path, capsys):
    """Standardised features: refused in one line naming --no-scale without it (the
    child's message); with it, the dense trio trains, and its first line says so."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = tmp_path / "t_train.csv", tmp_path / "t_test.csv"
    np.savetxt(train, np.column_stack([X[::2], y[::2]]), delimiter=",", fmt="%.6g")
    np.savetxt(test, np.column_stack([X[1::2], y[1::2]]), delimiter=",", fmt="%.6g")
    argv = ["--train", str(train), "--test", str(test), "--methods", "baseline", "--seeds", "0",
            "--steps", "20", "--eval-every", "10", "--no-jit", "--jobs", "1", "--out-dir", str(tmp_path / "r")]
    with pytest.raises(InputError, match="not 0-255 pixels.*--no-scale"):
        reproduce.main(argv)
    capsys.readouterr()
    runs = reproduce.main(argv + ["--no-scale", "--name", "scaled"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("gamo-reproduce: dense, gamo-dense on ") and "--no-scale" in first
    assert runs[0]["test"]["acsa"] > 0.6
    assert "chance level" not in (tmp_path / "r" / "scaled.md").read_text()


@pytest.mark.skipif(reproduce.keras_backend_name() == "jax", reason="JAX groups the seeds")
def test_vmap_off_jax_is_refused_in_one_line(digits_csvs, tmp_path):
    with pytest.raises(InputError, match="--vmap needs the JAX backend"):
        reproduce.main(reproduce_args(digits_csvs, tmp_path, "mnist5k", ["gamo"], STEPS, "d") + ["--vmap", "2"])


@pytest.mark.slow
@pytest.mark.every_backend
@pytest.mark.skipif(reproduce.keras_backend_name() != "jax", reason="--vmap needs JAX")
def test_vmapped_seeds_write_every_run_and_are_reused_as_single_runs(digits_csvs, tmp_path, capsys):
    args = reproduce_args(digits_csvs, tmp_path, "mnist5k", ["gamo"], 20, "digits")
    args[args.index("--seeds") + 1] = "0-2"
    runs = reproduce.main(args + ["--vmap", "3"])
    assert [run["seed"] for run in runs] == [0, 1, 2]
    assert len({run["run_dir"] for run in runs}) == 3 and all(run["final_step"] == 20 for run in runs)
    assert (tmp_path / "runs" / "digits" / "gamo_seeds0-1-2_steps20.log").is_file()
    again = reproduce.main(args)          # without --vmap: the same runs, finished
    assert capsys.readouterr().out.count("finished earlier") == 3
    assert [run["test"] for run in again] == [run["test"] for run in runs]


@pytest.mark.slow
def test_every_method_writes_its_record_and_the_table(dense_comparison):
    out, _, runs = dense_comparison
    assert list(runs) == METHODS
    stored = json.loads((out / "digits.json").read_text())["runs"]
    assert sorted(run["method"] for run in stored) == sorted(METHODS)
    for run in stored:
        assert run["steps"] == run["final_step"] == STEPS and run["seed"] == SEED
        assert len(run["test"]["tpr"]) == len(DIGITS_TRAIN_COUNTS)
        assert 0 <= run["test"]["acsa"] <= 1 and run["wall_time_s"] > 0
        assert run["curve"]["step"] == [0, 10, 20, 30, 40]
        assert set(run["versions"]) >= {"tensorflow", "keras", "numpy"} and run["backend"] == "tensorflow"
    table = (out / "digits.md").read_text()
    for method, run in runs.items():
        assert f"| {method} | {STEPS} | {STEPS // 2} | {SEED} | {run['test']['acsa']:.4f} |" in table
    # With --report-steps, the scores during training too (one seed: no spread).
    gamo = runs["gamo"]["curve"]
    assert (f"| gamo | {STEPS} | {SEED} | {gamo['acsa'][1]:.4f} / {gamo['gm'][1]:.4f} | "
            f"{gamo['acsa'][3]:.4f} / {gamo['gm'][3]:.4f} |") in table
    for picture in ("digits_tpr.png", "digits_curves.png"):
        assert (out / picture).stat().st_size > 1000


@pytest.mark.slow
def test_every_method_trains_on_the_same_batches_with_the_counted_classifier_updates(dense_comparison):
    _, _, runs = dense_comparison
    for method, run in runs.items():
        assert run["batches"] == STEPS // 2, method
    # The baselines: one update per batch; GAMO: one on the real, one on the fake batch.
    assert runs["baseline"]["classifier_updates"] == runs["smote"]["classifier_updates"] == STEPS // 2
    assert runs["gamo"]["classifier_updates"] == runs["gamo-nodis"]["classifier_updates"] == STEPS


@pytest.mark.slow
def test_smote_run_trains_on_a_set_balanced_to_the_majority(dense_comparison):
    _, _, runs = dense_comparison
    sizes = sorted(DIGITS_TRAIN_COUNTS.values())
    assert runs["smote"]["train_counts"] == [MAJORITY] * len(sizes)
    for method in ("baseline", "gamo-nodis", "gamo"):
        assert runs[method]["train_counts"] == runs[method]["class_counts"] == sizes


@pytest.mark.slow
def test_gamo_without_discriminator_saves_no_discriminator(dense_comparison):
    _, _, runs = dense_comparison
    saved = {method: {p.name for p in (ROOT / run["run_dir"]).glob(f"gamo_models_{STEPS}/*")}
             for method, run in runs.items()}
    assert f"DIS_{STEPS}.keras" in saved["gamo"]
    assert not any(name.startswith("DIS") for name in saved["gamo-nodis"])
    assert saved["baseline"] == saved["smote"] == {f"MLP_{STEPS}.keras"}


@pytest.mark.slow
def test_finished_runs_are_reused_when_the_command_is_given_again(dense_comparison, capsys):
    out, args, runs = dense_comparison
    again = reproduce.main(args)
    assert capsys.readouterr().out.count("finished earlier") == len(METHODS)
    assert [run["test"] for run in again] == [run["test"] for run in runs.values()]
    assert len(json.loads((out / "digits.json").read_text())["runs"]) == len(METHODS)


@pytest.mark.slow
def test_convolutional_methods_stop_at_the_same_step_inside_a_round(digits_csvs, tmp_path, conv_run):
    # 150 rows: 5 batches, 10 steps a round; every method stops at step 16, inside the second.
    runs = reproduce.main(reproduce_args(digits_csvs, tmp_path, "fmnist", ["baseline", "smote"], 16, "conv"))
    gamo = json.loads((conv_run / "settings.json").read_text())     # the conv trio, 16 steps
    for run in runs:
        assert run["final_step"] == gamo["final_step"] == 16
        assert run["batches"] == run["classifier_updates"] == gamo["batches"] == 8
        assert (ROOT / run["run_dir"] / "gamo_models_16" / "Conv_16.keras").is_file()


@pytest.mark.slow
def test_a_failed_run_is_reported_in_one_line_naming_its_log(digits_csvs, tmp_path):
    train, _ = digits_csvs
    bad_test = tmp_path / "bad_testData.csv"
    bad_test.write_text("1,2,3\n")
    args = ["--dataset", "mnist5k", "--train", str(train), "--test", str(bad_test), "--methods",
            "baseline", "--seeds", "0", "--steps", "4", "--no-jit", "--out-dir", str(tmp_path / "r")]
    with pytest.raises(InputError, match=r"baseline_seed0_steps4\.log: baseline seed 0 failed .*"):
        reproduce.main(args)


@pytest.mark.slow
def test_relabelled_class_order_matches_the_recorded_class_sizes(digits_csvs, dense_comparison):
    # The TPR plot puts TPR k at class_counts[k]: both must be in the relabelled order.
    _, labels = read_labelled_csv(digits_csvs[0])
    relabelled, _, _ = relabel_by_size(labels, labels)
    _, _, runs = dense_comparison
    assert np.bincount(relabelled).tolist() == runs["gamo"]["class_counts"]


@pytest.mark.slow
@pytest.mark.long
def test_the_speed_benchmark_runs_every_case(tmp_path):
    """bench/speed.py --smoke: every timing case on the 3 smallest classes, without XLA."""
    import subprocess

    for case in ("all",):
        result = subprocess.run([sys.executable, str(ROOT / "bench" / "speed.py"), "--case", case, "--smoke"],
                                capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        expected = {"all": {"speedup", "numerics_ratio", "conv_epoch_s", "conv_features_s", "pix_cached_ms"},
                    "memory": {"rss_growth_pct"}}[case]
        assert expected <= set(figures) and figures["peak_rss_mb"] > 0


@pytest.mark.slow
def test_runs_side_by_side_give_the_results_of_runs_one_after_another(digits_csvs, tmp_path, dense_comparison):
    """The module's comparison ran two at a time with one thread each; one at a time with
    one thread, the same runs give the same results."""
    _, _, side_by_side = dense_comparison
    alone = reproduce.main(reproduce_args(digits_csvs, tmp_path, "mnist5k", ["baseline", "gamo"], STEPS, "digits")
                           + ["--jobs", "1", "--threads", "1"])
    for run in alone:
        other = side_by_side[run["method"]]
        assert run["threads"] == other["threads"] == "1"
        assert run["test"] == other["test"] and run["curve"] == other["curve"]


def one_row_class(digits_csvs, tmp_path):
    """The digits with one class cut to a single row: SMOTE refuses it, the baseline trains."""
    rows = np.loadtxt(digits_csvs[0], delimiter=",")
    smallest = rows[:, -1] == 3
    train = tmp_path / "One_row_trainData.csv"
    np.savetxt(train, np.vstack([rows[~smallest], rows[smallest][:1]]), fmt="%d", delimiter=",")
    return train


@pytest.mark.slow
def test_runs_sent_to_a_dask_cluster_come_back_as_local_ones(digits_csvs, tmp_path):
    from distributed import LocalCluster

    train, test = one_row_class(digits_csvs, tmp_path), digits_csvs[1]
    common = ["--dataset", "mnist5k", "--train", str(train), "--test", str(test), "--name", "one_row",
              "--methods", "baseline,smote", "--seeds", str(SEED), "--steps", "20", "--eval-every", "10",
              "--no-jit", "--jobs", "2", "--threads", "1"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        with pytest.raises(InputError, match=r"smote_seed0_steps20\.log: smote seed 0 failed with exit status 2: "
                                             r".*smote needs at least 2 training rows"):
            reproduce.main(common + ["--out-dir", str(tmp_path / "cluster"), "--cluster", cluster.scheduler_address])
    kept = json.loads((tmp_path / "cluster" / "one_row.json").read_text())["runs"]
    assert [run["method"] for run in kept] == ["baseline"]        # the failed run reported, the other kept
    with pytest.raises(InputError, match="smote seed 0 failed"):
        reproduce.main(common + ["--out-dir", str(tmp_path / "local")])
    local = json.loads((tmp_path / "local" / "one_row.json").read_text())["runs"]
    assert local[0]["test"] == kept[0]["test"] and local[0]["curve"] == kept[0]["curve"]
    assert "| baseline | 20 | 10 | 0 |" in (tmp_path / "cluster" / "one_row.md").read_text()


@pytest.mark.slow
def test_the_table_gives_the_whole_commands_time_beside_the_training_time(dense_comparison):
    out, _, runs = dense_comparison
    assert all(run["process_time_s"] >= run["wall_time_s"] > 0 for run in runs.values())
    table = (out / "digits.md").read_text()
    assert "| training time per run | whole command per run |" in table
