"""Many runs in one compiled step (gamo.group): on JAX, K seeds vmapped compute
what the K single runs compute; elsewhere the option is refused in one line.
`make test` runs these under JAX too (marker every_backend)."""

import keras
import numpy as np
import pytest
from conftest import run_script

from gamo.data import Imbalance, batch_slices, one_hot
from gamo.errors import InputError

pytestmark = pytest.mark.every_backend
ON_JAX = keras.backend.backend() == "jax"
COUNTS = (40, 20, 10, 6)        # rows per class, largest first: 3 minority classes
SEEDS = (0, 1, 2)
BATCHES = 5
# Float32 rounding: the vmapped products sum in another order (on the 2-core CPU, worst 1.4e-6
# absolute after 5 batches). On GPUs JAX multiplies float32 matrices in TF32 unless told
# otherwise (an H200 drifted to 5.8e-3 that way: bench/README.md), so the tests ask for float32.
RTOL, ATOL = 1e-4, 1e-6


@pytest.fixture(autouse=True)
def float32_products():
    """Full float32 matrix products and convolutions on every device (no effect on a CPU)."""
    if not ON_JAX:
        yield
        return
    import jax

    with jax.default_matmul_precision("float32"):
        yield


def digits():
    """Rows of 4 digits in [-1, 1], labels by size (0 the smallest)."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    chosen = [np.flatnonzero(labels == digit)[:count] for digit, count in enumerate(COUNTS)]
    x = np.concatenate([images[rows] for rows in chosen]).astype(np.float32) / 8 - 1
    y = np.concatenate([np.full(len(rows), len(COUNTS) - 1 - k) for k, rows in enumerate(chosen)])
    return x, y


def new_run(seed, x, y, learner_kind):
    """A learner seeded as the scripts seed one, on the rows in its seed's order."""
    from gamo.game import Gamo
    from gamo.learner import ClassifierOnly
    from gamo.nets import build_classifier
    from gamo.seeding import set_random_seed

    set_random_seed(seed)
    imbalance = Imbalance(np.bincount(y))
    if learner_kind == "gamo":
        learner = Gamo(x.shape[1], imbalance, batch_size=16)
    else:
        learner = ClassifierOnly(build_classifier(x.shape[1], imbalance.num_classes, name="MLP"))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if learner_kind == "gamo":
        learner.players.set_class_points(x[order], y[order])
    return learner, rng, x[order], one_hot(y[order], imbalance.num_classes)


def state_of(learner):
    return {name: np.asarray(keras.ops.convert_to_numpy(v)) for name, v in learner.named_state().items()}


@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
@pytest.mark.parametrize("learner_kind", ["gamo", "classifier"])
def test_seeds_vmapped_equal_the_same_seeds_run_one_by_one(learner_kind):
    from gamo.group import LearnerGroup

    x, y = digits()
    slices = batch_slices(len(y), 16)[:BATCHES]
    singles = [new_run(seed, x, y, learner_kind) for seed in SEEDS]
    for learner, rng, rows, onehot in singles:
        for batch in slices:
            learner.train_on_batch(rows[batch], onehot[batch], rng)
    runs = [new_run(seed, x, y, learner_kind) for seed in SEEDS]
    group = LearnerGroup([learner for learner, *_ in runs])
    for batch in slices:
        losses = group.train_on_batches([(rows[batch], onehot[batch]) for _, _, rows, onehot in runs],
                                        [rng for _, rng, _, _ in runs])
    assert len(losses) == len(SEEDS) and set(losses[0]) == set(singles[0][0].loss_names())
    group.sync()
    for (single, *_), (grouped, *_) in zip(singles, runs):
        expected, got = state_of(single), state_of(grouped)
        assert expected.keys() == got.keys()
        for name in expected:                     # weights, Adam moments, counters, BatchNorm sites
            np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)
    first, second = state_of(runs[0][0]), state_of(runs[1][0])
    kernel = next(name for name in first if name.startswith("MLP/") and name.endswith("kernel"))
    assert not np.array_equal(first[kernel], second[kernel])             # other seeds, other runs


