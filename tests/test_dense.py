"""GAMO on feature vectors: networks, the game's updates, and whole runs."""

import json

import numpy as np
import pytest
from conftest import SEED, run_in_new_process, run_script

from gamo import game, nets, optim
from gamo.cli import dense
from gamo.data import Imbalance, one_hot
from gamo.learner import ClassifierOnly
from gamo.run.record import RECORD_KEYS
from gamo.run.settings import settings_from

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

REFERENCE_COUNTS = np.array([40, 60, 100, 200, 350, 500, 750, 1000, 2000, 4000])


# ---------------------------------------------------------------- networks

def test_parameter_counts_match_the_reference_architecture():
    assert nets.build_classifier(784, 10).count_params() == 235_146
    # D: (784 + 10) * 256 + 256, 256 * 128 + 128, 128 + 1
    assert nets.build_discriminator(784, 10).count_params() == 236_545
    # trunk: (100 + 10) * 256 + 256, BN 4 * 256, 256 * 64 + 64, BN 4 * 64
    trunk = nets.build_generator_trunk(100, 10)
    assert trunk.count_params() == 46_144
    assert trunk.output.shape[-1] == 64
    for n in (40, 2000):
        igu = nets.build_igu(64, n, 784)
        trainable = sum(int(np.prod(v.shape)) for v in igu.trainable_variables)
        assert trainable == 64 * n + n
        assert tuple(nets.class_points(igu).shape) == (n, 784)


