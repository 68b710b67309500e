"""Convolutional GAMO: the feature extractor, the outer round, and a short run."""

import json

import numpy as np
import pytest
from conftest import SEED, run_in_new_process, run_script

from gamo import feature_game, game, nets
from gamo.data import Imbalance, batch_slices, one_hot
from gamo.errors import InputError
from gamo.images import class_titles, image_shape_for, parse_image_shape, parse_names, to_images
from gamo.nets import class_points
from gamo.run.record import RECORD_KEYS

keras = pytest.importorskip("keras")


def test_feature_extractor_has_the_reference_architecture():
    extractor = nets.build_feature_extractor((28, 28, 1), 512)
    assert extractor.count_params() == 829_792
    assert tuple(extractor.output.shape) == (None, 512)
    kinds = [type(layer).__name__ for layer in extractor.layers[1:]]
    assert kinds == ["Conv2D", "LeakyReLU", "AveragePooling2D"] * 2 + ["Flatten", "Dense"]


def test_image_shapes_are_inferred_or_checked():
    assert image_shape_for(784) == (28, 28, 1)
    assert image_shape_for(64) == (8, 8, 1)
    assert image_shape_for(12, (2, 3, 2)) == (2, 3, 2)
    assert parse_image_shape("32x32x3") == (32, 32, 3) and parse_image_shape("28x28") == (28, 28, 1)
    with pytest.raises(InputError, match="not square images"):
        image_shape_for(10, path="t.csv")
    assert to_images(np.zeros((5, 64)), (8, 8, 1)).shape == (5, 8, 8, 1)


def small_feature_gamo(counts, batch_size=8):
    keras.utils.set_random_seed(SEED)
    extractor = nets.build_feature_extractor((8, 8, 1), 32)
    gamo = game.Gamo(32, Imbalance(counts), latent_dim=8, batch_size=batch_size, jit=False)
    return feature_game.FeatureGamo(extractor, gamo, batch_size=batch_size, jit=False)


def test_picture_titles_name_each_class_by_its_original_label_and_count():
    from types import SimpleNamespace
    dataset = SimpleNamespace(original_labels=np.array([9, 8, 3]),
                              imbalance=SimpleNamespace(counts=np.array([40, 60, 2000])))
    assert class_titles(dataset, [0, 2]) == ["Ankle boot (40)", "Dress (2000)"]
    assert class_titles(dataset, [0, 1], parse_names("a, b,,, ,,,,,nine")) == ["nine (40)", "label 8 (60)"]
    assert class_titles(dataset, [1], parse_names("")) == ["label 8 (60)"]


def test_one_round_trains_f_not_m_and_hands_the_new_features_to_the_igus():
    counts = np.array([6, 10, 16])
    labels = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (labels.size, 8, 8, 1)).astype(np.float32)
    onehot = one_hot(labels, 3)
    learner = small_feature_gamo(counts)
    extractor, players = learner.extractor, learner.gamo.players

    extractor_before = [np.array(v) for v in extractor.variables]
    classifier_before = [np.array(v) for v in players.classifier.variables]
    learner.epoch(images, onehot, rng)           # (a) alone first: only F may move
    assert all(not np.array_equal(a, np.array(v)) for a, v in zip(extractor_before, extractor.trainable_variables))
    for a, v in zip(classifier_before, players.classifier.variables):
        np.testing.assert_array_equal(a, np.array(v))
    # F+M shares the run's Adam step counter (the reference's one Adam object): 4 batches.
    assert int(learner.gamo.adam.counter.numpy()) == int(learner.optimizer.iterations.numpy()) == 4

    # A whole round: an F+M epoch, then the IGUs hold the features of the new F.
    extractor_mid = [np.array(v) for v in extractor.variables]
    rounds = learner.rounds(images, labels, onehot, batch_slices(labels.size, 8), rng)
    features, _, slices = next(rounds)
    assert any(not np.array_equal(a, np.array(v)) for a, v in zip(extractor_mid, extractor.variables))
    np.testing.assert_allclose(features, extractor(images, training=False).numpy(), rtol=1e-5, atol=1e-6)
    for k, igu in players.igus.items():
        np.testing.assert_array_equal(np.array(class_points(igu)), features[labels == k])
    assert len(slices) == 4                         # ceil(32 / 8) batches a pass


