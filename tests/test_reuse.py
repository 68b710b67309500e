"""gamo.reuse: fits of the same shapes share one compiled step; each fit's
result is what its own learner would have given, and stays its own."""

import numpy as np
import pytest
from sklearn.datasets import make_classification

from gamo import GamoClassifier, GamoSampler, reuse
from gamo.backend import BACKEND, jit_for_work
from gamo.game import Gamo
from gamo.learner import ClassifierOnly

pytestmark = pytest.mark.every_backend

SMALL = dict(steps=16, batch_size=16, latent_dim=4)


def imbalanced(n_minority=12):
    """60 rows of class 0 and n_minority of class 1, 5 features."""
    X, y = make_classification(n_samples=200, n_features=5, n_informative=3, random_state=0)
    rows = np.concatenate([np.flatnonzero(y == 0)[:60], np.flatnonzero(y == 1)[:n_minority]])
    return X[rows], y[rows]


def counting(step, name, counts):
    def counted(self, *args):
        counts[name] += 1
        return step(self, *args)
    return counted


@pytest.fixture
def traces(monkeypatch):
    """How often each learner's step has run as Python: once per trace where it
    is compiled (TensorFlow, JAX), at every batch where it runs eagerly."""
    counts = {"Gamo": 0, "ClassifierOnly": 0}
    for learner in (Gamo, ClassifierOnly):
        monkeypatch.setattr(learner, "step", counting(learner.step, learner.__name__, counts))
    reuse.forget_kept_learners()
    yield counts
    reuse.forget_kept_learners()


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch runs the step eagerly: nothing is compiled")
@pytest.mark.parametrize("classifier_only", [False, True])
def test_a_second_fit_of_the_same_shapes_does_not_compile_again(traces, classifier_only):
    X, y = imbalanced()
    name = "ClassifierOnly" if classifier_only else "Gamo"
    GamoClassifier(**SMALL, classifier_only=classifier_only, random_state=0).fit(X, y)
    first = traces[name]
    assert first >= 1
    GamoClassifier(**SMALL, classifier_only=classifier_only, random_state=1).fit(X + 1, y)
    assert traces[name] == first
    assert reuse.kept_learners() == 1


@pytest.mark.skipif(BACKEND == "torch", reason="PyTorch runs the step eagerly: nothing is compiled")
def test_other_shapes_compile_their_own_step(traces):
    X, y = imbalanced()
    GamoClassifier(**SMALL, random_state=0).fit(X, y)
    first = traces["Gamo"]
    X_more, y_more = imbalanced(n_minority=14)     # another IGU size
    GamoClassifier(**SMALL, random_state=0).fit(X_more, y_more)
    assert traces["Gamo"] > first
    assert reuse.kept_learners() == 2


def fitted(seed, X, y):
    classifier = GamoClassifier(**SMALL, random_state=seed).fit(X, y)
    return classifier, classifier.predict_proba(X), classifier.sample(classifier.minority_classes_[0], 5)


def test_a_fit_on_a_kept_learner_equals_a_fit_on_its_own(traces):
    X, y = imbalanced()
    first, first_proba, first_samples = fitted(0, X, y)
    second, proba, samples = fitted(1, X, y)          # trains the learner the first fit kept
    reuse.forget_kept_learners()
    alone, alone_proba, alone_samples = fitted(1, X, y)
    for name, curve in second.loss_curve_.items():
        np.testing.assert_array_equal(curve, alone.loss_curve_[name])
    np.testing.assert_array_equal(proba, alone_proba)
    np.testing.assert_array_equal(samples, alone_samples)
    # The first fit's networks are its own: the second fit did not change them.
    np.testing.assert_array_equal(first.predict_proba(X), first_proba)
    assert first.classifier_ is not second.classifier_


def test_kept_learners_are_bounded(traces, monkeypatch):
    monkeypatch.setattr(reuse, "KEPT_LEARNERS", 2)      # the bound's logic with fewer compilations
    for n_minority in range(6, 6 + reuse.KEPT_LEARNERS + 2):
        GamoSampler(**SMALL, random_state=0).fit_resample(*imbalanced(n_minority))
    assert reuse.kept_learners() == reuse.KEPT_LEARNERS == 2


def test_auto_compiles_by_the_work():
    if BACKEND == "tensorflow":
        assert not jit_for_work(300, 30) and jit_for_work(25000, 30)    # a graph for short fits, XLA for long
    else:
        assert jit_for_work(300, 30) == jit_for_work(25000, 30) == (BACKEND == "jax")


def test_jit_takes_a_bool_or_auto():
    with pytest.raises(ValueError, match="'jit' parameter of GamoClassifier must be a bool or 'auto'"):
        GamoClassifier(jit="fast").fit(*imbalanced())
