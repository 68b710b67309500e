"""The tabular benchmark's units (gamo-benchmark): one unit is a data set, a
repeat, a fold and an over-sampler. A unit fits the scaling on the training
fold, balances the scaled training fold with the sampler, fits every
classifier on the balanced rows and scores it on the test fold; its result
(or the sampler's refusal) is saved as one JSON file the moment it ends, and
a unit whose file exists is never played again.

    <out-dir>/runs/benchmark/<folds>x<repeats>/<data set>/<sampler>/r<repeat>_f<fold>.json
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gamo.compare.datasets import load
from gamo.environment import keras_backend_name
from gamo.errors import InputError, one_line
from gamo.files import save_json

# ---------------------------------------------------------------- samplers

# A sampler factory: (seed, rows of the smallest training class, GAMO's options) -> a
# fit_resample-able over-sampler, or None for no over-sampling.
Factory = Callable[[int, int, dict], Any]

# smote-variants' best-ranked samplers (Kovács 2019), offered when the package imports.
SMOTE_VARIANTS = {"polynom-fit-smote": "polynom_fit_SMOTE_star", "prowsyn": "ProWSyn",
                  "smote-ipf": "SMOTE_IPF"}


def _from_methods_table(name: str) -> Factory:
    """An over-sampler of gamo.methods' table (imbalanced-learn's, or a user's)."""
    def factory(seed, smallest, options):
        from gamo.methods import method_named

        return method_named(name).sampler(seed, smallest)
    return factory


class SmoteVariant:
    """A smote-variants sampler behind imbalanced-learn's fit_resample."""

    def __init__(self, class_name: str, seed: int):
        import logging

        import smote_variants

        logging.getLogger("smote_variants").setLevel(logging.WARNING)    # a line per call otherwise
        self.sampler = getattr(smote_variants, class_name)(random_state=seed)

    def fit_resample(self, X, y):
        return self.sampler.sample(np.asarray(X), np.asarray(y))


def _smote_variant(class_name: str) -> Factory:
    return lambda seed, smallest, options: SmoteVariant(class_name, seed)


def _gamo(seed, smallest, options):
    from gamo import GamoSampler

    return GamoSampler(random_state=seed, **options)


def smote_variants_available() -> bool:
    """Installed (found without importing it: its import takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("smote_variants") is not None


def samplers() -> dict[str, Factory]:
    """Name -> factory: none, the methods table's over-samplers, smote-variants'
    best where installed, and GAMO."""
    from gamo.methods import methods

    table: dict[str, Factory] = {"none": lambda seed, smallest, options: None}
    table.update({name: _from_methods_table(name) for name, method in methods().items()
                  if method.sampler is not None})
    if smote_variants_available():
        table.update({name: _smote_variant(class_name) for name, class_name in SMOTE_VARIANTS.items()})
    table["gamo"] = _gamo
    return table


DEFAULT_SAMPLERS = ("none", "random", "smote", "adasyn", "borderline-smote", *SMOTE_VARIANTS, "gamo")

# ---------------------------------------------------------------- classifiers


def _classifier(name: str, seed: int, options: dict):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    if name == "lr":
        return LogisticRegression(max_iter=1000)
    if name == "svm":
        return SVC(random_state=seed)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=5)
    if name == "tree":
        return DecisionTreeClassifier(random_state=seed)
    if name == "gamo-m":        # GAMO's classifier M alone, the earlier bench/tabular.py's arm
        from gamo import GamoClassifier

        return GamoClassifier(classifier_only=True, random_state=seed, steps=2 * options["updates"])
    raise InputError(f"--classifiers: unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")


CLASSIFIERS = {"lr": "logistic regression", "svm": "SVM (RBF kernel)", "knn": "5 nearest neighbours",
               "tree": "decision tree", "gamo-m": "GAMO's classifier M alone (--m-updates updates)"}
DEFAULT_CLASSIFIERS = ("lr", "svm", "knn", "tree")

# ---------------------------------------------------------------- scores

SCORES = {"auc": "AUC", "gmean": "G-mean", "f1": "F1", "bacc": "balanced accuracy"}


def scores_of(classifier, X_test, y_test, minority) -> dict[str, float]:
    """AUC, G-mean, F1 (of the minority class; macro over classes when there are
    more than two) and balanced accuracy on the test fold."""
    from imblearn.metrics import geometric_mean_score
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    predicted = classifier.predict(X_test)
    classes = np.unique(y_test)
    binary = len(classifier.classes_) == 2
    if hasattr(classifier, "decision_function") and binary:
        ranking = classifier.decision_function(X_test)
        ranking = ranking if classifier.classes_[1] == minority else -ranking
        auc = roc_auc_score(y_test == minority, ranking)
    else:
        probabilities = classifier.predict_proba(X_test)
        auc = (roc_auc_score(y_test == minority, probabilities[:, list(classifier.classes_).index(minority)])
               if binary else
               roc_auc_score(y_test, probabilities, multi_class="ovr", labels=classifier.classes_))
    f1 = (f1_score(y_test, predicted, pos_label=minority, zero_division=0) if len(classes) <= 2
          else f1_score(y_test, predicted, average="macro", zero_division=0))
    return {"auc": float(auc), "gmean": float(geometric_mean_score(y_test, predicted)), "f1": float(f1),
            "bacc": float(balanced_accuracy_score(y_test, predicted))}

# ---------------------------------------------------------------- units


@dataclass(frozen=True)
class Protocol:
    folds: int = 5
    repeats: int = 3
    seed: int = 0
    classifiers: tuple = DEFAULT_CLASSIFIERS
    gamo: tuple = ()          # GAMO's options beyond its defaults, as (name, value) pairs
    m_updates: int = 2000     # the gamo-m classifier's updates

    @property
    def folder(self) -> str:
        return f"{self.folds}x{self.repeats}" + (f"_seed{self.seed}" if self.seed else "")

    def sampler_folder(self, sampler: str) -> str:
        """The sampler's folder: its name, and for GAMO with options a short hash of them."""
        if sampler != "gamo" or not self.gamo:
            return sampler
        text = json.dumps(sorted(self.gamo))
        return f"gamo-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def units(self):
        return [(repeat, fold) for repeat in range(self.repeats) for fold in range(self.folds)]


