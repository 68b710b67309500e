"""GAMO2pix: the VAE networks and loss, the GAMO-sample pipeline, and a short run."""

import numpy as np
import pytest
from conftest import SEED, run_script

from gamo import errors, gamo2pix, layers, pictures, vae
from gamo.backend import total_loss
from gamo.cli import gamo2pix as gamo2pix_cli
from gamo.data import load_dataset
from gamo.nets import class_points, convex_weights_model
from gamo.optim import AdamStates

keras = pytest.importorskip("keras")


def test_decoder_maps_latent_vectors_to_images_in_range():
    keras.utils.set_random_seed(SEED)
    decoder = vae.build_decoder((28, 28, 1))
    images = decoder(np.random.default_rng(SEED).normal(0, 3, (5, 100)).astype("float32")).numpy()
    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= -1 and images.max() <= 1
    head = vae.build_encoder_head(512)
    z_mean, z_sigma = head(np.zeros((2, 512), "float32"))
    assert z_mean.shape == z_sigma.shape == (2, 100)


def test_loss_is_the_reference_formula_on_a_hand_made_batch():
    images = np.array([1, -1, 0.5, 0, 0, 0, 0, 0], "float32").reshape(2, 2, 2, 1)
    recon = np.array([0, -1, 0.5, 1, 0, 0, 0.5, 0], "float32").reshape(2, 2, 2, 1)
    z_mean = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
    z_sigma = np.array([[0.0, 1.0], [-1.0, 0.0]], "float32")
    # 4 pixels * mean squared error over all 8 values: 4 * (1 + 1 + 0.25) / 8
    reconstruction = 4 * 2.25 / 8
    kl_rows = [-0.5 * ((1 + 0 - 1 - 1) + (1 + 1 - 0 - np.e)),
               -0.5 * ((1 - 1 - 0 - np.exp(-1)) + (1 + 0 - 4 - 1))]
    expected = reconstruction + np.mean(kl_rows)
    assert float(total_loss(vae.vae_loss_terms(images, recon, z_mean, z_sigma))) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("consistent, scale", [(False, np.exp(1.0)), (True, np.exp(0.5))])
def test_sampling_scale_follows_the_reference_quirk_or_the_flag(consistent, scale):
    sampling = layers.Sampling(consistent=consistent, seed=SEED)
    z_mean = np.zeros((20000, 1), "float32")
    z = sampling([z_mean, np.ones((20000, 1), "float32")]).numpy()
    assert z.std() == pytest.approx(scale, rel=0.03)
    assert layers.Sampling.from_config(sampling.get_config()).consistent is consistent


