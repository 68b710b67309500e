"""The estimators' checks of their parameters and data, as scikit-learn's own
estimators make them at fit, and the scalings they offer."""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from gamo.data import single_row_notes

PIXEL_CENTRE = 127.5


def _integer(value, low=1):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value >= low


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)


def _boolean(value):
    return isinstance(value, (bool, np.bool_))


# Parameter -> (what it must be, the check): checked at fit, as scikit-learn's estimators do.
GAMO_PARAMETERS = {
    "steps": ("an int >= 1 or 'auto'", lambda v: _integer(v) or (isinstance(v, str) and v == "auto")),
    "epochs": ("an int >= 1 or None", lambda v: v is None or _integer(v)),
    "batch_size": ("an int >= 1", _integer),
    "latent_dim": ("an int >= 1", _integer),
    "learning_rate": ("a real number >= 0", lambda v: _real(v) and v >= 0),
    "beta_1": ("a real number in [0, 1)", lambda v: _real(v) and 0 <= v < 1),
    "use_discriminator": ("a bool", _boolean),
    "classifier_only": ("a bool", _boolean),
    "standard_adam": ("a bool", _boolean),
    "standard_batchnorm": ("a bool", _boolean),
    "scaling": ("'standard', 'pixels' or None", lambda v: v is None or (isinstance(v, str) and v in
                                                                       ("standard", "pixels"))),
    "jit": ("a bool or 'auto'", lambda v: _boolean(v) or (isinstance(v, str) and v == "auto")),
    "random_state": ("an int, a numpy.random.RandomState or None", lambda v: v is None or _integer(v, 0)
                     or isinstance(v, np.random.RandomState)),
    "verbose": ("a bool or an int", lambda v: _boolean(v) or _integer(v, 0)),
}


# The estimators' defaults for tabular data, chosen on the benchmark's development subset
# (gamo.compare.datasets.DEVELOPMENT_SETS; README "Tabular data"): steps="auto" trains
# max(TABULAR_MIN_BATCHES, TABULAR_EPOCHS passes) batches at this learning rate.
TABULAR_MIN_BATCHES = 1000
TABULAR_EPOCHS = 3
TABULAR_LEARNING_RATE = 0.002


def tabular_steps(steps, batches_per_epoch):
    """The steps (2 per batch) of a fit: `steps` itself, or for "auto" the tabular budget."""
    if steps != "auto":
        return steps
    return 2 * max(TABULAR_MIN_BATCHES, TABULAR_EPOCHS * batches_per_epoch)


def check_parameters(estimator, names):
    """ValueError naming the first parameter that is not what GAMO_PARAMETERS says."""
    for name in names:
        expected, valid = GAMO_PARAMETERS[name]
        value = getattr(estimator, name)
        if not valid(value):
            raise ValueError(f"The {name!r} parameter of {type(estimator).__name__} must be {expected}. "
                             f"Got {value!r} instead.")


def check_class_sizes(classes, encoded):
    """GAMO needs 2 or more classes. A class with a single row trains, with a
    warning, as in the scripts (gamo.data.single_row_notes)."""
    if classes.size < 2:
        raise ValueError(f"y: expected at least 2 classes, got 1 class ({classes[0].tolist()!r})")
    for note in single_row_notes(np.bincount(encoded), classes):
        warnings.warn(f"y: {note}", UserWarning, stacklevel=3)


def integer_seed(random_state):
    """An int seed for Keras and NumPy: random_state itself if it is one."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class PixelScaler:
    """The reference's (x - 127.5) / 127.5 and its inverse."""

    def transform(self, X):
        return (np.asarray(X, dtype=np.float32) - PIXEL_CENTRE) / PIXEL_CENTRE

    def inverse_transform(self, X):
        return np.asarray(X) * PIXEL_CENTRE + PIXEL_CENTRE


class Unscaled:
    def transform(self, X):
        return X

    def inverse_transform(self, X):
        return X


def fitted_scaler(scaling, X):
    if scaling == "standard":
        return StandardScaler().fit(X)
    return PixelScaler() if scaling == "pixels" else Unscaled()