def unit_path(out_dir, protocol: Protocol, dataset: str, sampler: str, repeat: int, fold: int) -> Path:
    return (Path(out_dir) / "runs" / "benchmark" / protocol.folder / dataset
            / protocol.sampler_folder(sampler)
            / f"r{repeat}_f{fold}.json")


def read_unit(path: Path, classifiers) -> dict | None:
    """A saved unit with every classifier asked for (or a refusal), else None (to play)."""
    try:
        unit = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(unit, dict) or unit.get("status") not in ("ok", "refused"):
        return None
    if unit["status"] == "ok" and not set(classifiers) <= set(unit.get("scores", {})):
        return None
    return unit


def fold_rows(labels: np.ndarray, protocol: Protocol, repeat: int, fold: int):
    """(training rows, test rows) of a repeat's fold: stratified, each repeat shuffled
    with its own seed (repeat r: protocol.seed + r), as RepeatedStratifiedKFold."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(protocol.folds, shuffle=True, random_state=protocol.seed + repeat)
    return list(splitter.split(np.zeros(len(labels)), labels))[fold]


def play_unit(out_dir, protocol: Protocol, dataset: str, sampler: str, repeat: int, fold: int) -> dict:
    """Play one unit and save it; a sampler that refuses the fold is saved as refused."""
    from sklearn.preprocessing import StandardScaler

    data = load(dataset)
    train, test = fold_rows(data.labels, protocol, repeat, fold)
    scaler = StandardScaler().fit(data.features[train])          # fitted inside the training fold
    X_train, X_test = scaler.transform(data.features[train]), scaler.transform(data.features[test])
    y_train, y_test = data.labels[train], data.labels[test]
    counts = np.bincount(y_train)
    minority = int(np.flatnonzero(counts)[np.argmin(counts[counts > 0])])
    seed = protocol.seed + 1000 * repeat + fold
    record: dict[str, Any] = {"dataset": dataset, "sampler": sampler, "repeat": repeat, "fold": fold,
                              "seed": seed, "gamo": dict(protocol.gamo) if sampler == "gamo" else {},
                              "backend": keras_backend_name() if sampler == "gamo" else None,
                              "train_rows": int(len(train)), "test_rows": int(len(test))}
    started = time.perf_counter()
    try:
        made = samplers()[sampler](seed, int(counts[counts > 0].min()), dict(protocol.gamo))
        X_fit, y_fit = (X_train, y_train) if made is None else made.fit_resample(X_train, y_train)
    except (ValueError, RuntimeError, InputError, np.linalg.LinAlgError) as error:
        record.update(status="refused", reason=one_line(error), sampler_time_s=time.perf_counter() - started)
        save_json(unit_path(out_dir, protocol, dataset, sampler, repeat, fold), record)
        return record
    record.update(sampler_time_s=time.perf_counter() - started, balanced_rows=int(len(y_fit)))
    if sampler == "gamo":       # every parameter, defaults included: a later release may change them
        record["gamo_params"] = made.get_params()
    scores, times = {}, {}
    for name in protocol.classifiers:
        classifier, started = _classifier(name, seed, {"updates": protocol.m_updates}), time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # convergence notices of a fold: the score says it
            classifier.fit(X_fit, y_fit)
            scores[name] = scores_of(classifier, X_test, y_test, minority)
        times[name] = time.perf_counter() - started
    record.update(status="ok", scores=scores, classifier_time_s=times)
    save_json(unit_path(out_dir, protocol, dataset, sampler, repeat, fold), record)
    return record


def play_units(out_dir, protocol: Protocol, dataset: str, sampler: str, say=print) -> int:
    """Every missing unit of one data set and sampler, one after another, each
    saved as it ends; returns how many were played."""
    played = 0
    for repeat, fold in protocol.units():
        path = unit_path(out_dir, protocol, dataset, sampler, repeat, fold)
        if read_unit(path, protocol.classifiers) is not None:
            continue
        unit = play_unit(out_dir, protocol, dataset, sampler, repeat, fold)
        played += 1
        outcome = (f"refused ({unit['reason']})" if unit["status"] == "refused" else
                   " ".join(f"{name} {scores['bacc']:.3f}" for name, scores in unit["scores"].items()))
        say(f"{dataset} {sampler} repeat {repeat} fold {fold}: {outcome} "
            f"(sampler {unit['sampler_time_s']:.1f} s)", flush=True)
    return played


def saved_units(out_dir, protocol: Protocol, datasets, sampler_names) -> list[dict]:
    """Every saved unit of these data sets and samplers."""
    units = []
    for dataset in datasets:
        for sampler in sampler_names:
            for repeat, fold in protocol.units():
                unit = read_unit(unit_path(out_dir, protocol, dataset, sampler, repeat, fold),
                                 protocol.classifiers)
                if unit is not None:
                    units.append(unit)
    return units
