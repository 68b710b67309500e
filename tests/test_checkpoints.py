"""Checkpoints a user can trust: values keyed by name, a resume that compares only
what changes the run's mathematics, train-longer, the schedule's even steps, one
writer per output folder, and no side effects of importing the library."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_script

from gamo import errors
from gamo.cli import dense
from gamo.errors import InputError
from gamo.run import checkpoint

pytestmark = pytest.mark.slow

RUN = ["--eval-every", "10", "--save-every", "10", "--no-jit"]


def args(train, test, out, steps, *extra):
    return ["--train", str(train), "--test", str(test), "--out-dir", str(out), "--steps", str(steps), *RUN, *extra]


def assert_same_record(first, second):
    for name in ("Record.npz", "Results.npz"):
        with np.load(first / name) as a, np.load(second / name) as b:
            assert sorted(a.files) == sorted(b.files)
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name} {key}")


def final_weights(folder, steps):
    with np.load(folder / "checkpoints" / f"step_{steps}" / "variables.npz") as stored:
        return {key: stored[key] for key in stored.files}


@pytest.fixture(scope="module")
def runs(digits_csvs, tmp_path_factory):
    """An uninterrupted 40-step run and a finished 20-step run (to be continued)."""
    train, test = digits_csvs
    root = tmp_path_factory.mktemp("checkpoints")
    dense.main(args(train, test, root / "whole", 40))
    dense.main(args(train, test, root / "short", 20))
    return root


def copy_of_short(runs, tmp_path, name="run"):
    out = tmp_path / name
    shutil.copytree(runs / "short", out)
    return out


def test_a_finished_run_continued_to_more_steps_equals_the_longer_run(runs, digits_csvs, tmp_path):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    dense.main(args(train, test, out, 40, "--resume"))
    assert_same_record(runs / "whole", out)
    whole, continued = final_weights(runs / "whole", 40), final_weights(out, 40)
    assert list(whole) == list(continued)
    for key in whole:
        np.testing.assert_array_equal(whole[key], continued[key], err_msg=key)


def test_values_are_keyed_by_name_so_a_shuffled_checkpoint_resumes_identically(runs, digits_csvs, tmp_path):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    path = out / "checkpoints" / "step_20" / "variables.npz"
    with np.load(path) as stored:
        values = {key: stored[key] for key in stored.files}
    assert any(key.startswith("adam_G_M_") for key in values) and "adam/shared_iterations" in values
    names = list(values)
    np.random.default_rng(0).shuffle(names)
    np.savez(path, **{name: values[name] for name in names})
    dense.main(args(train, test, out, 40, "--resume"))
    assert_same_record(runs / "whole", out)


@pytest.mark.parametrize("change, message", [
    ("rename", r"missing: MLP/MLP_out/bias; unknown: MLP/MLP_out/renamed"),
    ("remove", r"missing: MLP/MLP_out/bias; unknown: none"),
])
def test_a_checkpoint_with_a_renamed_or_missing_value_is_refused_in_one_line(
        runs, digits_csvs, tmp_path, change, message):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    path = out / "checkpoints" / "step_20" / "variables.npz"
    with np.load(path) as stored:
        values = {key: stored[key] for key in stored.files}
    bias = values.pop("MLP/MLP_out/bias")
    if change == "rename":
        values["MLP/MLP_out/renamed"] = bias
    np.savez(path, **values)
    with pytest.raises(InputError, match=message) as error:
        dense.main(args(train, test, out, 40, "--resume"))
    assert "\n" not in str(error.value) and "written by another version" in str(error.value)


def test_a_checkpoint_of_the_first_format_resumes_by_position(runs, digits_csvs, tmp_path):
    """Checkpoints written before the names (arr_0, arr_1, ... in the variables' order) still resume."""
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    path = out / "checkpoints" / "step_20" / "variables.npz"
    with np.load(path) as stored:
        positional = {f"arr_{index}": stored[key] for index, key in enumerate(stored.files)}
    np.savez(path, **positional)
    dense.main(args(train, test, out, 40, "--resume"))
    assert_same_record(runs / "whole", out)


def test_a_run_folder_moved_elsewhere_and_data_spelled_otherwise_resumes_there(runs, digits_csvs, tmp_path):
    train, test = digits_csvs
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(copy_of_short(runs, tmp_path)), moved)
    shutil.copy(train, tmp_path / "x.csv")
    # The data from another folder, spelled ./x.csv; the output folder by a relative path.
    result = run_script("dense_gamo_main.py", "--train", "./x.csv", "--test", test, "--out-dir",
                        "elsewhere/moved", "--steps", "40", *RUN, "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stdout
    assert_same_record(runs / "whole", moved)


def test_a_resume_with_other_data_content_says_so_in_one_line(runs, digits_csvs, tmp_path):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    other = tmp_path / "train.csv"
    other.write_text(train.read_text().replace("\n", "\n", 1) + train.read_text().splitlines()[0] + "\n")
    with pytest.raises(InputError, match=r"holds the outputs of another run \(the content of --train \(SHA-256 "
                                         r"[0-9a-f]{12} there, [0-9a-f]{12} here\)\)") as error:
        dense.main(args(other, test, out, 40, "--resume"))
    assert "\n" not in str(error.value)


def test_a_resume_past_the_checkpoints_steps_is_refused_in_one_line(runs, digits_csvs, tmp_path):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)
    with pytest.raises(InputError, match="at step 20, past --steps 10; give --steps 20 or more"):
        dense.main(args(train, test, out, 10, "--resume"))


