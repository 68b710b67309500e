"""The players' losses: losses.csv, Record.npz, the learning curve's panel and
TensorBoard; a NaN or infinite loss (or weight) stops the run with exit status 3
keeping the last good checkpoint; the estimators' loss_curve_ and their
respect for the caller's global random state."""

import random
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import ROOT

from gamo import pictures, seeding
from gamo.cli import dense
from gamo.errors import NotFinite
from gamo.run import loop
from gamo.run.record import RECORD_KEYS, Record

pytestmark = pytest.mark.slow

GAMO_LOSSES = ["M_real", "D_real", "M_fake", "D_fake", *(f"G_{o}_{k}" for k in range(3) for o in "MD")]


# Short runs compile their steps under JAX only: its op-by-op (eager) mode is slower
# than its compilation, while TensorFlow's XLA compilation outlasts them.
JIT = keras.backend.backend() == "jax"


def args(digits_csvs, out, steps=40, *extra):
    train, test = digits_csvs
    return ["--train", str(train), "--test", str(test), "--out-dir", str(out), "--steps", str(steps),
            "--eval-every", "10", "--save-every", "10", *(() if JIT else ("--no-jit",)), *extra]


def read_losses_csv(path):
    header = path.read_text().splitlines()[0].split(",")
    return header, np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


@pytest.fixture(scope="module")
def run_with_every_batch(digits_csvs, tmp_path_factory):
    """A 40-step run with TensorBoard, and every batch's losses as the step returned them."""
    out = tmp_path_factory.mktemp("losses") / "run"
    seen = []
    original = loop.Run.add_losses

    def spy(run, losses, step, progress=None, where=""):
        seen.append((step, dict(losses)))
        return original(run, losses, step, progress, where)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop.Run, "add_losses", spy)
        dense.main(args(digits_csvs, out, 40, "--tensorboard", str(out / "board")))
    return out, seen


@pytest.mark.every_backend
def test_losses_csv_holds_each_losss_mean_since_the_previous_evaluation(run_with_every_batch):
    out, seen = run_with_every_batch
    header, rows = read_losses_csv(out / "losses.csv")
    assert header == ["step", *GAMO_LOSSES]
    assert rows[:, 0].tolist() == [0, 10, 20, 30, 40]
    # Evaluations after the batches of steps 0, 10, 20, 30, and the final one after step 38.
    intervals = [(0, 0), (2, 10), (12, 20), (22, 30), (32, 38)]
    for row, (first, last) in zip(rows, intervals):
        batches = [losses for step, losses in seen if first <= step <= last]
        expected = [np.mean([float(b[name]) for b in batches]) for name in GAMO_LOSSES]
        np.testing.assert_allclose(row[1:], expected, rtol=1e-6)
    assert np.all(rows[:, 1:] > 0) and np.all(np.isfinite(rows))


def test_record_npz_keeps_the_references_keys_and_the_losses(run_with_every_batch):
    out, _ = run_with_every_batch
    header, rows = read_losses_csv(out / "losses.csv")
    with np.load(out / "Record.npz") as record:
        assert sorted(record.files) == sorted([*RECORD_KEYS, *(f"loss_{name}" for name in GAMO_LOSSES)])
        for column, name in enumerate(GAMO_LOSSES, start=1):
            np.testing.assert_allclose(record[f"loss_{name}"], rows[:, column], rtol=1e-6)


def test_tensorboard_event_files_hold_the_same_scalars(run_with_every_batch):
    tf = pytest.importorskip("tensorflow")
    out, _ = run_with_every_batch
    header, rows = read_losses_csv(out / "losses.csv")
    scalars = {}
    for path in (out / "board").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars[value.tag, event.step] = value.simple_value
    for row in rows:
        for column, name in enumerate(GAMO_LOSSES, start=1):
            assert scalars[f"loss/{name}", int(row[0])] == pytest.approx(row[column], rel=1e-6)
    assert {"acsa/test", "gm/train"} <= {tag for tag, _ in scalars}


def test_the_learning_curve_has_a_losses_panel(run_with_every_batch, tmp_path):
    out, _ = run_with_every_batch
    record = Record(40, 10, 4)                       # without losses: two panels
    record.steps_seen[:] = [0, 10, 20, 30, 40]
    pictures.save_learning_curve(tmp_path / "two.png", record)
    from matplotlib.image import imread

    with_losses, without = imread(out / "learning_curve.png"), imread(tmp_path / "two.png")
    assert with_losses.shape[1] == pytest.approx(without.shape[1] * 3 / 2, rel=0.01)


def test_a_run_continued_from_its_checkpoint_has_the_uninterrupted_runs_losses(
        run_with_every_batch, digits_csvs, tmp_path):
    out, _ = run_with_every_batch
    short = tmp_path / "short"
    dense.main(args(digits_csvs, short, 20))
    dense.main(args(digits_csvs, short, 40, "--resume"))
    np.testing.assert_array_equal(read_losses_csv(short / "losses.csv")[1], read_losses_csv(out / "losses.csv")[1])


def test_a_checkpoint_from_before_the_losses_resumes_with_them_missing(digits_csvs, tmp_path):
    out = tmp_path / "old"
    dense.main(args(digits_csvs, out, 20))
    arrays = out / "checkpoints" / "step_20" / "arrays.npz"
    with np.load(arrays) as stored:
        kept = {key: stored[key] for key in stored.files if not key.startswith("loss_")}
    np.savez(arrays, **kept)
    dense.main(args(digits_csvs, out, 40, "--resume"))
    _, rows = read_losses_csv(out / "losses.csv")
    assert np.isnan(rows[:2, 1:]).all() and np.isfinite(rows[2:, 1:]).all()   # step 20 is evaluated again


