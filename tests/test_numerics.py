"""The reference's library arithmetic (Keras 2.2 on TensorFlow 1), checked against
independent NumPy implementations: Adam with one step counter shared by every
state, and the trunk's per-call-site zero-debiased BatchNorm statistics; and
the --standard-adam / --standard-batchnorm options, which give Keras 3's.
Backend-neutral: `make test` also runs them under JAX and PyTorch."""

import contextlib

import numpy as np
import pytest
from conftest import SEED

from gamo import backend, game, optim
from gamo.data import Imbalance, one_hot
from gamo.state import state_variable

keras = pytest.importorskip("keras")
ops = keras.ops
pytestmark = pytest.mark.every_backend

COUNTS = np.array([5, 8, 12, 20])      # 3 minority classes: 2 + 2 + 3 * 2 = 10 updates a batch
BATCH, FEATURES, LATENT = 8, 16, 8
LR, BETA1, BETA2, EPSILON = np.float32(0.01), np.float32(0.5), np.float32(0.999), np.float32(1e-7)


@contextlib.contextmanager
def eager_steps():
    """Run the compiled steps eagerly, so a test can see every update as it happens
    (TensorFlow; on JAX and PyTorch the games here are built with jit=False)."""
    if backend.BACKEND != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)


class Noted:
    """An Adam state that notes, in order, the gradients it applies (eager only)."""

    def __init__(self, state, variables, log):
        self.state, self.watched, self.log = state, list(variables), log

    def apply(self, gradients, variables):
        self.log.append((self, [np.array(g) for g in gradients]))
        self.state.apply(gradients, variables)

    def __getattr__(self, name):
        return getattr(self.state, name)


class NotedAdamStates(optim.AdamStates):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def new(self, variables, flat=False):
        return Noted(super().new(variables, flat), variables, self.log)


def small_game(adam, **options):
    keras.utils.set_random_seed(SEED)
    gamo = game.Gamo(FEATURES, Imbalance(COUNTS), latent_dim=LATENT, batch_size=BATCH, adam=adam,
                            jit=False, **options)
    rng = np.random.default_rng(SEED)
    labels = np.repeat(np.arange(COUNTS.size), COUNTS)
    features = rng.normal(size=(labels.size, FEATURES)).astype(np.float32)
    gamo.players.set_class_points(features, labels)
    return gamo, features, labels


def adam_states(gamo):
    return [gamo.opt_classifier, gamo.opt_discriminator, *gamo.opt_against.values()]


def play(gamo, features, labels, batches, seed=1):
    rng = np.random.default_rng(seed)
    onehot = one_hot(labels, COUNTS.size)
    for b in range(batches):
        rows = slice(b * BATCH, (b + 1) * BATCH)
        gamo.train_on_batch(features[rows], onehot[rows], rng)


# ---------------------------------------------------------------- Adam

def keras22_adam(weights, moments, velocities, gradients, t):
    """Keras 2.2's Adam.get_updates, in float32, for one state at shared step t."""
    t = np.float32(t)
    lr_t = LR * (np.sqrt(np.float32(1) - BETA2 ** t) / (np.float32(1) - BETA1 ** t))
    for i, g in enumerate(gradients):
        moments[i] = BETA1 * moments[i] + (np.float32(1) - BETA1) * g
        velocities[i] = BETA2 * velocities[i] + (np.float32(1) - BETA2) * np.square(g)
        weights[i] = weights[i] - lr_t * moments[i] / (np.sqrt(velocities[i]) + EPSILON)