@pytest.mark.parametrize("option, value", [("--steps", 301), ("--eval-every", 101), ("--save-every", 5)])
def test_odd_schedule_values_are_refused_in_one_line(digits_csvs, tmp_path, option, value, capsys):
    train, test = digits_csvs
    with pytest.raises(SystemExit) as exit_status:
        errors.run_cli(dense.main, ["--train", str(train), "--test", str(test),
                                                    "--out-dir", str(tmp_path / "odd"), option, str(value)])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: {option}: must be even (step grows by 2 per batch, as "
                                               f"in the reference), got {value}")
    assert not (tmp_path / "odd").exists()


def test_one_writer_per_output_folder_and_a_killed_run_leaves_no_lock(digits_csvs, tmp_path):
    train, test = digits_csvs
    out = tmp_path / "busy"
    command = [sys.executable, str(ROOT / "dense_gamo_main.py"), *args(train, test, out, 4000)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoints").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1][-2000:]
        second = run_script("dense_gamo_main.py", *args(train, test, out, 4000, "--resume"))
        assert second.returncode == 2
        assert second.stderr.strip() == (f"error: {out}: in use by a running run (process {first.pid}); wait "
                                         "for it to end, or pass another --out-dir")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    third = run_script("dense_gamo_main.py", *args(train, test, out, 24, "--overwrite"))   # the lock gone
    assert third.returncode == 0, third.stderr[-3000:]
    assert json.loads((out / "settings.json").read_text())["status"] == "finished"


def test_importing_gamo_changes_neither_the_umask_nor_file_descriptor_2(tmp_path):
    script = tmp_path / "user_program.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "calls = []\n"
        "for name in ('umask', 'dup2'):\n"
        "    original = getattr(os, name)\n"
        "    setattr(os, name, lambda *a, _n=name, _o=original: calls.append(_n) or _o(*a))\n"
        "before = os.fstat(2)\n"
        "import gamo\n"
        "after = os.fstat(2)\n"
        "print(calls, (before.st_ino, before.st_dev) == (after.st_ino, after.st_dev))\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[] True"


def test_running_out_of_memory_while_loading_a_checkpoint_ends_the_run_in_one_line(
        runs, digits_csvs, tmp_path, monkeypatch, capsys):
    train, test = digits_csvs
    out = copy_of_short(runs, tmp_path)

    def no_memory(path):
        raise MemoryError()

    monkeypatch.setattr(checkpoint, "read_npz", no_memory)
    with pytest.raises(SystemExit) as exit_status:
        errors.run_cli(dense.main, args(train, test, out, 40, "--resume"))
    assert exit_status.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out / 'checkpoints' / 'step_20'}: not enough memory to read the checkpoint")
    assert not (out / "checkpoints" / "step_30").exists()