def new_conv_run(seed, x, y):
    """The conv script's learner (F, then the game on F's features), seeded as the script seeds it."""
    from gamo.feature_game import FeatureGamo
    from gamo.game import Gamo
    from gamo.nets import build_feature_extractor
    from gamo.seeding import set_random_seed

    set_random_seed(seed)
    imbalance = Imbalance(np.bincount(y))
    extractor = build_feature_extractor((8, 8, 1), 16)
    learner = FeatureGamo(extractor, Gamo(16, imbalance, batch_size=16), batch_size=16)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    images, labels = x[order].reshape(-1, 8, 8, 1), y[order]
    onehot = one_hot(labels, imbalance.num_classes)
    return learner, rng, learner.rounds(images, labels, onehot, batch_slices(len(y), 16), rng)


@pytest.mark.long
@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
def test_conv_seeds_vmapped_equal_the_same_seeds_run_one_by_one():
    """A round of the conv script: F+M's epoch and the features run by run, then 3 game
    batches on the features, vmapped; F+M's updates share the game's Adam counter."""
    from gamo.group import LearnerGroup

    x, y = digits()
    singles = [new_conv_run(seed, x, y) for seed in SEEDS]
    single_losses = []
    for learner, rng, rounds in singles:
        features, onehot, slices = next(rounds)
        single_losses.append([learner.train_on_batch(features[batch], onehot[batch], rng)
                              for batch in slices[:3]])
    runs = [new_conv_run(seed, x, y) for seed in SEEDS]
    group = LearnerGroup([learner for learner, *_ in runs])
    passes = [next(rounds) for _, _, rounds in runs]       # each run's epoch, synced with the group
    for index, batch in enumerate(slices[:3]):
        losses = group.train_on_batches([(features[batch], onehot[batch]) for features, onehot, _ in passes],
                                        [rng for _, rng, _ in runs])
        assert [set(run) for run in losses] == [set(alone[index]) for alone in single_losses]
        assert ("FM" in losses[0]) == (index == 0)          # F+M's epoch reported with its first batch
    group.sync()
    for (single, *_), (grouped, *_) in zip(singles, runs):
        expected, got = state_of(single), state_of(grouped)
        assert expected.keys() == got.keys() and any(name.startswith("Conv/") for name in got)
        for name in expected:        # F, M, D, the trunk, IGUs (with their points), Adam, counter, BN sites
            np.testing.assert_allclose(got[name], expected[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
def test_the_conv_script_trains_a_group_into_each_runs_folder(digits_csvs, tmp_path):
    from gamo.cli import fashion

    fashion.main(group_args(digits_csvs, tmp_path / "conv_{seed}", "--seeds", "0,1", "--num-features", "16"))
    fashion.main(group_args(digits_csvs, tmp_path / "alone", "--seed", "1", "--num-features", "16"))
    for seed in (0, 1):
        with np.load(tmp_path / f"conv_{seed}" / "Record.npz") as grouped, \
                np.load(tmp_path / "alone" / "Record.npz") as alone:
            assert {key: grouped[key].shape for key in grouped} == {key: alone[key].shape for key in alone}
        assert (tmp_path / f"conv_{seed}" / "gamo_models_20" / "Conv_20.keras").is_file()
    with np.load(tmp_path / "conv_1" / "Record.npz") as grouped, np.load(tmp_path / "alone" / "Record.npz") as alone:
        np.testing.assert_allclose(grouped["loss_FM"], alone["loss_FM"], rtol=1e-3)     # seed 1 both
        np.testing.assert_allclose(grouped["loss_M_real"], alone["loss_M_real"], rtol=1e-3)


@pytest.mark.skipif(ON_JAX, reason="JAX runs groups")
def test_a_group_is_refused_in_one_line_off_jax():
    from gamo.group import require_jax

    with pytest.raises(InputError, match=r"needs the JAX backend \(KERAS_BACKEND=jax\)"):
        require_jax()


@pytest.mark.skipif(not ON_JAX, reason="jax.devices() needs the JAX backend")
def test_a_group_too_large_for_memory_is_refused_before_training():
    from gamo.group import check_group_fits, memory_per_state

    run_bytes = int(memory_per_state() * 2**20)               # what a run of 1 MiB of state needs
    check_group_fits(8, 2**20, available=16 * run_bytes)
    with pytest.raises(InputError, match="use 16 seeds or fewer per process"):
        check_group_fits(100, 2**20, available=16 * run_bytes)
    with pytest.raises(InputError, match=r"train the seeds one at a time \(--seed\)"):
        check_group_fits(2, 2**20, available=run_bytes)


@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
def test_a_refused_group_leaves_no_folder_behind(digits_csvs, tmp_path, monkeypatch):
    """Refused before training, the same command with fewer seeds starts afresh."""
    from gamo import group
    from gamo.cli import dense

    monkeypatch.setattr(group, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(InputError, match="GiB is available on cpu"):
        dense.main(group_args(digits_csvs, tmp_path / "run_{seed}", "--seeds", "0,1"))
    assert list(tmp_path.iterdir()) == []


def group_args(digits_csvs, out, *extra):
    train, test = digits_csvs
    return ["--train", str(train), "--test", str(test), "--out-dir", str(out), "--steps", "20",
            "--eval-every", "10", "--save-every", "10", *extra]


@pytest.mark.slow
@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
def test_a_group_writes_each_runs_usual_outputs_into_its_own_folder(digits_csvs, tmp_path):
    from gamo.cli import dense

    dense.main(group_args(digits_csvs, tmp_path / "group_{seed}", "--seeds", "0-2"))
    dense.main(group_args(digits_csvs, tmp_path / "single", "--seed", "1"))

    def files(folder):     # pictures are named after their folder
        return sorted(str(p.relative_to(folder)).replace(folder.name, "<run>") for p in folder.rglob("*")
                      if p.is_file() and p.name != ".lock")
    single = tmp_path / "single"
    for seed in (0, 1, 2):
        folder = tmp_path / f"group_{seed}"
        assert files(folder) == files(single)
        for name in ("Record.npz", "Results.npz"):
            with np.load(folder / name) as grouped, np.load(single / name) as alone:
                assert {key: grouped[key].shape for key in grouped} == {key: alone[key].shape for key in alone}
    with np.load(tmp_path / "group_1" / "Record.npz") as grouped, np.load(single / "Record.npz") as alone:
        np.testing.assert_allclose(grouped["loss_M_real"], alone["loss_M_real"], rtol=1e-3)   # seed 1 both


@pytest.mark.slow
@pytest.mark.skipif(not ON_JAX, reason="a group of runs is a JAX program")
def test_a_group_killed_and_resumed_gives_the_uninterrupted_groups_results(digits_csvs, tmp_path):
    import os
    import signal

    from gamo.cli import dense

    def stop_at_step_14(run):
        if run.step == 14:
            os.kill(os.getpid(), signal.SIGINT)     # noted; the batch ends, then checkpoints

    dense.main(group_args(digits_csvs, tmp_path / "whole_{seed}", "--seeds", "3,5"))
    with pytest.raises(SystemExit) as stop:
        dense.main(group_args(digits_csvs, tmp_path / "cut_{seed}", "--seeds", "3,5"), after_batch=stop_at_step_14)
    assert stop.value.code == 130
    dense.main(group_args(digits_csvs, tmp_path / "cut_{seed}", "--seeds", "3,5", "--resume"))
    for seed in (3, 5):
        for name in ("Record.npz", "Results.npz", "losses.csv"):
            assert (tmp_path / f"cut_{seed}" / name).read_bytes() == (tmp_path / f"whole_{seed}" / name).read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(ON_JAX, reason="JAX runs groups")
def test_the_scripts_refuse_several_seeds_off_jax_in_one_line(digits_csvs, tmp_path):
    result = run_script("dense_gamo_main.py", *group_args(digits_csvs, tmp_path / "out", "--seeds", "0-1"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --seeds with several seeds needs the JAX backend (KERAS_BACKEND=jax); this is "
        f"{keras.backend.backend()}"]
