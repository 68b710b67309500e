"""GAMO's networks. On feature vectors: classifier M, discriminator D, the
generator trunk (the paper's cTMU) and one instance generation unit (IGU) per
minority class. On images: the feature extractor F of convolutional GAMO,
whose feature vectors M, D and the IGUs then take. Sizes are arguments; the
defaults are the reference's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gamo.layers import CallSiteBatchNormalization, ConvexCombination, LeakyReLU
from gamo.sizes import IMAGE_SHAPE, LATENT_DIM, NUM_FEATURES  # noqa: F401 (nets.LATENT_DIM, ...)

# isort: split
import keras
from keras import layers

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from gamo.backend import Tensor

LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9
HIDDEN_WIDTHS = (256, 128)        # M and D
TRUNK_WIDTHS = (256, 64)          # generator trunk; the last is the code size


def _leaky_mlp(inputs: Tensor, widths: Sequence[int], name: str) -> Tensor:
    hidden = inputs
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, name=f"{name}_dense_{index}")(hidden)
        hidden = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky_{index}")(hidden)
    return hidden


def build_classifier(num_features: int, num_classes: int, widths: Sequence[int] = HIDDEN_WIDTHS,
                     name: str = "classifier") -> keras.Model:
    """M: features -> Dense/LeakyReLU(0.1) stack -> softmax over the classes."""
    features = keras.Input((num_features,), name="features")
    hidden = _leaky_mlp(features, widths, name)
    probabilities = layers.Dense(num_classes, activation="softmax", name=f"{name}_out")(hidden)
    return keras.Model(features, probabilities, name=name)


def build_discriminator(num_features: int, num_classes: int, widths: Sequence[int] = HIDDEN_WIDTHS,
                        name: str = "discriminator") -> keras.Model:
    """D: [features, one-hot label] -> Dense/LeakyReLU(0.1) stack -> P(real)."""
    features = keras.Input((num_features,), name="features")
    label = keras.Input((num_classes,), name="label")
    joined = layers.Concatenate(name=f"{name}_concat")([features, label])
    hidden = _leaky_mlp(joined, widths, name)
    real = layers.Dense(1, activation="sigmoid", name=f"{name}_out")(hidden)
    return keras.Model([features, label], real, name=name)


def build_generator_trunk(latent_dim: int, num_classes: int, widths: Sequence[int] = TRUNK_WIDTHS,
                          name: str = "generator") -> keras.Model:
    """The conditional transient mapping unit: [noise, label] -> a code of widths[-1]."""
    noise = keras.Input((latent_dim,), name="noise")
    label = keras.Input((num_classes,), name="label")
    hidden = layers.Concatenate(name=f"{name}_concat")([noise, label])
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, activation="relu", name=f"{name}_dense_{index}")(hidden)
        hidden = CallSiteBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_{index}")(hidden)
    return keras.Model([noise, label], hidden, name=name)


CONVEX_WEIGHTS = "convex_weights"
CONVEX_COMBINATION = "convex_combination"


def build_igu(code_dim: int, num_points: int, num_features: int, name: str = "igu") -> keras.Model:
    """IGU_k: code -> softmax weights over class k's points -> their weighted sum."""
    code = keras.Input((code_dim,), name="code")
    weights = layers.Dense(num_points, activation="softmax", name=CONVEX_WEIGHTS)(code)
    sample = ConvexCombination(num_points, num_features, name=CONVEX_COMBINATION)(weights)
    return keras.Model(code, sample, name=name)


def set_class_points(igu: keras.Model, points: npt.ArrayLike) -> None:
    """Give an IGU the current points of its class (pixels, or features that change)."""
    igu.get_layer(CONVEX_COMBINATION).points.assign(points)


def class_points(igu: keras.Model) -> keras.Variable:
    """The points an IGU combines (a non-trainable weight)."""
    return igu.get_layer(CONVEX_COMBINATION).points


def convex_weights_model(igu: keras.Model) -> keras.Model:
    """The part of an IGU that gives the convex weights of its class's points."""
    return keras.Model(igu.input, igu.get_layer(CONVEX_WEIGHTS).output)


FILTERS = 32
KERNEL_SIZE = 5


def build_feature_extractor(image_shape: Sequence[int] = IMAGE_SHAPE, num_features: int = NUM_FEATURES,
                            filters: int = FILTERS, kernel_size: int = KERNEL_SIZE,
                            name: str = "Conv") -> keras.Model:
    """F: two (Conv 5x5 same, LeakyReLU 0.1, AveragePooling 2x2) blocks, Dense tanh."""
    images = keras.Input(tuple(image_shape), name="images")
    hidden = images
    for index in range(2):
        hidden = layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_conv_{index}")(hidden)
        hidden = LeakyReLU(negative_slope=0.1, name=f"{name}_leaky_{index}")(hidden)
        hidden = layers.AveragePooling2D(2, strides=2, padding="same", name=f"{name}_pool_{index}")(hidden)
    hidden = layers.Flatten(name=f"{name}_flatten")(hidden)
    features = layers.Dense(num_features, activation="tanh", name=f"{name}_features")(hidden)
    return keras.Model(images, features, name=name)