@pytest.mark.every_backend
def test_a_diverging_run_stops_at_once_with_exit_status_3_naming_the_player(digits_csvs, tmp_path):
    out = tmp_path / "diverged"
    # Uncompiled on every backend: which loss turns NaN first depends on the compiled arithmetic.
    # --lr 1e30 is refused as absurd (gamo.run.settings.LEARNING_RATE_LIMIT): lifted here to make it diverge.
    command = ("import sys; from gamo.run import settings; settings.LEARNING_RATE_LIMIT = float('inf'); "
               "from gamo.cli.dense import cli; sys.argv[0] = 'dense_gamo_main.py'; cli()")
    result = subprocess.run([sys.executable, "-c", command, *map(str, args(digits_csvs, out, 40, "--lr", "1e30",
                                                                            "--no-jit"))],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "step 0: the loss of the classifier M on generated rows (M_fake) is nan" in errors[0]
    assert not (out / "checkpoints").exists() and not (out / "Results.npz").exists()


def test_a_weight_gone_nan_is_never_checkpointed_and_the_last_good_one_is_named(digits_csvs, tmp_path):
    out = tmp_path / "poisoned"

    def poison(run):
        if run.step == 22:       # after the batch of step 20, before its checkpoint
            weights = run.learner.players.classifier.trainable_variables[0]
            weights.assign(np.full(weights.shape, np.nan, "float32"))

    with pytest.raises(NotFinite) as error:
        dense.main(args(digits_csvs, out, 40), after_batch=poison)
    assert "step_20: MLP/" in str(error.value) and "is not finite" in str(error.value)
    assert f"{out / 'checkpoints' / 'step_10'}, is the last good state" in str(error.value)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_10"]


def test_conv_run_records_f_and_m_losses(conv_run):
    header, rows = read_losses_csv(conv_run / "losses.csv")
    assert header == ["step", "FM", *GAMO_LOSSES]
    assert rows[:, 0].tolist() == [0, 10, 16]
    # F+M's epochs come before the batches of steps 0 and 10; none falls in (10, 16].
    assert np.isfinite(rows[:2, 1]).all() and np.isnan(rows[2, 1])
    assert np.isfinite(rows[:, 2:]).all() and (rows[:, 2:] > 0).all()


@pytest.mark.every_backend
def test_estimators_keep_every_batchs_losses_and_the_callers_random_state():
    from imblearn.pipeline import make_pipeline
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    from gamo import GamoClassifier, GamoSampler

    X, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in [(0, 60), (1, 15), (2, 8)]])
    X, y = X[keep], y[keep]
    np.random.seed(123)
    random.seed(123)
    seeding.set_random_seed(123)
    numpy_before, python_before = np.random.get_state(), random.getstate()
    keras_before = seeding.keras_global_state.get_global_attribute(seeding.KERAS_SEED)
    tensorflow_before = seeding._tensorflow_seed_state()
    model = GamoClassifier(steps=12, batch_size=16, latent_dim=4, random_state=0, jit=JIT).fit(X, y)
    numpy_after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(numpy_before, numpy_after))
    assert random.getstate() == python_before
    assert seeding.keras_global_state.get_global_attribute(seeding.KERAS_SEED) == keras_before
    if tensorflow_before is not None:
        after = seeding._tensorflow_seed_state()
        assert after[0] == tensorflow_before[0] and after[1].getstate() == tensorflow_before[1].getstate()
    assert sorted(model.loss_curve_) == sorted(["M_real", "D_real", "M_fake", "D_fake",
                                                "G_M_0", "G_D_0", "G_M_1", "G_D_1"])
    assert all(curve.shape == (6,) and np.isfinite(curve).all() for curve in model.loss_curve_.values())
    again = GamoClassifier(steps=12, batch_size=16, latent_dim=4, random_state=0, jit=JIT).fit(X, y)
    for name, curve in model.loss_curve_.items():
        np.testing.assert_array_equal(curve, again.loss_curve_[name])
    pipeline = make_pipeline(GamoSampler(steps=12, batch_size=16, latent_dim=4, random_state=0, jit=JIT),
                             LogisticRegression(max_iter=200)).fit(X, y)
    assert pipeline[0].estimator_.loss_curve_["M_real"].shape == (6,)


def test_gamo2pix_writes_the_vaes_loss_and_terms(conv_run, digits_csvs, tmp_path):
    from gamo.cli import gamo2pix

    train, _ = digits_csvs
    out = gamo2pix.main(["--train", str(train), "--gamo-dir", str(conv_run), "--out-dir", str(tmp_path / "pix"),
                    "--steps", "6", "--picture-every", "4", "--save-every", "4", "--num-images", "2",
                    "--classes", "0,1", "--no-jit", "--tensorboard", str(tmp_path / "board")])
    header, rows = read_losses_csv(out / "losses.csv")
    assert header == ["class", "step", "loss", "reconstruction", "KL"]
    assert rows[:, :2].tolist() == [[0, 0], [0, 4], [0, 6], [1, 0], [1, 4], [1, 6]]
    np.testing.assert_allclose(rows[:, 2], rows[:, 3] + rows[:, 4], rtol=1e-5)
    assert np.isfinite(rows).all()
    tf = pytest.importorskip("tensorflow")
    logged = {(value.tag, event.step): value.simple_value for path in (tmp_path / "board").iterdir()
              for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value}
    assert logged[("class_1/KL", 6 + 6)] == pytest.approx(rows[5, 4], rel=1e-6)    # class 1 after class 0's 6 steps
