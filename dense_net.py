"""Networks of GAMO on feature vectors: classifier M, discriminator D, the
generator trunk (the paper's cTMU) and one instance generation unit (IGU) per
minority class. Sizes are arguments; the defaults are the reference's.
"""

from __future__ import annotations

from dense_suppli import import_tensorflow_quietly

import_tensorflow_quietly()   # before Keras, which imports TensorFlow

import keras  # noqa: E402
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
        hidden = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_{index}")(hidden)
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