@pytest.mark.slow
def test_gamo_samples_are_the_igus_convex_weights_over_the_class_features(conv_run, digits_csvs):
    models = gamo2pix.load_gamo_models(conv_run / "gamo_models_16", [1])
    dataset = load_dataset(digits_csvs[0], digits_csvs[0])
    images = dataset.x_train[dataset.y_train == 1].reshape(-1, 8, 8, 1)
    features = models.extractor.predict(images, verbose=0)
    points = class_points(models.igus[1]).numpy()
    # The IGU holds the class's features from the final F (in the run's shuffled order).
    order = np.lexsort(features.T), np.lexsort(points.T)
    np.testing.assert_allclose(features[order[0]], points[order[1]], rtol=1e-4, atol=1e-5)
    samples = gamo2pix.gamo_features(models, 1, 5, np.random.default_rng(SEED))
    noise = np.random.default_rng(SEED).standard_normal((5, 100)).astype("float32")
    code = models.trunk([noise, np.eye(4, dtype="float32")[[1] * 5]], training=False)
    weights = convex_weights_model(models.igus[1])(code).numpy()
    assert (weights >= 0).all() and np.allclose(weights.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(samples, weights @ points, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_short_run_writes_pictures_models_and_pngs(conv_run, digits_csvs, tmp_path):
    out = tmp_path / "ImgGen"
    gamo2pix_cli.main(["--train", str(digits_csvs[0]), "--gamo-dir", str(conv_run.parent / conv_run.name),
              "--out-dir", str(out), "--steps", "6", "--picture-every", "3", "--save-every", "4",
              "--num-images", "5", "--classes", "0,2"])
    for k in (0, 2):
        assert sorted(p.name for p in (out / f"Pictures_{k}").iterdir()) == [
            "Test_0.png", "Test_3.png", "Test_6.png", "Train_0.png", "Train_3.png", "Train_6.png"]
        assert sorted(p.name for p in (out / f"models_{k}").iterdir()) == [
            "decoder_4.keras", "decoder_6.keras", "encoder_4.keras", "encoder_6.keras"]
        pngs = sorted((out / f"generated_{k}").iterdir())
        assert len(pngs) == 5
        import cv2
        assert cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED).shape == (8, 8)
    assert not (out / "Pictures_1").exists()
    assert (out / "overview.png").stat().st_size > 0


@pytest.mark.slow
def test_bad_models_folders_give_one_line_errors(conv_run, digits_csvs, tmp_path):
    broken = tmp_path / "gamo_models_16"
    broken.mkdir()
    for name in ("Conv_16.keras", "GEN_16.keras"):
        (broken / name).write_bytes((conv_run / "gamo_models_16" / name).read_bytes())
    cases = {
        broken: "missing GenP_0_16.keras",
        tmp_path / "nowhere": "not a gamo_models_<step> folder",
    }
    for folder, message in cases.items():
        result = run_script("fashion_mnist_gamo2pix_main.py", "--train", digits_csvs[0],
                            "--models", folder, "--out-dir", tmp_path / "out")
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and str(folder) in lines[0]
    result = run_script("fashion_mnist_gamo2pix_main.py", "--train", digits_csvs[0],
                        "--gamo-dir", tmp_path / "empty")
    assert result.returncode == 2 and "no gamo_models_<step> folder" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_images(conv_run, digits_csvs, tmp_path):
    import os
    import signal

    def run(out, *extra, after_step=None):
        return gamo2pix_cli.main(["--train", str(digits_csvs[0]), "--gamo-dir", str(conv_run), "--out-dir", str(out),
                         "--steps", "12", "--picture-every", "3", "--save-every", "4", "--num-images", "4",
                         "--classes", "0,2", "--no-jit", *extra], after_step=after_step)

    def interrupt_in_class_2(pix_run):
        if pix_run.current == 2 and pix_run.step == 7:
            os.kill(os.getpid(), signal.SIGINT)       # noted; the step ends, then a checkpoint

    run(tmp_path / "whole")
    with pytest.raises(SystemExit) as stop:
        run(tmp_path / "cut", after_step=interrupt_in_class_2)
    assert stop.value.code == 130
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir())[-1] == "step_19"
    assert not (tmp_path / "cut" / "overview.png").exists()
    run(tmp_path / "cut", "--resume")
    for k in (0, 2):
        whole = sorted((tmp_path / "whole" / f"generated_{k}").iterdir())
        cut = sorted((tmp_path / "cut" / f"generated_{k}").iterdir())
        assert [p.read_bytes() for p in whole] == [p.read_bytes() for p in cut]
    overview = (tmp_path / "cut" / "overview.png").read_bytes()
    # A finished run resumed with other display options trains nothing and redraws the overview.
    images = {p: p.read_bytes() for p in (tmp_path / "cut").glob("generated_*/*.png")}
    run(tmp_path / "cut", "--resume", "--as-stored", "--names", "")
    assert {p: p.read_bytes() for p in (tmp_path / "cut").glob("generated_*/*.png")} == images
    assert (tmp_path / "cut" / "overview.png").read_bytes() != overview


def test_the_overview_turns_the_stored_transposed_images_upright(monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(pictures, "save_image_grid", lambda path, images, shape, row_titles: drawn.update(
        images=images, shape=shape, titles=row_titles))
    upright = np.arange(6.0).reshape(2, 3)            # 2 high, 3 wide, as people look at it
    stored = upright.T.reshape(1, 3, 2, 1)            # as the processed CSVs hold it (QUIRK)
    pictures.save_overview(tmp_path / "o.png", [stored], [stored + 1], ["Bag (60)"], (3, 2, 1))
    assert drawn["titles"] == ["Bag (60)"] and drawn["images"].shape == (1, 2, 6)
    np.testing.assert_array_equal(drawn["images"][0, 0].reshape(drawn["shape"]), upright)
    np.testing.assert_array_equal(drawn["images"][0, 1].reshape(drawn["shape"]), upright + 1)
    pictures.save_overview(tmp_path / "o.png", [stored], [stored], ["Bag (60)"], (3, 2, 1), as_stored=True)
    np.testing.assert_array_equal(drawn["images"][0, 0].reshape(drawn["shape"]), upright.T)


def test_each_class_vae_starts_with_fresh_moments_on_the_runs_one_step_counter():
    adam = AdamStates(2e-4, 0.5)            # the reference's: one counter for the whole run
    settings = gamo2pix_cli.PixSettings(jit=False)
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (4, 8, 8, 1)).astype("float32")
    features = rng.normal(size=(4, 16)).astype("float32")
    first = vae.ClassVae(16, (8, 8, 1), settings, seed=SEED, adam=adam)
    noise = first.noise(rng, 4)
    for _ in range(3):
        first.compiled_step(features, images, noise)
    second = vae.ClassVae(16, (8, 8, 1), settings, seed=SEED + 1, adam=adam)
    assert not any(np.asarray(v).any() for v in second.optimizer.moments + second.optimizer.velocities)
    second.compiled_step(features, images, noise)
    assert int(adam.counter.numpy()) == 4
    assert int(first.optimizer.iterations.numpy()) == 3 and int(second.optimizer.iterations.numpy()) == 1


