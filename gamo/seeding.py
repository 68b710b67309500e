"""Seeding the process' random generators, and keeping the caller's."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import random
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.backend import BACKEND
from gamo.environment import import_tensorflow_quietly

# isort: split
import keras
from keras.src.backend.common import global_state as keras_global_state

if BACKEND == "torch":
    import torch

if TYPE_CHECKING:
    from collections.abc import Iterator


def set_random_seed(seed: int) -> None:
    """keras.utils.set_random_seed: Python's, NumPy's and Keras' seeds. It also
    seeds TensorFlow wherever TensorFlow is installed, whatever the backend;
    imported here first, TensorFlow starts without its console lines."""
    if BACKEND != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
        import_tensorflow_quietly()
    keras.utils.set_random_seed(seed)


# Keras' global random state (keras.utils.set_random_seed's; Keras has no public getter).
KERAS_SEED, KERAS_SEED_GENERATOR = "global_random_seed", "global_seed_generator"


@contextlib.contextmanager
def global_random_state_kept() -> Iterator[None]:
    """Inside, code may reseed the process' global random generators (Python's,
    NumPy's, Keras', TensorFlow's, PyTorch's: set_random_seed does); on leaving,
    the caller's states are put back, as a scikit-learn estimator leaves them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras_seed = keras_global_state.get_global_attribute(KERAS_SEED)
    keras_generator = keras_global_state.get_global_attribute(KERAS_SEED_GENERATOR)
    tensorflow_seed = _tensorflow_seed_state()
    torch_state = torch.get_rng_state() if BACKEND == "torch" else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        keras_global_state.set_global_attribute(KERAS_SEED, keras_seed)
        keras_global_state.set_global_attribute(KERAS_SEED_GENERATOR, keras_generator)
        if tensorflow_seed is not None:
            _restore_tensorflow_seed(*tensorflow_seed)
        if torch_state is not None:
            torch.set_rng_state(torch_state)


def _tensorflow_context() -> Any:
    from tensorflow.python.eager import context

    return context.context()


def _tensorflow_seed_state() -> tuple[Any, Any] | None:
    """TensorFlow's global seed and its op-seed sequence (tf.random.set_seed's state;
    TensorFlow has no public getter), if TensorFlow is loaded."""
    if "tensorflow" not in sys.modules:
        return None
    context = _tensorflow_context()
    return context._seed, copy.deepcopy(getattr(context, "_rng", None))


def _restore_tensorflow_seed(seed: int | None, sequence: Any) -> None:
    context = _tensorflow_context()
    context._seed = seed
    if sequence is not None:
        context._rng = sequence
    elif hasattr(context, "_rng"):       # no seed had been set: none is
        del context._rng
