"""Networks of GAMO on feature vectors: classifier M, discriminator D, the
generator trunk (the paper's cTMU) and one instance generation unit (IGU) per
minority class. Sizes are arguments; the defaults are the reference's.

Also the Keras/TensorFlow primitives every script trains with: the loss, one
gradient update, the Adam states (the reference's Keras 2.2 arithmetic with its
shared step counter, or Keras 3's) and the trunk's BatchNormalization with the
reference's per-call-site moving statistics.
"""

from __future__ import annotations

import contextlib

import numpy as np

from dense_suppli import import_tensorflow_quietly

import_tensorflow_quietly()   # before Keras, which imports TensorFlow

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9
HIDDEN_WIDTHS = (256, 128)        # M and D
TRUNK_WIDTHS = (256, 64)          # generator trunk; the last is the code size
LATENT_DIM = 100


def _leaky_mlp(inputs, widths, name):
    hidden = inputs
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, name=f"{name}_dense_{index}")(hidden)
        hidden = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky_{index}")(hidden)
    return hidden


def build_classifier(num_features, num_classes, widths=HIDDEN_WIDTHS, name="classifier"):
    """M: features -> Dense/LeakyReLU(0.1) stack -> softmax over the classes."""
    features = keras.Input((num_features,), name="features")
    hidden = _leaky_mlp(features, widths, name)
    probabilities = layers.Dense(num_classes, activation="softmax", name=f"{name}_out")(hidden)
    return keras.Model(features, probabilities, name=name)


def build_discriminator(num_features, num_classes, widths=HIDDEN_WIDTHS, name="discriminator"):
    """D: [features, one-hot label] -> Dense/LeakyReLU(0.1) stack -> P(real)."""
    features = keras.Input((num_features,), name="features")
    label = keras.Input((num_classes,), name="label")
    joined = layers.Concatenate(name=f"{name}_concat")([features, label])
    hidden = _leaky_mlp(joined, widths, name)
    real = layers.Dense(1, activation="sigmoid", name=f"{name}_out")(hidden)
    return keras.Model([features, label], real, name=name)


def build_generator_trunk(latent_dim, num_classes, widths=TRUNK_WIDTHS, name="generator"):
    """The conditional transient mapping unit: [noise, label] -> a code of widths[-1]."""
    noise = keras.Input((latent_dim,), name="noise")
    label = keras.Input((num_classes,), name="label")
    hidden = layers.Concatenate(name=f"{name}_concat")([noise, label])
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, activation="relu", name=f"{name}_dense_{index}")(hidden)
        hidden = CallSiteBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_{index}")(hidden)
    return keras.Model([noise, label], hidden, name=name)


