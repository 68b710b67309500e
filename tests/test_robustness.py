"""Runs that survive interruption and bad input: checkpoints, --resume, signals,
atomic files and one-line errors."""

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import ROOT, SEED, run_script

from gamo.cli import dense
from gamo.data import load_dataset
from gamo.errors import InputError
from gamo.run import checkpoint, folder
from gamo.run.record import RECORD_KEYS
from gamo.run.settings import comparable

LONG_RUN = ["--steps", "400", "--eval-every", "20", "--save-every", "20"]


def dense_args(digits_csvs, out, *extra):
    train, test = digits_csvs
    return ["--train", str(train), "--test", str(test), "--out-dir", str(out), *LONG_RUN, *extra]


def backend_env(backend):
    return {**os.environ, "KERAS_BACKEND": backend}


def start(args, backend="tensorflow"):
    return subprocess.Popen([sys.executable, str(ROOT / "dense_gamo_main.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=backend_env(backend))


def wait_for(path_glob_root, pattern, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(path_glob_root.glob(pattern)):
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()[1][-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} after {timeout} s")


def finish(args, backend="tensorflow"):
    result = subprocess.run([sys.executable, str(ROOT / "dense_gamo_main.py"), *args],
                            capture_output=True, text=True, timeout=600, env=backend_env(backend))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=[pytest.mark.long, pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed")])])
def test_killed_run_resumes_to_the_same_record_as_an_uninterrupted_one(backend, digits_csvs, tmp_path):
    # TensorFlow without XLA, to keep the test short: three processes would each
    # compile it. JAX with it: eager JAX is slower than its compilation.
    options = ("--no-jit",) if backend == "tensorflow" else ()
    finish(dense_args(digits_csvs, tmp_path / "whole", *options), backend)
    killed = tmp_path / "killed"
    process = start(dense_args(digits_csvs, killed, *options), backend)
    wait_for(killed, "checkpoints/step_*", process)
    delay = random.Random(SEED).uniform(0, 1.0)       # a step after the first checkpoint, repeatable
    print(f"killing {delay:.3f} s after the first checkpoint")
    time.sleep(delay)
    process.kill()
    process.communicate()
    assert not (killed / "Results.npz").exists(), "the run ended before it was killed"
    # The training time up to a checkpoint counts in the resumed run's wall time.
    newest = max((killed / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    state = json.loads((newest / "state.json").read_text())
    assert state["wall_time_s"] > 0
    (newest / "state.json").write_text(json.dumps({**state, "wall_time_s": state["wall_time_s"] + 1000}))
    resumed = finish(dense_args(digits_csvs, killed, *options, "--resume"), backend)
    assert "resumed from" in resumed.stdout
    whole, again = np.load(tmp_path / "whole" / "Record.npz"), np.load(killed / "Record.npz")
    assert sorted(whole.files) == sorted(again.files) and set(RECORD_KEYS) < set(whole.files)
    for key in whole.files:                    # the scores and the losses
        np.testing.assert_array_equal(whole[key], again[key], err_msg=key)
    assert json.loads((killed / "settings.json").read_text())["wall_time_s"] > state["wall_time_s"] + 1000


@pytest.fixture(scope="module")
def interrupted(digits_csvs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sigint") / "run"
    process = start(dense_args(digits_csvs, out, "--no-jit"))
    wait_for(out, "checkpoints/step_*", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return out, process.returncode, stderr


@pytest.mark.slow
def test_sigint_writes_a_checkpoint_and_partial_results_then_exits_130(interrupted):
    out, returncode, stderr = interrupted
    assert returncode == 130
    assert "--resume" in stderr
    steps = sorted(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert steps and steps[-1] < 400
    record = np.load(out / "Record.npz")
    assert record["acsaSaveTs"].shape == (21,)
    assert np.load(out / "Results.npz")["acsa"].shape == ()


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(interrupted, digits_csvs):
    out, _, _ = interrupted
    result = subprocess.run([sys.executable, str(ROOT / "dense_gamo_main.py"),
                             *dense_args(digits_csvs, out, "--no-jit", "--resume", "--batch-size", "16")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch_size = 32" in lines[0] and "16" in lines[0]


def loads(path):
    """Open a file the way its reader would; raise if it is damaged."""
    if path.suffix == ".npz":
        with np.load(path) as data:
            [data[key] for key in data.files]
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
    elif path.suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.read_bytes()[-8:-4] == b"IEND"


@pytest.mark.slow
def test_no_file_is_ever_half_written_when_killed_while_saving(digits_csvs, tmp_path):
    rng = random.Random(SEED)
    for trial in range(2):
        out = tmp_path / f"trial_{trial}"
        process = start(dense_args(digits_csvs, out, "--no-jit", "--save-every", "2", "--eval-every", "2"))
        wait_for(out, "gamo_models_*/*.keras", process)
        time.sleep(rng.uniform(0, 2))
        process.kill()
        process.communicate()
        files = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
                 and ".tmp-" not in str(p.relative_to(out))]
        assert files
        for path in files:
            loads(path)


def write_rows(path, rows):
    np.savetxt(path, rows, fmt="%g", delimiter=",")


GOOD = np.column_stack([np.arange(40).reshape(10, 4), [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]])


@pytest.mark.parametrize("case, train, test, message", [
    ("empty", None, GOOD, "file is empty"),
    ("nan", np.where(GOOD == 5, np.nan, GOOD), GOOD, "NaN or infinite value at line 2, column 2"),
    ("features", GOOD, GOOD[:, 1:], "3 features, but .* has 4"),
    ("unseen", GOOD, np.column_stack([GOOD[:, :-1], np.full(10, 7)]), "label 7 does not occur"),
    ("one_class", np.column_stack([GOOD[:, :-1], np.zeros(10)]), GOOD, "need at least 2 classes"),
])
def test_bad_inputs_are_refused_in_one_line_with_no_output(tmp_path, case, train, test, message):
    train_path, test_path, out = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "out"
    if train is None:
        train_path.write_text("")
    else:
        write_rows(train_path, train)
    write_rows(test_path, test)
    with pytest.raises(InputError, match=message) as error:
        dense.main(["--train", str(train_path), "--test", str(test_path), "--out-dir", str(out)])
    assert "\n" not in str(error.value)
    assert not out.exists()


def test_unusable_output_folder_is_refused(tmp_path, digits_csvs):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot create output folder"):
        dense.main(dense_args(digits_csvs, blocker / "out"))


def test_a_class_with_a_single_point_is_allowed_with_a_warning(tmp_path, capsys):
    rows = np.column_stack([np.arange(40).reshape(10, 4), [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]])
    write_rows(tmp_path / "train.csv", rows)
    dataset = load_dataset(tmp_path / "train.csv", tmp_path / "train.csv", scale=False)
    assert dataset.imbalance.counts.tolist() == [1, 3, 6]
    assert "class 2 has a single training row" in capsys.readouterr().err


def test_a_folder_holding_another_runs_outputs_is_refused(tmp_path):
    from gamo.cli import fashion

    out = str(tmp_path / "fMnist_100_Gamo")
    folder.claim_output_dir(dense.Settings(out_dir=out))
    folder.claim_output_dir(dense.Settings(out_dir=out, resume=True))        # the same run again
    with pytest.raises(InputError, match="holds the outputs of another run \\(image_shape = "):
        folder.claim_output_dir(fashion.ConvSettings(out_dir=out))
    with pytest.raises(InputError, match="lr = 0.0002 there, 0.001 here"):
        folder.claim_output_dir(dense.Settings(out_dir=out, lr=0.001))
    folder.claim_output_dir(dense.Settings(out_dir=out, steps=400, resume=True))   # the same run, longer
    with pytest.raises(InputError, match="holds the outputs of an unfinished run; continue it with --resume"):
        folder.claim_output_dir(dense.Settings(out_dir=out))              # a new run, same settings


def test_checkpoint_of_other_shapes_is_refused_before_anything_is_loaded(tmp_path):
    keras = pytest.importorskip("keras")
    settings = dense.Settings()
    state = {"settings": comparable(settings)}
    checkpoint.write_checkpoint(tmp_path, 2, {"a": np.ones(3, "float32"), "b": np.ones((2, 2), "float32")}, state, {})
    mine = {"a": keras.Variable(np.zeros(3, "float32")), "b": keras.Variable(np.zeros(5, "float32"))}
    with pytest.raises(InputError, match=r"b is float32\[2, 2\] there, float32\[5\] here"):
        checkpoint.read_checkpoint(tmp_path, settings, mine)
    assert all(not np.asarray(v).any() for v in mine.values())
    mine["b"] = keras.Variable(np.zeros((2, 2), "float32"))
    _, loaded_state, _ = checkpoint.read_checkpoint(tmp_path, settings, mine)
    assert loaded_state == state and all(np.asarray(v).all() for v in mine.values())


@pytest.mark.slow
def test_a_repeated_command_never_overwrites_a_finished_run(digits_csvs, tmp_path):
    """The same command again is refused in one line naming the three ways on;
    --overwrite replaces the run, --resume continues it."""
    train, test = digits_csvs
    out = tmp_path / "run"
    command = ["dense_gamo_main.py", "--train", train, "--test", test, "--out-dir", out, "--steps", "20",
               "--eval-every", "10", "--save-every", "10", "--no-jit"]
    assert run_script(*command).returncode == 0
    results = (out / "Results.npz").read_bytes()
    other = run_script(*command, "--seed", "1")
    assert other.returncode == 2 and "--overwrite to replace them" in other.stderr
    again = run_script(*command)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"error: {out}: holds the outputs of a finished run; continue it with --resume (with --steps N to "
        "train it longer), replace it with --overwrite, or pass another --out-dir"]
    assert (out / "Results.npz").read_bytes() == results
    (out / "mine.txt").write_text("a file of the run's folder")
    replaced = run_script(*command, "--seed", "1", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "Results.npz").read_bytes() != results and not (out / "mine.txt").exists()
    assert json.loads((out / "settings.json").read_text())["seed"] == 1
    longer = run_script(*command, "--seed", "1", "--resume", "--steps", "30")
    assert longer.returncode == 0, longer.stderr
    assert json.loads((out / "settings.json").read_text())["final_step"] == 30


@pytest.mark.parametrize("case, features", [
    ("standardised", np.random.default_rng(0).standard_normal((10, 4))),
    ("digit intensities 0-16", np.arange(40).reshape(10, 4) % 17),
    ("above 255", np.arange(40).reshape(10, 4) * 10),
])
def test_features_that_are_not_pixels_are_refused_without_no_scale(tmp_path, case, features):
    """The reference's scaling flattens or distorts anything but 0-255 pixels, and
    GAMO then trains to chance with exit code 0: refused in one line naming --no-scale."""
    write_rows(tmp_path / "train.csv", np.column_stack([features, GOOD[:, -1]]))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="not 0-255 pixels .*pass --no-scale") as error:
        dense.main(["--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "train.csv"),
                    "--out-dir", str(out)])
    assert "\n" not in str(error.value) and not out.exists()
    assert load_dataset(tmp_path / "train.csv", tmp_path / "train.csv", scale=False).x_train.shape == (10, 4)


def test_a_chance_level_result_is_said_in_the_summary_line_and_the_table():
    from gamo.compare.summary import table
    from gamo.metrics import chance_note

    assert "every test row of one class right" in chance_note([0.0, 1.0, 0.0])
    assert chance_note([0.3, 0.3, 0.3]) and not chance_note([0.5, 0.4, 0.3])
    run = {"method": "gamo", "seed": 0, "steps": 10, "batches": 5, "wall_time_s": 1.0,
           "test": {"acsa": 1 / 3, "gm": 0.0, "tpr": [0.0, 1.0, 0.0]}}
    text = table("digits", [run], "here")
    assert "| gamo (chance level: 1 of 1) |" in text and "**Warning: chance level**" in text


@pytest.mark.parametrize("text, message", [
    ("1;2;0\n3;4;1\n", "separated by semicolons, not commas"),
    ("1\t2\t0\n3\t4\t1\n", "separated by tabs, not commas"),
    (",a,b,label\n0,1,2,0\n1,3,4,1\n", "first column has no name, as a pandas index"),
    ("Unnamed: 0,a,b,label\n0,1,2,0\n1,3,4,1\n", "write the file with index=False"),
])
def test_a_csv_in_another_shape_gets_a_hint(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        dense.main(["--train", str(tmp_path / "t.csv"), "--test", str(tmp_path / "t.csv"), "--no-scale",
                    "--out-dir", str(tmp_path / "out")])


@pytest.mark.parametrize("option, message", [
    (["--lr", "1000"], r"--lr: must be in \(0, 1\]"), (["--lr", "0"], r"--lr: must be in \(0, 1\]"),
    (["--beta1", "1"], r"--beta1: must be in \[0, 1\)"),
    (["--batch-size", "100000"], "--batch-size 100000: larger than the 10 training rows"),
])
def test_absurd_learning_rates_and_batch_sizes_are_refused(tmp_path, option, message):
    write_rows(tmp_path / "train.csv", GOOD)
    with pytest.raises(InputError, match=message):
        dense.main(["--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "train.csv"), "--no-scale",
                    "--out-dir", str(tmp_path / "out"), *option])
    assert not (tmp_path / "out").exists()