def test_a_round_resumed_inside_its_pass_skips_the_f_and_m_epoch():
    counts = np.array([6, 10, 16])
    labels = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (labels.size, 8, 8, 1)).astype(np.float32)
    learner = small_feature_gamo(counts)
    before = [np.array(v) for v in learner.extractor.variables]
    rounds = learner.rounds(images, labels, one_hot(labels, 3), batch_slices(labels.size, 8), rng,
                            resumed_mid_pass=True)
    next(rounds)
    assert all(np.array_equal(a, np.array(v)) for a, v in zip(before, learner.extractor.variables))
    next(rounds)                                    # the next round trains F again
    assert not all(np.array_equal(a, np.array(v)) for a, v in zip(before, learner.extractor.variables))


def test_the_feature_step_is_traced_once_for_full_and_shorter_batches():
    learner = small_feature_gamo(np.array([6, 14]))
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (20, 8, 8, 1)).astype(np.float32)   # batches of 8, 8 and 4
    learner.epoch(images, one_hot(rng.integers(0, 2, 20), 2), rng)
    assert learner.compiled_feature_step.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_short_run_writes_every_output(conv_run):
    record = np.load(conv_run / "Record.npz")
    assert sorted(key for key in record.files if not key.startswith("loss_")) == sorted(RECORD_KEYS)
    assert record["acsaSaveTs"].shape == (3,) and record["confMatSaveTs"].shape == (3, 4, 4)
    assert sorted(np.load(conv_run / "Results.npz").files) == ["acc", "acsa", "confMat", "gm", "tpr"]
    # 150 rows / 32 = 5 batches per round: the run stops at step 16, inside its second round.
    settings = json.loads((conv_run / "settings.json").read_text())
    assert settings["final_step"] == 16 and settings["batches"] == 8
    assert settings["image_shape"] == [8, 8, 1]
    assert record["acsaSaveTs"][-1] == np.load(conv_run / "Results.npz")["acsa"]
    for step in (10, 16):
        names = {p.name for p in (conv_run / f"gamo_models_{step}").iterdir()}
        assert {f"Conv_{step}.keras", f"GEN_{step}.keras", f"MLP_{step}.keras", f"DIS_{step}.keras",
                f"GenP_0_{step}.keras"} <= names
    assert not (conv_run / "Pictures").exists()
    assert (conv_run / "learning_curve.png").is_file()


@pytest.mark.slow
def test_saved_extractor_trunk_and_igus_reload_in_a_new_process(conv_run, tmp_path):
    last_line = run_in_new_process(tmp_path, (
        f"folder = {str(conv_run / 'gamo_models_16')!r}\n"
        "F = keras.models.load_model(folder + '/Conv_16.keras')\n"
        "G = keras.models.load_model(folder + '/GEN_16.keras')\n"
        "igu = keras.models.load_model(folder + '/GenP_1_16.keras')\n"
        "features = F(np.zeros((3, 8, 8, 1), 'float32'))\n"
        "sample = igu(G([np.zeros((3, 100), 'float32'), np.eye(4, dtype='float32')[[1, 1, 1]]]))\n"
        "print(tuple(features.shape), tuple(sample.shape), nets.class_points(igu).shape)\n"))
    assert last_line == "(3, 32) (3, 32) (20, 32)"


