"""A few batches of the game on the backend Keras runs on (KERAS_BACKEND), from
initial weights and random draws that come from NumPy alone; writes every
state variable to an .npz, so runs on different backends can be compared.

    KERAS_BACKEND=jax python tests/backend_probe.py dense 5 out.npz

dense: GAMO on 64 digit pixels (4 classes, 3 minority) for `batches` batches.
conv: `batches` F+M updates on the 8x8 digit images, then the features, then
`batches` game batches in their feature space.
classifier: `batches` updates of F and M together on the images (the baseline's step).
vae: `batches` steps of GAMO2pix's VAE from NumPy features to the images.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from types import SimpleNamespace

from gamo import feature_game, nets
from gamo.data import Imbalance, one_hot
from gamo.game import Gamo
from gamo.learner import ClassifierOnly
from gamo.optim import AdamStates
from gamo.vae import ClassVae, named_vae_state

COUNTS = {0: 80, 1: 40, 2: 20, 3: 10}      # original digit -> rows; new labels by size
BATCH = 32


def digits():
    """Rows of the 4 digits scaled to [-1, 1], labels 0-3 by size, largest first."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    chosen = [np.flatnonzero(labels == digit)[:count] for digit, count in COUNTS.items()]
    x = np.concatenate([images[rows] for rows in chosen]).astype(np.float32) / 8 - 1
    y = np.concatenate([np.full(len(rows), 3 - new) for new, rows in enumerate(chosen)])
    order = np.random.default_rng(0).permutation(len(y))
    return x[order], y[order]


def set_weights_from_numpy(models, seed):
    """Every trainable weight drawn by NumPy: Glorot-uniform kernels, small
    biases, BatchNorm's gamma 1 and beta 0; the same on every backend."""
    rng = np.random.default_rng(seed)
    for model in models:
        for variable in model.trainable_variables:
            shape, name = tuple(variable.shape), variable.path
            if name.endswith("gamma"):
                value = np.ones(shape)
            elif name.endswith("beta"):
                value = np.zeros(shape)
            elif len(shape) >= 2:
                fan_in, fan_out = np.prod(shape[:-1]), shape[-1]
                value = rng.uniform(-1, 1, shape) * np.sqrt(6 / (fan_in + fan_out))
            else:
                value = rng.uniform(-0.05, 0.05, shape)
            variable.assign(value.astype(np.float32))


def game(num_features, imbalance):
    gamo = Gamo(num_features, imbalance, batch_size=BATCH)
    p = gamo.players
    set_weights_from_numpy([p.trunk, p.classifier, p.discriminator, *p.igus.values()], seed=1)
    return gamo


def play(learner, x, y, batches, rng):
    onehot = one_hot(y, 4)
    for start in range(0, batches * BATCH, BATCH):
        learner.train_on_batch(x[start:start + BATCH], onehot[start:start + BATCH], rng)


def dense(batches):
    x, y = digits()
    gamo = game(x.shape[1], Imbalance(np.bincount(y)))
    gamo.players.set_class_points(x, y)
    play(gamo, x, y, batches, np.random.default_rng(2))
    return gamo.named_state()


def conv(batches):
    x, y = digits()
    images = x.reshape(-1, 8, 8, 1)
    extractor = nets.build_feature_extractor((8, 8, 1), 32)
    set_weights_from_numpy([extractor], seed=3)
    learner = feature_game.FeatureGamo(extractor, game(32, Imbalance(np.bincount(y))), BATCH)
    onehot = one_hot(y, 4)
    for start in range(0, batches * BATCH, BATCH):
        learner.compiled_feature_step(images[start:start + BATCH], onehot[start:start + BATCH])
    features = learner.features(images)
    learner.gamo.players.set_class_points(features, y)
    play(learner, features, y, batches, np.random.default_rng(4))
    return learner.named_state()


def classifier(batches):
    x, y = digits()
    extractor = nets.build_feature_extractor((8, 8, 1), 32)
    classifier = nets.build_classifier(32, 4)
    set_weights_from_numpy([extractor, classifier], seed=5)
    learner = ClassifierOnly(classifier, extractor, AdamStates(0.0002, 0.5))
    play(learner, x.reshape(-1, 8, 8, 1), y, batches, np.random.default_rng(6))
    return learner.named_state()


def vae(batches):
    x, _ = digits()
    images = x.reshape(-1, 8, 8, 1)
    rng = np.random.default_rng(7)
    features = rng.uniform(-1, 1, (len(images), 32)).astype(np.float32)
    model = ClassVae(32, (8, 8, 1), SimpleNamespace(consistent_vae=False, jit=True), 0, AdamStates(0.0002, 0.5))
    set_weights_from_numpy([model.encoder, model.decoder], seed=8)
    for start in range(0, batches * BATCH, BATCH):
        rows = slice(start, start + BATCH)
        model.compiled_step(features[rows], images[rows], model.noise(rng, BATCH))
    return named_vae_state(model)


CASES = {"dense": dense, "conv": conv, "classifier": classifier, "vae": vae}


def main(case, batches, out):
    variables = CASES[case](int(batches))
    np.savez(out, **{name: np.asarray(v) for name, v in variables.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