def test_igu_outputs_convex_combinations_of_its_class_points():
    rng = np.random.default_rng(SEED)
    points = rng.normal(size=(7, 5)).astype(np.float32)
    igu = nets.build_igu(64, 7, 5)
    nets.set_class_points(igu, points)
    code = rng.normal(size=(6, 64)).astype(np.float32)
    weights = nets.convex_weights_model(igu)(code).numpy()
    assert (weights >= 0).all()
    np.testing.assert_allclose(weights.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(igu(code).numpy(), weights @ points, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- the game

@pytest.fixture()
def small_game():
    """A 4-class game on 16 features (eager: every update is checked on its own)."""
    keras.utils.set_random_seed(SEED)
    counts = np.array([5, 8, 12, 20])
    gamo = game.Gamo(16, Imbalance(counts), latent_dim=8, batch_size=8, jit=False)
    rng = np.random.default_rng(SEED)
    labels = np.repeat(np.arange(4), counts)
    features = rng.normal(size=(labels.size, 16)).astype(np.float32)
    gamo.players.set_class_points(features, labels)
    return gamo, features, labels, rng


def snapshot(model):
    return [np.array(v) for v in model.variables]


def changed(before, model):
    return any(not np.array_equal(a, np.array(v)) for a, v in zip(before, model.variables))


def all_models(gamo):
    p = gamo.players
    return {"M": p.classifier, "D": p.discriminator, "G": p.trunk,
            **{f"IGU_{k}": igu for k, igu in p.igus.items()}}


def updates_change_only(gamo, action, expected):
    before = {name: snapshot(model) for name, model in all_models(gamo).items()}
    action()
    moved = {name for name, model in all_models(gamo).items() if changed(before[name], model)}
    assert moved == expected


def test_generator_update_changes_neither_classifier_nor_discriminator(small_game):
    gamo, _, _, rng = small_game
    noise = rng.normal(size=(2, 8)).astype(np.float32)
    labels = one_hot(np.full(2, 1), 4)
    updates_change_only(gamo, lambda: gamo.generator_updates(1, noise, labels), {"G", "IGU_1"})


def test_classifier_and_discriminator_updates_change_nothing_else(small_game):
    gamo, features, labels, _ = small_game
    x, y = features[:8], one_hot(labels[:8], 4)
    updates_change_only(gamo, lambda: gamo.classifier_update(x, y), {"M"})
    updates_change_only(gamo, lambda: gamo.discriminator_update(x, y, np.ones((8, 1), "float32")), {"D"})


def moving_statistics(trunk):
    return [np.array(v) for v in trunk.non_trainable_variables]


def test_batchnorm_statistics_frozen_in_fake_batch_and_updated_by_generator(small_game):
    gamo, _, _, rng = small_game
    before = moving_statistics(gamo.players.trunk)
    noise = gamo.draw(rng, 8)
    fake = gamo.players.fake_batch(noise.fake_noise, noise.fake_labels)
    for a, b in zip(before, moving_statistics(gamo.players.trunk)):
        np.testing.assert_array_equal(a, b)
    assert fake.shape == (8, 16)
    gamo.generator_updates(0, noise.class_noise[0], noise.class_labels[0])
    assert all(not np.array_equal(a, b) for a, b in zip(before, moving_statistics(gamo.players.trunk)))


def test_fake_batch_rows_come_from_the_igu_of_their_label(small_game):
    gamo, features, labels, rng = small_game
    noise = gamo.draw(rng, 8)
    fake = gamo.players.fake_batch(noise.fake_noise, noise.fake_labels).numpy()
    code = gamo.players.trunk([noise.fake_noise, noise.fake_labels], training=False)
    for row, k in enumerate(noise.fake_labels.argmax(axis=1)):
        assert k in gamo.minority
        weights = nets.convex_weights_model(gamo.players.igus[k])(code[row:row + 1]).numpy()
        np.testing.assert_allclose(fake[row], (weights @ features[labels == k])[0], rtol=1e-4, atol=1e-5)


def test_generator_batch_has_ceil_batch_over_classes_rows_per_class(small_game):
    gamo, _, _, rng = small_game
    noise = gamo.draw(rng, 8)
    assert noise.class_noise.shape == (3, 2, 8)          # 3 minority classes, ceil(8 / 4) rows
    assert noise.class_labels[2].argmax(axis=1).tolist() == [2, 2]


@pytest.mark.slow
def test_the_step_is_traced_once_for_full_and_shorter_batches(small_game):
    gamo, features, labels, rng = small_game
    onehot = one_hot(labels, 4)
    alone = ClassifierOnly(nets.build_classifier(16, 4), jit=False)
    for learner in (gamo, alone):
        for rows in (slice(0, 8), slice(8, 13), slice(13, 21)):
            learner.train_on_batch(features[rows], onehot[rows], rng)
        assert learner.compiled_step.experimental_get_tracing_count() == 1


def train_with(optimizer, starts, targets, jit):
    """Variables after one update per target of sum_i (i + 1) * ||v_i - target||^2."""
    variables = [tf.Variable(start) for start in starts]
    optimizer.build(variables)

    def loss(target):
        return tf.add_n([(i + 1) * tf.reduce_sum(tf.square(v - target)) for i, v in enumerate(variables)])

    step = tf.function(lambda target: optim.update(optimizer, variables, lambda: loss(target)),
                       jit_compile=jit)
    for target in targets:
        step(tf.constant(target))
    return [v.numpy() for v in variables], int(optimizer.iterations.numpy())


@pytest.mark.parametrize("jit", [False, True])
def test_flat_adam_gives_keras_adam_results(jit):
    rng = np.random.default_rng(SEED)
    starts = [rng.normal(size=shape).astype(np.float32) for shape in ((5, 3), (3,), (2, 2, 3))]
    targets = rng.normal(size=6).astype(np.float32)
    flat, flat_count = train_with(optim.FlatAdam(0.01, 0.5), starts, targets, jit)
    theirs, their_count = train_with(keras.optimizers.Adam(0.01, beta_1=0.5), starts, targets, jit)
    assert flat_count == their_count == len(targets)
    for mine, expected, start in zip(flat, theirs, starts):
        assert not np.array_equal(mine, start)
        np.testing.assert_allclose(mine, expected, rtol=1e-6, atol=1e-7)


def test_without_discriminator_d_is_never_trained():
    keras.utils.set_random_seed(SEED)
    gamo = game.Gamo(16, Imbalance(np.array([5, 8, 12, 20])), latent_dim=8, batch_size=8,
                            use_discriminator=False, jit=False)
    gamo.players.set_class_points(np.zeros((45, 16), "float32"), np.repeat(np.arange(4), [5, 8, 12, 20]))
    before = snapshot(gamo.players.discriminator)
    rng = np.random.default_rng(SEED)
    losses = gamo.train_on_batch(np.ones((8, 16), "float32"), one_hot(np.arange(8) % 4, 4), rng)
    assert not changed(before, gamo.players.discriminator)
    assert not any(name.startswith(("D_", "G_D")) for name in losses)
    assert "DIS" not in gamo.models()


# ---------------------------------------------------------------- whole runs

RUN_ARGS = ["--steps", "40", "--eval-every", "10", "--save-every", "20", "--batch-size", "32"]


def run_main(digits_csvs, out_dir, *extra):
    train, test = digits_csvs
    return dense.main(["--train", str(train), "--test", str(test), "--out-dir", str(out_dir),
                             *RUN_ARGS, *extra])


@pytest.fixture(scope="module")
def finished_run(digits_csvs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "Digits_8_Gamo"
    run_main(digits_csvs, out)
    return out


@pytest.mark.slow
def test_short_run_writes_every_output_with_reference_keys_and_shapes(finished_run):
    out, c = finished_run, 4
    record = np.load(out / "Record.npz")
    assert sorted(key for key in record.files if not key.startswith("loss_")) == sorted(RECORD_KEYS)
    length = 40 // 10 + 1
    for key in ("acsaSaveTr", "gmSaveTr", "accSaveTr", "acsaSaveTs", "gmSaveTs", "accSaveTs"):
        assert record[key].shape == (length,)
    assert record["tprSaveTs"].shape == (length, c)
    assert record["confMatSaveTr"].shape == (length, c, c)
    assert record["confMatSaveTs"][-1].sum() == 80               # 20 test rows per class
    results = np.load(out / "Results.npz")
    assert sorted(results.files) == ["acc", "acsa", "confMat", "gm", "tpr"]
    assert results["acsa"] == pytest.approx(record["acsaSaveTs"][-1])
    pictures = sorted(p.name for p in (out / "Pictures").iterdir())
    # Every evaluation's picture, and the final step's (as the reference's last one).
    assert pictures == [f"Digits_8_Gamo_{step}.png" for step in (0, 10, 20, 30, 40)]
    for step in (20, 40):
        names = sorted(p.name for p in (out / f"gamo_models_{step}").iterdir())
        assert names == sorted([f"DIS_{step}.keras", f"GEN_{step}.keras", f"MLP_{step}.keras"]
                               + [f"GenP_{k}_{step}.keras" for k in range(3)])
    assert (out / "learning_curve.png").stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["steps"] == 40 and settings["seed"] == SEED and settings["final_step"] == 40
    assert not list(out.rglob(".tmp-*"))


@pytest.mark.slow
def test_same_seed_gives_identical_record(finished_run, digits_csvs, tmp_path):
    run_main(digits_csvs, tmp_path / "again")
    first, second = np.load(finished_run / "Record.npz"), np.load(tmp_path / "again" / "Record.npz")
    for key in RECORD_KEYS:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.mark.slow
def test_saved_models_reload_in_a_new_process(finished_run, tmp_path):
    last_line = run_in_new_process(tmp_path, (
        f"folder = {str(finished_run / 'gamo_models_40')!r}\n"
        "gen = keras.models.load_model(folder + '/GEN_40.keras')\n"
        "igu = keras.models.load_model(folder + '/GenP_0_40.keras')\n"
        "mlp = keras.models.load_model(folder + '/MLP_40.keras')\n"
        "z = np.zeros((2, 100), 'float32'); y = np.eye(4, dtype='float32')[[0, 0]]\n"
        "sample = igu(gen([z, y], training=False))\n"
        "points = nets.class_points(igu).numpy()\n"
        "assert points.shape == (10, 64) and np.abs(points).sum() > 0\n"
        "print(tuple(sample.shape), tuple(mlp(sample).shape))\n"))
    assert last_line == "(2, 64) (2, 4)"


@pytest.mark.slow
def test_no_discriminator_run_saves_no_discriminator(digits_csvs, tmp_path):
    run_main(digits_csvs, tmp_path / "nodis", "--no-discriminator", "--no-jit")
    assert not list((tmp_path / "nodis").rglob("DIS_*"))
    assert (tmp_path / "nodis" / "gamo_models_40" / "MLP_40.keras").is_file()


@pytest.mark.parametrize("flags, folder", [((), "Digits_8_Gamo"), (("--no-discriminator",), "Digits_8_GamoNoDis"),
                                           (("--classifier-only",), "Digits_8_Baseline"),
                                           (("--smote",), "Digits_8_Smote"),
                                           (("--method", "adasyn"), "Digits_8_Adasyn"),
                                           (("--method", "borderline-smote"), "Digits_8_BorderlineSmote"),
                                           (("--method", "random"), "Digits_8_Random")])
def test_each_method_has_its_own_default_output_folder(flags, folder):
    args = dense.build_parser().parse_args(["--train", "data/Digits_8_trainData.csv", *flags])
    assert settings_from(args, dense.Settings).out_dir == folder


@pytest.mark.slow
def test_balanced_data_exits_with_the_reference_message(tmp_path):
    rows = np.column_stack([np.zeros((6, 4)), [0, 0, 0, 1, 1, 1]])
    for name in ("tr.csv", "ts.csv"):
        np.savetxt(tmp_path / name, rows, fmt="%d", delimiter=",")
    result = run_script("dense_gamo_main.py", "--train", tmp_path / "tr.csv", "--test", tmp_path / "ts.csv",
                        "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'tr.csv'}: No imbalanced classes found"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_missing_data_points_to_the_processing_script(tmp_path):
    result = run_script("dense_gamo_main.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "Mnist_100_trainData.csv: file not found" in result.stderr
    assert "MNIST_process.py" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
