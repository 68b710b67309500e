"""GAMO's scores: ACSA (mean per-class recall), GM (geometric mean of the
recalls), accuracy, per-class TPR and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix


@dataclass(frozen=True)
class Scores:
    acsa: float
    gm: float
    acc: float
    tpr: np.ndarray
    conf_mat: np.ndarray


def scores(true_labels, predicted_labels, num_classes):
    """ACSA (mean per-class recall), GM (geometric mean of recalls), accuracy."""
    conf_mat = confusion_matrix(true_labels, predicted_labels, labels=np.arange(num_classes))
    support = conf_mat.sum(axis=1)
    tpr = np.divide(np.diag(conf_mat), support, out=np.zeros(num_classes), where=support > 0)
    gm = 0.0 if np.any(tpr == 0) else float(np.exp(np.log(tpr).mean()))
    return Scores(acsa=float(tpr.mean()), gm=gm,
                  acc=float(accuracy_score(true_labels, predicted_labels)),
                  tpr=tpr, conf_mat=conf_mat)
