"""The estimators' checks of their parameters and data, as scikit-learn's own
estimators make them at fit, and the scalings they offer."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

PIXEL_CENTRE = 127.5


def _integer(value, low=1):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value >= low


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)


def _boolean(value):
    return isinstance(value, (bool, np.bool_))


# Parameter -> (what it must be, the check): checked at fit, as scikit-learn's estimators do.
GAMO_PARAMETERS = {
    "steps": ("an int >= 1", _integer),
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


def check_parameters(estimator, names):
    """ValueError naming the first parameter that is not what GAMO_PARAMETERS says."""
    for name in names:
        expected, valid = GAMO_PARAMETERS[name]
        value = getattr(estimator, name)
        if not valid(value):
            raise ValueError(f"The {name!r} parameter of {type(estimator).__name__} must be {expected}. "
                             f"Got {value!r} instead.")


def check_class_sizes(classes, encoded):
    """GAMO needs 2 or more classes, each with 2 or more rows (a convex combination
    of one point is that point, and an IGU of one point learns nothing)."""
    if classes.size < 2:
        raise ValueError(f"y: expected at least 2 classes, got 1 class ({classes[0].tolist()!r})")
    counts = np.bincount(encoded)
    if counts.min() < 2:
        raise ValueError(f"y: expected at least 2 rows in every class, got {counts.min()} in class "
                         f"{classes[np.argmin(counts)].tolist()!r}")


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
