"""GAMO's scores: ACSA (mean per-class recall), GM (geometric mean of the
recalls), accuracy, per-class TPR and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix

if TYPE_CHECKING:
    import numpy.typing as npt


@dataclass(frozen=True)
class Scores:
    """A classifier's scores on one set: ACSA, GM, accuracy, per-class TPR, confusion matrix."""

    acsa: float
    gm: float
    acc: float
    tpr: np.ndarray
    conf_mat: np.ndarray


def scores(true_labels: npt.ArrayLike, predicted_labels: npt.ArrayLike, num_classes: int) -> Scores:
    """ACSA (mean per-class recall), GM (geometric mean of recalls), accuracy."""
    conf_mat = confusion_matrix(true_labels, predicted_labels, labels=np.arange(num_classes))
    support = conf_mat.sum(axis=1)
    tpr = np.divide(np.diag(conf_mat), support, out=np.zeros(num_classes), where=support > 0)
    gm = 0.0 if np.any(tpr == 0) else float(np.exp(np.log(tpr).mean()))
    return Scores(acsa=float(tpr.mean()), gm=gm,
                  acc=float(accuracy_score(true_labels, predicted_labels)),
                  tpr=tpr, conf_mat=conf_mat)


def chance_note(tpr: npt.ArrayLike) -> str:
    """A warning for per-class recalls no better than chance ('' otherwise): an ACSA at
    or below 1 / classes, as predicting one class for every row scores."""
    tpr = np.asarray(tpr, dtype=float)
    if len(tpr) > 1 and tpr.mean() <= 1 / len(tpr) + 1e-9:
        one_class = np.count_nonzero(tpr == 1) == 1 and np.count_nonzero(tpr) == 1
        return (f"chance level (ACSA {tpr.mean():.4f} <= 1/{len(tpr)}"
                + ("; every test row of one class right, none of the others" if one_class else "") + ")")
    return ""