@pytest.mark.slow
def test_saved_stock_networks_load_with_keras_alone(conv_run, tmp_path):
    """F, M, D and the trunk hold only stock Keras layers in their files, as the
    original's do: Keras loads them in a program that never imports gamo."""
    last_line = run_in_new_process(tmp_path, (
        f"folder = {str(conv_run / 'gamo_models_16')!r}\n"
        "F, M, D, G = (keras.models.load_model(f'{folder}/{name}_16.keras') for name in ('Conv', 'MLP', 'DIS', 'GEN'))\n"
        "images = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)).astype('float32')\n"
        "features = F(images)\n"
        "np.save(sys.argv[0] + '.npy', keras.ops.convert_to_numpy(M(features)))\n"
        "print(sorted({type(layer).__module__.split('.')[0] for net in (F, M, D, G) for layer in net.layers}), "
        "'gamo' in sys.modules, tuple(D([features, M(features)]).shape))\n"), project=False)
    assert last_line == "['keras'] False (3, 1)"


def test_saved_copies_hold_stock_layers_with_the_same_outputs():
    """F's LeakyReLU and the trunk's call-site BatchNorm are saved as Keras' own layers,
    with the same weights: the copy computes the same values, bit for bit."""
    import keras

    from gamo.layers import with_stock_layers

    keras.utils.set_random_seed(SEED)
    F, G = nets.build_feature_extractor((8, 8, 1), 16), nets.build_generator_trunk(5, 3)
    G.layers[-1].moving_mean.assign(np.full(64, 0.5, "float32"))    # statistics are weights too
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (4, 8, 8, 1)).astype("float32")
    noise, labels = rng.normal(size=(4, 5)).astype("float32"), np.eye(3, dtype="float32")[[0, 1, 2, 0]]
    for model, inputs in ((F, images), (G, [noise, labels])):
        stock = with_stock_layers(model)
        assert {type(layer).__module__.split(".")[0] for layer in stock.layers} == {"keras"}
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(stock(inputs, training=False)),
                                      keras.ops.convert_to_numpy(model(inputs, training=False)))
    M = nets.build_classifier(16, 3)
    assert with_stock_layers(M) is M


@pytest.mark.slow
def test_non_square_features_need_an_image_shape(tmp_path):
    rows = np.column_stack([np.full((6, 10), 200), [0, 0, 0, 0, 1, 1]])
    for name in ("tr.csv", "ts.csv"):
        np.savetxt(tmp_path / name, rows, fmt="%d", delimiter=",")
    result = run_script("fashion_mnist_gamo_main.py", "--train", tmp_path / "tr.csv",
                        "--test", tmp_path / "ts.csv", "--out-dir", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'tr.csv'}: 10 features are not square images; pass --image-shape HxWxC"]


def test_fs_leaky_relu_has_keras_values_and_gradients_bit_for_bit():
    """F's LeakyReLU takes its gradient from its output on TensorFlow (so that
    grappler can fuse it with the convolution): the same numbers as Keras' layer,
    zeros included. (On JAX and PyTorch it is Keras' layer.)"""
    tf = pytest.importorskip("tensorflow")
    import keras

    from gamo.layers import LeakyReLU

    x = tf.constant(np.concatenate([np.random.default_rng(SEED).standard_normal(998), [0.0, -0.0]]), tf.float32)
    upstream = tf.constant(np.random.default_rng(SEED + 1).standard_normal(1000), tf.float32)
    results = []
    for layer in (LeakyReLU(negative_slope=0.1), keras.layers.LeakyReLU(negative_slope=0.1)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        results.append((y.numpy(), tape.gradient(loss, x).numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.slow
def test_the_conv_script_prints_no_error_line(digits_csvs, tmp_path):
    """TensorFlow's errors reach the console as a user sees it (TF_CPP_MIN_LOG_LEVEL 2,
    what the scripts set): grappler's `remapper failed` among them, before F's LeakyReLU."""
    train, test = digits_csvs
    result = run_script("fashion_mnist_gamo_main.py", "--train", train, "--test", test, "--out-dir",
                        tmp_path / "run", "--steps", "12", "--eval-every", "10", "--num-features", "32",
                        env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("E0000") or "remapper" in line]
    assert errors == []
