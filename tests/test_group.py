"""Many runs in one compiled step (gamo.group): on JAX, K seeds vmapped compute
what the K single runs compute; elsewhere the option is refused in one line.
`make test` runs these under JAX too (marker every_backend)."""

import keras
import numpy as np
import pytest

from gamo.data import Imbalance, batch_slices, one_hot
from gamo.errors import InputError

pytestmark = pytest.mark.every_backend
ON_JAX = keras.backend.backend() == "jax"
COUNTS = (40, 20, 10, 6)        # rows per class, largest first: 3 minority classes
SEEDS = (0, 1, 2)
BATCHES = 5
# Float32 rounding: the vmapped products sum in another order (on the 2-core CPU, worst 1.4e-6
# absolute after 5 batches; on an H200 the states drift further: bench/README.md).
RTOL, ATOL = 1e-4, 1e-6


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


@pytest.mark.skipif(ON_JAX, reason="JAX runs groups")
def test_a_group_is_refused_in_one_line_off_jax():
    from gamo.group import require_jax

    with pytest.raises(InputError, match=r"needs the JAX backend \(KERAS_BACKEND=jax\)"):
        require_jax()


@pytest.mark.skipif(not ON_JAX, reason="jax.devices() needs the JAX backend")
def test_a_group_too_large_for_memory_is_refused_before_training():
    from gamo.group import check_group_fits

    check_group_fits(8, 2**20, available=64 * 2**20)       # 8 runs of 1 MiB: 32 MiB of 64
    with pytest.raises(InputError, match="use 16 seeds or fewer per process"):
        check_group_fits(100, 2**20, available=64 * 2**20)