@pytest.mark.slow
def test_a_finished_run_trains_longer_with_resume_and_more_steps(conv_run, digits_csvs, tmp_path):
    """--resume --steps N continues every class's VAE from its last step (weights and
    Adam state kept in the checkpoint), class after class, and redraws its outputs."""
    import json

    out = tmp_path / "longer"

    def run(steps, *extra):
        return gamo2pix_cli.main(["--train", str(digits_csvs[0]), "--gamo-dir", str(conv_run), "--out-dir", str(out),
                                  "--steps", str(steps), "--picture-every", "3", "--save-every", "4",
                                  "--num-images", "4", "--classes", "0,2", "--no-jit", *extra])

    run(6)
    first = {k: sorted((out / f"generated_{k}").iterdir())[0].read_bytes() for k in (0, 2)}
    run(9, "--resume")
    state = json.loads(max((out / "checkpoints").iterdir(), key=lambda p: int(p.name[5:])).joinpath(
        "state.json").read_text())
    assert state["done"] == {"0": 9, "2": 9}
    for k in (0, 2):
        assert {"Train_6.png", "Train_9.png"} <= {p.name for p in (out / f"Pictures_{k}").iterdir()}
        assert (out / f"models_{k}" / "decoder_9.keras").is_file()
        assert sorted((out / f"generated_{k}").iterdir())[0].read_bytes() != first[k]
    rows = np.loadtxt(out / "losses.csv", delimiter=",", skiprows=1)
    assert [tuple(row[:2]) for row in rows] == [(0, 0), (0, 3), (0, 6), (2, 0), (2, 3), (2, 6),
                                                (0, 9), (2, 9)]
    with pytest.raises(errors.InputError, match="past --steps 6; give --steps 9 or more"):
        run(6, "--resume")


def test_each_class_is_taken_from_the_training_rows_shuffled_once_with_the_seed():
    """The original shuffles the training rows (seeded) before taking a class's: the
    VAE's fixed batches are a random split of the class, not the file's order."""
    from types import SimpleNamespace

    from gamo.data import Imbalance

    x = np.arange(40, dtype="float32").reshape(10, 4)       # row i holds 4i .. 4i+3
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    dataset = SimpleNamespace(x_train=x, y_train=y, imbalance=Imbalance(np.bincount(y)))
    settings = gamo2pix_cli.PixSettings(seed=SEED, out_dir="unused", standard_adam=True)
    run = gamo2pix.PixRun(settings, dataset, models=None, classes=[0], image_shape=(2, 2, 1))
    order = np.random.default_rng(SEED).permutation(10)
    expected = x[order][y[order] == 1].reshape(-1, 2, 2, 1)
    np.testing.assert_array_equal(run.class_images(1), expected)
    assert not np.array_equal(run.class_images(1), x[y == 1].reshape(-1, 2, 2, 1))   # not the file's order


def test_the_vae_step_gives_the_same_loss_compiled_or_not():
    """The sampling's noise comes from the run's seeded generator, not from inside
    the compiled step: with XLA or without, the same seed gives the same batch
    (equal up to float rounding; noise drawn inside the step differed by 0.1%)."""
    rng = np.random.default_rng(SEED)
    images = rng.uniform(-1, 1, (4, 8, 8, 1)).astype("float32")
    features = rng.normal(size=(4, 16)).astype("float32")
    losses = []
    for jit in (True, False):
        keras.utils.set_random_seed(SEED)
        class_vae = vae.ClassVae(16, (8, 8, 1), gamo2pix_cli.PixSettings(jit=jit), seed=SEED,
                                 adam=AdamStates(2e-4, 0.5))
        noise = class_vae.noise(np.random.default_rng(SEED), 4)
        losses.append({name: float(value) for name, value in class_vae.compiled_step(features, images, noise).items()})
    assert losses[0].keys() == {"loss", "reconstruction", "KL"}
    for name in losses[0]:
        assert losses[0][name] == pytest.approx(losses[1][name], rel=1e-5), name