@keras.saving.register_keras_serializable(package="gamo")
class ConvexCombination(layers.Layer):
    """Weights (batch, n) times the n stored points: convex when the weights are."""

    def __init__(self, num_points, num_features, **kwargs):
        super().__init__(**kwargs)
        self.num_points = num_points
        self.num_features = num_features

    def build(self, input_shape):
        # The class's points are data, not parameters: a non-trainable weight,
        # so they are saved with the model and can be replaced (new features).
        self.points = self.add_weight(shape=(self.num_points, self.num_features),
                                      initializer="zeros", trainable=False, name="points")

    def call(self, weights):
        return ops.matmul(weights, ops.cast(self.points, weights.dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    def get_config(self):
        return {**super().get_config(), "num_points": self.num_points,
                "num_features": self.num_features}


CONVEX_WEIGHTS = "convex_weights"
CONVEX_COMBINATION = "convex_combination"


def build_igu(code_dim, num_points, num_features, name="igu"):
    """IGU_k: code -> softmax weights over class k's points -> their weighted sum."""
    code = keras.Input((code_dim,), name="code")
    weights = layers.Dense(num_points, activation="softmax", name=CONVEX_WEIGHTS)(code)
    sample = ConvexCombination(num_points, num_features, name=CONVEX_COMBINATION)(weights)
    return keras.Model(code, sample, name=name)


def set_class_points(igu, points):
    """Give an IGU the current points of its class (pixels, or features that change)."""
    igu.get_layer(CONVEX_COMBINATION).points.assign(points)


def class_points(igu):
    return igu.get_layer(CONVEX_COMBINATION).points


def convex_weights_model(igu):
    """The part of an IGU that gives the convex weights of its class's points."""
    return keras.Model(igu.input, igu.get_layer(CONVEX_WEIGHTS).output)


# ====================================================================== BatchNorm

@keras.saving.register_keras_serializable(package="gamo")
class CallSiteBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, whose moving statistics a call site can take over.

    Outside `statistics_of_call_site`, this is Keras 3's layer: one moving
    average over every training call. Inside it, a training call normalises
    with the batch mean and biased batch variance, as before, and hands both to
    the site, which writes the moving statistics (see CallSiteStatistics).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.site = None

    def call(self, inputs, training=None, mask=None):
        if not training or self.site is None or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        mean, variance = tf.nn.moments(inputs, axes=list(range(len(inputs.shape) - 1)))
        self.site.record(self, mean, variance, tf.cast(tf.shape(inputs)[0], inputs.dtype))
        return tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma, self.epsilon)


class CallSiteStatistics:
    """The moving statistics of ONE call site of a model's BatchNormalization
    layers, as Keras 2.2 on TensorFlow 1 keeps them (QUIRK of the reference).

    There every model that calls the trunk (each composite G+IGU_k+M and
    G+IGU_k+D) makes its own moving-average update with zero-debiasing: its own
    accumulator A and count t per layer and statistic; at each of its training
    calls A <- A - (A - value)(1 - momentum), t <- t + 1, and the layer's moving
    statistic is SET to A / (1 - momentum^t) (written as
    moving - (moving - A / (1 - momentum^t)), TensorFlow 1's arithmetic).
    The variance averaged is the batch variance times n / (n - 1 - epsilon).
    """

    def __init__(self, model, name):
        self.layers = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
        self.accumulators = {layer.name: tf.Variable(tf.zeros((2, layer.moving_mean.shape[0])),
                                                     trainable=False, name=f"{name}_{layer.name}_biased")
                             for layer in self.layers}
        self.counts = {layer.name: tf.Variable(0.0, trainable=False, name=f"{name}_{layer.name}_step")
                       for layer in self.layers}

    @property
    def variables(self):
        return [v for layer in self.layers for v in (self.accumulators[layer.name], self.counts[layer.name])]

    def record(self, layer, mean, variance, rows):
        """Average this call's batch statistics into the site's and write them into the layer."""
        decay = tf.constant(1.0 - layer.momentum, tf.float32)
        corrected = variance * (rows / (rows - (1.0 + layer.epsilon)))
        accumulator, count = self.accumulators[layer.name], self.counts[layer.name]
        biased = accumulator - (accumulator - tf.stack([mean, corrected])) * decay
        accumulator.assign(biased)
        count.assign_add(1.0)
        unbiased = biased / (1.0 - tf.pow(1.0 - decay, count))
        for moving, value in ((layer.moving_mean, unbiased[0]), (layer.moving_variance, unbiased[1])):
            moving.assign(moving - (moving - value))


@contextlib.contextmanager
def statistics_of_call_site(model, site):
    """While inside, training calls of the model's CallSiteBatchNormalization
    layers leave their moving statistics to `site` (None: to Keras 3's average).
    Used while a step is traced: the choice is part of the compiled graph."""
    bns = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
    for layer in bns:
        layer.site = site
    try:
        yield
    finally:
        for layer in bns:
            layer.site = None


# ====================================================================== training primitives

def mse(target, output):
    return keras.ops.mean(keras.ops.square(target - output))


def as_tensors(*arrays):
    return [tf.convert_to_tensor(array, dtype=tf.float32) for array in arrays]


def batch_spec(*shape):
    """A float32 batch of any size: a step is traced once (several seconds) for
    the full batches and the shorter last one; XLA still compiles each size."""
    return tf.TensorSpec((None, *shape), tf.float32)


def inputs_and_targets_spec(model, num_classes):
    """The signature of a step on (a batch of `model`'s inputs, one-hot targets)."""
    return [batch_spec(*model.input_shape[1:]), batch_spec(num_classes)]


def update(optimizer, variables, loss_fn):
    """One gradient step of `optimizer` on `variables` against loss_fn()."""
    with tf.GradientTape() as tape:
        loss = loss_fn()
    optimizer.apply(tape.gradient(loss, variables), variables)
    return loss


# ====================================================================== Adam

class FlatAdam:
    """keras.optimizers.Adam's arithmetic with both moments in one flat buffer.

    Each generator update touches ten small variables; Keras' Adam spends
    separate kernels and variable writes on every one of them. Here the
    gradients are concatenated, the moments updated in one pass and the steps
    split back: Keras' Adam's formulas in its order (equal up to float rounding).
    """

    def __init__(self, lr, beta1, beta2=0.999, epsilon=1e-7):
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon

    def build(self, variables):
        self.sizes = [int(np.prod(variable.shape)) for variable in variables]
        total = sum(self.sizes)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.momentum = tf.Variable(tf.zeros(total), trainable=False, name="momentum")
        self.velocity = tf.Variable(tf.zeros(total), trainable=False, name="velocity")
        self.variables = [self.iterations, self.momentum, self.velocity]

    def apply(self, gradients, variables):
        gradient = flat(gradients)
        step = tf.cast(self.iterations + 1, tf.float32)
        alpha = self.lr * tf.sqrt(1 - tf.pow(self.beta2, step)) / (1 - tf.pow(self.beta1, step))
        m = self.momentum + (gradient - self.momentum) * (1 - self.beta1)
        v = self.velocity + (tf.square(gradient) - self.velocity) * (1 - self.beta2)
        self.momentum.assign(m)
        self.velocity.assign(v)
        subtract_pieces(variables, m * alpha / (tf.sqrt(v) + self.epsilon), self.sizes)
        self.iterations.assign_add(1)


def flat(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def subtract_pieces(variables, change, sizes):
    """variable -= its piece of the flat `change`, for each variable in order."""
    for variable, piece in zip(variables, tf.split(change, sizes)):
        variable.assign_sub(tf.reshape(piece, variable.shape))


class ReferenceAdam:
    """One state (moments m, v) of Keras 2.2's Adam, counting on a given step counter.

        t = counter + 1;  lr_t = lr * (sqrt(1 - beta_2^t) / (1 - beta_1^t))
        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        w = w - lr_t m / (sqrt(v) + epsilon);  counter += 1

    in float32 throughout, constants included (1 - beta_2 is 1 - float32(0.999)),
    as Keras 2.2 computed it. `flat` keeps the moments of all the variables in
    one buffer, as FlatAdam does (the same arithmetic, fewer kernels).
    `iterations` counts this state's own updates.
    """

    def __init__(self, lr, beta1, counter, flat=False, beta2=0.999, epsilon=1e-7):
        self.lr, self.beta1, self.beta2 = (tf.constant(value, tf.float32) for value in (lr, beta1, beta2))
        self.epsilon, self.counter, self.flat = epsilon, counter, flat

    def build(self, variables):
        self.sizes = [int(np.prod(v.shape)) for v in variables]
        shapes = [(sum(self.sizes),)] if self.flat else [v.shape for v in variables]
        self.moments = [tf.Variable(tf.zeros(shape), trainable=False, name="m") for shape in shapes]
        self.velocities = [tf.Variable(tf.zeros(shape), trainable=False, name="v") for shape in shapes]
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        self.variables = [self.iterations, *self.moments, *self.velocities]

    def apply(self, gradients, variables):
        t = tf.cast(self.counter, tf.float32) + 1
        lr_t = self.lr * (tf.sqrt(1.0 - tf.pow(self.beta2, t)) / (1.0 - tf.pow(self.beta1, t)))
        if self.flat:
            steps = [self._moments_step(self.moments[0], self.velocities[0], flat(gradients), lr_t)]
            subtract_pieces(variables, steps[0], self.sizes)
        else:
            for m, v, g, variable in zip(self.moments, self.velocities, gradients, variables):
                variable.assign(variable - self._moments_step(m, v, g, lr_t))
        self.counter.assign_add(1)
        self.iterations.assign_add(1)

    def _moments_step(self, m, v, g, lr_t):
        m_t = self.beta1 * m + (1.0 - self.beta1) * g
        v_t = self.beta2 * v + (1.0 - self.beta2) * tf.square(g)
        m.assign(m_t)
        v.assign(v_t)
        return lr_t * m_t / (tf.sqrt(v_t) + self.epsilon)


class AdamStates:
    """The Adam states of one run: `new(variables)` gives a model's (or an
    update's) own state with fresh moments.

    shared_counter=True, the reference (QUIRK): Keras 2.2's arithmetic, and ONE
    step counter for every state of the run, advanced by each update of any of
    them, as the reference's single Adam object compiled into every model.
    shared_counter=False: each state counts its own steps, with Keras 3's Adam
    (FlatAdam for flat states).
    """

    def __init__(self, lr, beta1, shared_counter=True):
        self.lr, self.beta1 = lr, beta1
        self.counter = (tf.Variable(0, dtype=tf.int64, trainable=False, name="shared_iterations")
                        if shared_counter else None)

    def new(self, variables, flat=False):
        if self.counter is not None:
            optimizer = ReferenceAdam(self.lr, self.beta1, self.counter, flat=flat)
        elif flat:
            optimizer = FlatAdam(self.lr, self.beta1)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=self.lr, beta_1=self.beta1)
        optimizer.build(variables)
        return optimizer

    @property
    def variables(self):
        """What a checkpoint keeps besides the states themselves: the shared counter."""
        return [self.counter] if self.counter is not None else []
