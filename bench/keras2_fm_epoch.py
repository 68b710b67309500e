"""The reference's F+M epoch and feature pass on tf.keras 2.x, for comparison with ours.

The original convolutional script's F+M epoch and features pass, on
TensorFlow 2.15's Keras 2 as it runs them: F+M compiled with M frozen,
Adam(0.0002, 0.5), mean squared error, fit() over 9000 images with batch 32;
F.predict() with batch 500. It
needs a throwaway virtual environment, since TensorFlow 2.15 does not install
beside this project's:

    python3 -m venv /tmp/tf215 && /tmp/tf215/bin/pip install tensorflow==2.15.1
    /tmp/tf215/bin/python bench/keras2_fm_epoch.py
    TF_ENABLE_ONEDNN_OPTS=1 /tmp/tf215/bin/python bench/keras2_fm_epoch.py   # oneDNN forced on

Prints the median seconds of 4 epochs and of 4 feature passes (after one of
each to compile), and whether TensorFlow's oneDNN kernels were on.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.util import _pywrap_util_port  # noqa: E402


def reference_models():
    images = tf.keras.Input((28, 28, 1))
    hidden = images
    for _ in range(2):
        hidden = tf.keras.layers.Conv2D(32, 5, padding="same")(hidden)
        hidden = tf.keras.layers.LeakyReLU(0.1)(hidden)
        hidden = tf.keras.layers.AveragePooling2D(2, strides=2, padding="same")(hidden)
    flat = tf.keras.layers.Flatten()(hidden)
    F = tf.keras.Model(images, tf.keras.layers.Dense(512, activation="tanh")(flat))
    features = tf.keras.Input((512,))
    hidden = tf.keras.layers.LeakyReLU(0.1)(tf.keras.layers.Dense(256)(features))
    hidden = tf.keras.layers.LeakyReLU(0.1)(tf.keras.layers.Dense(128)(hidden))
    M = tf.keras.Model(features, tf.keras.layers.Dense(10, activation="softmax")(hidden))
    M.trainable = False
    FM = tf.keras.Model(images, M(F(images)))
    FM.compile(tf.keras.optimizers.Adam(0.0002, 0.5), "mse")
    return F, FM


def median_seconds(action, repeats=4):
    action()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times), times


def main():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (9000, 28, 28, 1)).astype(np.float32)
    onehot = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 9000)]
    F, FM = reference_models()
    epoch, epochs = median_seconds(lambda: FM.fit(images, onehot, batch_size=32, epochs=1, shuffle=True,
                                                  verbose=0))
    features, passes = median_seconds(lambda: F.predict(images, batch_size=500, verbose=0))
    print(f"TensorFlow {tf.__version__}, oneDNN {'on' if _pywrap_util_port.IsMklEnabled() else 'off'}: "
          f"F+M epoch {epoch:.2f} s {[round(t, 2) for t in epochs]}; "
          f"features {features:.2f} s {[round(t, 2) for t in passes]}")


if __name__ == "__main__":
    main()
