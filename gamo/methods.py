"""The methods a run can train, in one table: a name -> what it trains (GAMO's
game, with or without D, or the classifier alone) and, for the classical
baselines, the imbalanced-learn over-sampler applied to the training set
before the classifier's loop. The training scripts' --method, the summary,
settings.json and the comparison harness all read it; adding a method is
adding an entry (register_method), from any module named in the environment
variable GAMO_METHODS (comma-separated), which every script imports first:

    # my_methods.py, on the Python path
    from imblearn.over_sampling import KMeansSMOTE
    from gamo.methods import Method, register_method
    register_method("kmeans-smote", Method("the classifier alone on the KMeans-SMOTE-balanced set",
                                           "KMeansSmote", game=False,
                                           sampler=lambda seed, smallest: KMeansSMOTE(random_state=seed)))

    GAMO_METHODS=my_methods python dense_gamo_main.py --method kmeans-smote

Every baseline trains the same classifier with the same optimiser, batch size
and number of batches as every other method: only the rows differ.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gamo.errors import InputError, one_line
from gamo.files import PathLike

# A sampler factory: (seed, rows of the smallest class) -> an imbalanced-learn over-sampler.
SamplerFactory = Callable[[int, int], Any]


@dataclass(frozen=True)
class Method:
    """What a method trains. `sampler`: the over-sampler that balances the training
    set first (classifier alone); `neighbours`: it needs that many rows in every
    class (k nearest neighbours plus the row itself)."""

    description: str                  # for the summary: "the classifier alone on ..."
    folder_suffix: str                # the default output folder: <train prefix>_<suffix>
    game: bool                        # GAMO's game, or the classifier alone
    use_discriminator: bool = True
    sampler: SamplerFactory | None = None
    neighbours: int = 0


def _smote(seed: int, smallest: int) -> Any:
    from imblearn.over_sampling import SMOTE

    return SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)


def _random(seed: int, smallest: int) -> Any:
    from imblearn.over_sampling import RandomOverSampler

    return RandomOverSampler(random_state=seed)


def _adasyn(seed: int, smallest: int) -> Any:
    from imblearn.over_sampling import ADASYN

    return ADASYN(n_neighbors=min(5, smallest - 1), random_state=seed)


def _borderline(seed: int, smallest: int) -> Any:
    from imblearn.over_sampling import BorderlineSMOTE

    return BorderlineSMOTE(k_neighbors=min(5, smallest - 1), m_neighbors=10, random_state=seed)


METHODS: dict[str, Method] = {      # the paper's four first, in its order
    "baseline": Method("the classifier alone", "Baseline", game=False),
    "smote": Method("the classifier alone on the SMOTE-balanced set", "Smote", game=False, sampler=_smote,
                    neighbours=2),
    "gamo-nodis": Method("GAMO without D", "GamoNoDis", game=True, use_discriminator=False),
    "gamo": Method("GAMO", "Gamo", game=True),
    "random": Method("the classifier alone on the set balanced by random over-sampling", "Random",
                     game=False, sampler=_random),
    "adasyn": Method("the classifier alone on the ADASYN-balanced set", "Adasyn", game=False,
                     sampler=_adasyn, neighbours=2),
    "borderline-smote": Method("the classifier alone on the Borderline-SMOTE-balanced set", "BorderlineSmote",
                               game=False, sampler=_borderline, neighbours=2),
}
PAPER_METHODS = ("baseline", "smote", "gamo-nodis", "gamo")


def methods() -> dict[str, Method]:
    """The table, with the methods of the modules named in GAMO_METHODS imported first."""
    for module in filter(None, (name.strip() for name in os.environ.get("GAMO_METHODS", "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as error:      # the user's module: say which, in one line
            raise InputError(f"GAMO_METHODS: cannot import {module} ({type(error).__name__}: "
                             f"{one_line(error)})") from None
    return METHODS


def register_method(name: str, method: Method) -> None:
    """Add a method to the table (or replace one): --method, the summary and the
    harness offer it from then on."""
    METHODS[name] = method


def method_named(name: str) -> Method:
    """The method of that name; InputError naming the known ones otherwise."""
    known = methods()
    if name not in known:
        raise InputError(f"--method: unknown method {name!r}; known: {', '.join(known)}")
    return known[name]


def oversampled(name: str, features: np.ndarray, labels: np.ndarray, seed: int,
                path: PathLike = "train") -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The training set balanced by method `name`'s over-sampler, seeded (the original
    rows first, then the new ones); InputError in one line if it refuses the set."""
    method = method_named(name)
    if method.sampler is None:
        return features, labels
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    if smallest < method.neighbours:
        raise InputError(f"{path}: {name} needs at least {method.neighbours} training rows in every class, "
                         f"the smallest class has {smallest}")
    try:
        balanced, balanced_labels = method.sampler(seed, smallest).fit_resample(features, labels)
    except (ValueError, RuntimeError) as error:
        raise InputError(f"{path}: {name} cannot balance this training set ({one_line(error)})") from None
    return np.asarray(balanced, dtype=np.float32), np.asarray(balanced_labels, dtype=np.int64)