def test_every_update_steps_one_counter_shared_by_all_states_as_keras_2_2_adam():
    adam = NotedAdamStates(float(LR), float(BETA1), shared_counter=True)
    gamo, features, labels = small_game(adam)
    weights = {id(v): v.numpy() for state in adam_states(gamo) for v in state.watched}
    with eager_steps():
        play(gamo, features, labels, batches=3)

    # The reference's order in every batch: M, D (real), M, D (fake), then G_M_k, G_D_k per class.
    names = {id(gamo.opt_classifier): "M", id(gamo.opt_discriminator): "D",
             **{id(s): f"G_{o}_{k}" for (o, k), s in gamo.opt_against.items()}}
    order = ["M", "D", "M", "D"] + [f"G_{o}_{k}" for k in gamo.minority for o in "MD"]
    assert [names[id(state)] for state, _ in adam.log] == order * 3

    # Replay every update in NumPy with one counter t for all states, fresh moments for each.
    moments, velocities = {}, {}
    for t, (state, gradients) in enumerate(adam.log, start=1):
        if state.flat:      # the generator's states keep one flat buffer
            gradients = [np.concatenate([g.ravel() for g in gradients])]
        moments.setdefault(id(state), [np.zeros_like(g) for g in gradients])
        velocities.setdefault(id(state), [np.zeros_like(g) for g in gradients])
        current = ([np.concatenate([weights[id(v)].ravel() for v in state.watched])] if state.flat
                   else [weights[id(v)] for v in state.watched])
        keras22_adam(current, moments[id(state)], velocities[id(state)], gradients, t)
        pieces = np.split(current[0], np.cumsum(state.sizes)[:-1]) if state.flat else current
        for v, piece in zip(state.watched, pieces):
            weights[id(v)] = piece.reshape(v.shape)

    assert int(adam.counter.numpy()) == len(adam.log) == 30
    for state in adam_states(gamo):
        assert int(state.iterations.numpy()) == (6 if names[id(state)] in "MD" else 3)
        for mine, expected in zip([*state.moments, *state.velocities],
                                  [*moments[id(state)], *velocities[id(state)]]):
            # PyTorch's fused kernel rounds the moments' products and sums together (an
            # FMA, a lerp): equal to float32 rounding of the array's scale, not per element.
            scale = 2e-6 * np.max(np.abs(expected)) if backend.BACKEND == "torch" else 1e-12
            np.testing.assert_allclose(mine.numpy(), expected, rtol=2e-6, atol=scale)
        for v in state.watched:
            # (and Adam's m / sqrt(v) turns a rounding of a tiny moment into up to a step)
            scale = 2e-6 * np.max(np.abs(weights[id(v)])) if backend.BACKEND == "torch" else 1e-7
            np.testing.assert_allclose(v.numpy(), weights[id(v)], rtol=1e-5, atol=scale)


def test_standard_adam_gives_each_state_its_own_count_with_keras_3_adam():
    gamo, features, labels = small_game(optim.AdamStates(0.01, 0.5, shared_counter=False))
    with eager_steps():
        play(gamo, features, labels, batches=2)
    assert isinstance(gamo.opt_classifier, keras.optimizers.Adam)
    assert all(isinstance(s, optim.FlatAdam) for s in gamo.opt_against.values())
    assert gamo.adam.variables == []
    assert [int(s.iterations.numpy()) for s in adam_states(gamo)] == [4, 4] + [2] * 6


def squares_step(optimizer, variables):
    """One update of `variables` against the sum of their squared distances to a target."""
    return lambda target: optim.update(
        optimizer, variables, lambda: sum(ops.sum(ops.square(v - target)) for v in variables))


def test_reference_adam_equals_keras_adam_on_one_state_of_its_own():
    """With a counter of its own, Keras 2.2's Adam is Keras 3's up to float rounding."""
    rng = np.random.default_rng(SEED)
    starts = [rng.normal(size=shape).astype(np.float32) for shape in ((5, 3), (4,))]
    targets = rng.normal(size=5).astype(np.float32)
    results = []
    for optimizer in (optim.ReferenceAdam(0.01, 0.5, state_variable((), "t", backend.COUNTER_DTYPE)),
                      optim.ReferenceAdam(0.01, 0.5, state_variable((), "t", backend.COUNTER_DTYPE), flat=True),
                      keras.optimizers.Adam(0.01, beta_1=0.5)):
        variables = [keras.Variable(start) for start in starts]
        optimizer.build(variables)
        counter = [optimizer.counter] if isinstance(optimizer, optim.ReferenceAdam) else []
        state = [*variables, *optimizer.variables, *counter]
        step = backend.compile_function(squares_step(optimizer, variables), state, jit=False)
        for target in targets:
            step(target)
        results.append([v.numpy() for v in variables])
    for other in results[1:]:
        for mine, theirs in zip(results[0], other):
            np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- BatchNorm

