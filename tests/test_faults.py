"""Faults nobody types in: a damaged checkpoint, none usable, and a write that fails
part-way. The run must never lose a finished result or a good checkpoint."""

import json
import re
import resource
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import ROOT

from gamo.cli import dense
from gamo.errors import InputError

pytestmark = pytest.mark.slow

RUN = ["--steps", "40", "--eval-every", "10", "--save-every", "10", "--no-jit"]


def run_args(digits_csvs, out, *extra):
    train, test = digits_csvs
    return ["--train", str(train), "--test", str(test), "--out-dir", str(out), *RUN, *extra]


@pytest.fixture(scope="module")
def finished(digits_csvs, tmp_path_factory):
    """A finished run, kept as it was: checkpoints step_30 and step_40 (the newest two)
    and every output. Each test works on a copy in the run's own folder (`fresh`)."""
    out = tmp_path_factory.mktemp("faults") / "run"
    dense.main(run_args(digits_csvs, out))
    # Each checkpoint is named as the models saved at the same moment are.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_30", "step_40"]
    assert sorted(p.name for p in out.glob("gamo_models_*")) == [f"gamo_models_{n}" for n in (10, 20, 30, 40)]
    shutil.copytree(out, out.with_name("pristine"))
    return out.with_name("pristine")


@pytest.fixture()
def fresh(finished):
    """The run's folder (its settings name it), reset to the finished run."""
    out = finished.with_name("run")
    shutil.rmtree(out)
    shutil.copytree(finished, out)
    return out


def contents(folder):
    """Every file's content; a .keras file by its weights and configuration, without
    what Keras stamps on each save (the time, and Python object ids in the config)."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != ".lock"):
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                found[path.relative_to(folder)] = {
                    name: re.sub(rb'"shared_object_id": \d+', b"", archive.read(name))
                    for name in archive.namelist() if name != "metadata.json"}
        else:
            found[path.relative_to(folder)] = path.read_bytes()
    return found


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(finished, fresh, digits_csvs, capsys):
    out = fresh
    truncate(out / "checkpoints" / "step_40" / "variables.npz")
    dense.main(run_args(digits_csvs, out, "--resume"))
    lines = capsys.readouterr()
    warnings = [line for line in lines.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "step_40: damaged" in warnings[0]
    assert f"resumed from {out / 'checkpoints' / 'step_30'}, continuing at step 32" in lines.out
    # Steps 32-40 played again give the finished run's outputs (but for the wall times).
    assert without_wall_times(contents(out)) == without_wall_times(contents(finished))


def without_wall_times(files):
    """The files without settings.json, and each checkpoint's state without its wall time."""
    kept = {}
    for name, content in files.items():
        if name.name == "state.json":
            kept[name] = {**json.loads(content), "wall_time_s": None}
        elif str(name) != "settings.json":
            kept[name] = content
    return kept


def test_no_usable_checkpoint_is_refused_in_one_line_and_nothing_changes(fresh, digits_csvs):
    out = fresh
    truncate(out / "checkpoints" / "step_40" / "variables.npz")
    (out / "checkpoints" / "step_30" / "state.json").write_text("{")
    before = contents(out)
    with pytest.raises(InputError, match="no usable checkpoint") as error:
        dense.main(run_args(digits_csvs, out, "--resume"))
    assert "\n" not in str(error.value) and "step_40" in str(error.value) and "step_30" in str(error.value)
    assert contents(out) == before


def limited_file_size(limit):
    """For a child process: files larger than `limit` bytes cannot be written
    (EFBIG, as on a full disk, instead of the SIGXFSZ that would kill it)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_failed_write_ends_the_run_keeping_every_finished_file(finished, fresh, digits_csvs):
    out = fresh
    shutil.rmtree(out / "checkpoints" / "step_40")       # the run is to redo the batches after step 30
    checkpoint_size = (out / "checkpoints" / "step_30" / "variables.npz").stat().st_size
    before = contents(out)
    # Every output fits below the limit but the checkpoint: its write fails part-way.
    failed = subprocess.run([sys.executable, str(ROOT / "dense_gamo_main.py"), *run_args(digits_csvs, out, "--resume")],
                            capture_output=True, text=True, timeout=600,
                            preexec_fn=limited_file_size(checkpoint_size // 2))
    assert failed.returncode == 1, failed.stderr[-2000:]
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out / 'checkpoints' / 'step_40'}: cannot write the checkpoint (File too large)"]
    assert contents(out) == before                        # outputs rewritten with the same content
    assert not list(out.rglob(".tmp-*"))
    # A later --resume continues from the last good checkpoint to the finished run's results.
    resumed = subprocess.run([sys.executable, str(ROOT / "dense_gamo_main.py"), *run_args(digits_csvs, out, "--resume")],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "continuing at step 32" in resumed.stdout
    for name in ("Record.npz", "Results.npz"):
        with np.load(finished / name) as whole, np.load(out / name) as again:
            for key in whole.files:
                np.testing.assert_array_equal(whole[key], again[key])
