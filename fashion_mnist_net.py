"""Networks of convolutional GAMO: the feature extractor F, learned end to end.

M, D, the generator trunk and the IGUs are the dense ones (dense_net.py) on
F's feature vectors; only F is new here.
"""

from __future__ import annotations

from dense_suppli import import_backend_quietly

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402
from keras import layers  # noqa: E402

from dense_net import (  # noqa: E402, F401  (re-exported: the networks on F's features)
    LeakyReLU,
    build_classifier,
    build_discriminator,
    build_generator_trunk,
    build_igu,
)

IMAGE_SHAPE = (28, 28, 1)
NUM_FEATURES = 512
FILTERS = 32
KERNEL_SIZE = 5


def build_feature_extractor(image_shape=IMAGE_SHAPE, num_features=NUM_FEATURES,
                            filters=FILTERS, kernel_size=KERNEL_SIZE, name="Conv"):
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