def trunk_moments(trunk, noise, labels):
    """Batch mean and biased variance at the input of each BatchNorm layer of the
    trunk in training mode, computed in NumPy from its weights."""
    hidden = np.concatenate([noise, labels], axis=1).astype(np.float64)
    moments = []
    for layer in trunk.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = (w.numpy() for w in layer.weights)
            hidden = np.maximum(hidden @ kernel + bias, 0)
        elif isinstance(layer, keras.layers.BatchNormalization):
            mean, variance = hidden.mean(axis=0), hidden.var(axis=0)
            moments.append((mean, variance))
            gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
            hidden = (hidden - mean) / np.sqrt(variance + layer.epsilon) * gamma + beta
    return moments


def frozen_game_draws(reference_batchnorm, batches):
    """A game with learning rate 0 (weights fixed, statistics still updated) after
    `batches` batches, and every batch's generator draws."""
    gamo, features, labels = small_game(optim.AdamStates(0.0, 0.5),
                                        reference_batchnorm=reference_batchnorm)
    with eager_steps():
        play(gamo, features, labels, batches)
    rng = np.random.default_rng(1)
    return gamo, [gamo.draw(rng, BATCH) for _ in range(batches)]


def bn_layers(trunk):
    return [layer for layer in trunk.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_trunk_statistics_are_the_last_composites_zero_debiased_average_as_in_keras_2_2():
    gamo, draws = frozen_game_draws(reference_batchnorm=True, batches=2)
    last = len(gamo.minority) - 1            # G+IGU_k+D of the largest minority class writes last
    rows = gamo.rows_per_class
    averages = [np.zeros((2, layer.moving_mean.shape[0])) for layer in bn_layers(gamo.players.trunk)]
    for draw in draws:
        values = [np.stack([mean, variance * rows / (rows - 1 - 1e-3)])
                  for mean, variance in trunk_moments(gamo.players.trunk, draw.class_noise[last], draw.class_labels[last])]
        averages = [a - (a - v) * 0.1 for a, v in zip(averages, values)]
    for layer, average in zip(bn_layers(gamo.players.trunk), averages):
        unbiased = average / (1 - 0.9 ** len(draws))
        np.testing.assert_allclose(layer.moving_mean.numpy(), unbiased[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), unbiased[1], rtol=1e-4, atol=1e-6)
    # 3 classes x (M, D): six call sites, each updated once per batch.
    assert len(gamo.players.trunk_sites) == 6
    assert all(count.numpy() == 2 for site in gamo.players.trunk_sites.values() for count in site.counts.values())


def test_standard_batchnorm_is_keras_3s_one_moving_average_over_every_update():
    gamo, draws = frozen_game_draws(reference_batchnorm=False, batches=2)
    assert gamo.players.trunk_sites == {}
    moving = [np.zeros(layer.moving_mean.shape) for layer in bn_layers(gamo.players.trunk)]
    moving = [(m, np.ones_like(m)) for m in moving]
    for draw in draws:
        for index in range(len(gamo.minority)):
            for _ in "MD":                        # against M, then against D: the same draw
                batch = trunk_moments(gamo.players.trunk, draw.class_noise[index], draw.class_labels[index])
                moving = [(m * 0.9 + mean * 0.1, v * 0.9 + variance * 0.1)
                          for (m, v), (mean, variance) in zip(moving, batch)]
    for layer, (mean, variance) in zip(bn_layers(gamo.players.trunk), moving):
        np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-6)
