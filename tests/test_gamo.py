"""gamo.py: GAMO as a scikit-learn classifier and an imbalanced-learn over-sampler,
checked with the peers' own estimator checks and against the dense script."""

from collections import Counter

import numpy as np
import pytest
from conftest import SEED
from imblearn.datasets import make_imbalance
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from imblearn.utils.estimator_checks import parametrize_with_checks as imblearn_checks
from scipy.optimize import nnls
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.utils.estimator_checks import check_classifiers_train
from sklearn.utils.estimator_checks import parametrize_with_checks as sklearn_checks

from gamo import GamoClassifier, GamoSampler
from gamo.cli import dense
from gamo.data import read_labelled_csv, relabel_by_size

tf = pytest.importorskip("tensorflow")

# Small settings: the checks fit many times.
TINY = dict(steps=6, batch_size=16, latent_dim=4, random_state=SEED, jit=False)
EXPECTED_FAILURES = {
    "check_classifiers_train": "6 steps are too few to learn its blobs; run with 300 steps in "
                               "test_the_classifier_learns_the_checks_blobs",
    "check_methods_sample_order_invariance": "float32 matrix products: the last bits of a row's "
                                             "probabilities depend on its position in the batch",
}


@pytest.fixture(autouse=True)
def eager_steps(request):
    """The estimator checks fit dozens of times on tiny data: eager steps skip the
    tracing (but in tests marked compiled_steps). Restored after each test."""
    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(request.node.get_closest_marker("compiled_steps") is None)
    yield
    tf.config.run_functions_eagerly(before)


def expected_failures(estimator):
    return EXPECTED_FAILURES if isinstance(estimator, GamoClassifier) else {}


@pytest.mark.slow
@sklearn_checks([GamoClassifier(**TINY), GamoSampler(**TINY)], expected_failed_checks=expected_failures)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@imblearn_checks([GamoSampler(**TINY)])
def test_imbalanced_learn_sampler_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_the_classifier_learns_the_checks_blobs():
    check_classifiers_train("GamoClassifier", GamoClassifier(**{**TINY, "steps": 300}))


DIGIT_COUNTS = {0: 60, 1: 30, 2: 12, 3: 6}


def imbalanced_digits(counts=DIGIT_COUNTS):
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, list(counts))
    return make_imbalance(X[keep], y[keep], sampling_strategy=counts, random_state=SEED)


def in_convex_hull(point, points):
    """Residual of the best convex combination of `points` (non-negative weights
    summing to one) for `point`, relative to the point's size."""
    system = np.vstack([points.T, np.ones(len(points))])
    _, residual = nnls(system, np.append(point, 1.0))
    return residual / (np.linalg.norm(point) + 1)


@pytest.mark.parametrize("strategy, expected", [
    ("auto", {0: 60, 1: 60, 2: 60, 3: 60}),
    ("minority", {0: 60, 1: 30, 2: 12, 3: 60}),
    ({3: 20, 2: 15}, {0: 60, 1: 30, 2: 15, 3: 20}),
])
def test_fit_resample_adds_what_the_strategy_asks_for_as_convex_combinations(strategy, expected):
    X, y = imbalanced_digits()
    X_res, y_res = GamoSampler(**TINY, sampling_strategy=strategy).fit_resample(X, y)
    assert dict(Counter(y_res)) == expected
    np.testing.assert_array_equal(X_res[:len(X)], X)           # the original rows, unchanged
    np.testing.assert_array_equal(y_res[:len(y)], y)
    for row, label in zip(X_res[len(X):], y_res[len(y):]):
        assert in_convex_hull(row, X[y == label]) < 1e-4


def test_the_same_random_state_gives_the_same_rows_and_predictions():
    X, y = imbalanced_digits()
    first = GamoSampler(**TINY).fit_resample(X, y)
    second = GamoSampler(**TINY).fit_resample(X, y)
    np.testing.assert_array_equal(first[0], second[0])
    one, two = GamoClassifier(**TINY).fit(X, y), clone(GamoClassifier(**TINY)).fit(X, y)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    np.testing.assert_array_equal(one.sample(3, 4), two.sample(3, 4))
    other = GamoClassifier(**{**TINY, "random_state": SEED + 1}).fit(X, y)
    assert not np.array_equal(one.predict_proba(X), other.predict_proba(X))


def test_string_labels_and_the_classes_generated():
    X, y = imbalanced_digits()
    names = np.array(["zero", "one", "two", "three"])[y]
    classifier = GamoClassifier(**TINY).fit(X, names)
    assert classifier.classes_.tolist() == ["one", "three", "two", "zero"]
    assert sorted(classifier.minority_classes_.tolist()) == ["one", "three", "two"]
    assert set(classifier.predict(X[:5])) <= set(names)
    assert classifier.predict_proba(X[:5]).sum(axis=1) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match="expected one of the classes GAMO oversamples"):
        classifier.sample("zero", 3)                            # the largest class has no IGU


@pytest.mark.parametrize("X, y, message", [
    (np.array([[0.0, np.nan]] * 4), [0, 0, 1, 1], "NaN"),
    (np.array([[0.0, np.inf]] * 4), [0, 0, 1, 1], "infinity"),
    (np.zeros(4), [0, 0, 1, 1], "Expected 2D array, got 1D array"),
    (np.zeros((4, 2)), [0, 0, 0, 0], "(?i)more than 1 class|at least 2 classes.* got 1 class"),
    (np.zeros((4, 2)), [0, 0, 1], "inconsistent numbers of samples"),
])
def test_bad_input_raises_value_error_saying_what_was_expected(X, y, message):
    for estimator in (GamoClassifier(**TINY), GamoSampler(**TINY)):
        with pytest.raises(ValueError, match=message):
            estimator.fit_resample(X, y) if hasattr(estimator, "fit_resample") else estimator.fit(X, y)


def test_a_class_with_a_single_row_trains_with_the_scripts_warning():
    """One rule for the scripts and the estimators (gamo.data.single_row_notes)."""
    X = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.warns(UserWarning, match="class 1 has a single training row"):
        classifier = GamoClassifier(**TINY).fit(X, [0, 0, 0, 0, 0, 1])
    assert classifier.sample(1, 2) == pytest.approx(np.repeat(X[5:], 2, axis=0))     # that row, twice


@pytest.mark.slow
def test_cross_validate_a_pipeline_on_imbalanced_digits():
    X, y = imbalanced_digits({0: 60, 1: 30, 2: 20, 3: 15})
    folds = StratifiedKFold(3, shuffle=True, random_state=SEED)
    for sampler in (GamoSampler(**TINY), SMOTE(random_state=SEED)):
        pipeline = Pipeline([("sampler", sampler), ("classifier", GamoClassifier(**TINY))])
        scores = cross_validate(pipeline, X, y, cv=folds, scoring="balanced_accuracy")
        assert scores["test_score"].shape == (3,) and np.all((0 <= scores["test_score"]) &
                                                              (scores["test_score"] <= 1))


@pytest.mark.slow
@pytest.mark.compiled_steps
def test_the_estimator_and_the_script_are_one_implementation(digits_csvs, tmp_path):
    """With pixel scaling and the same seed, GamoClassifier is dense_gamo_main.py's run."""
    train, test = digits_csvs
    dense.main(["--train", str(train), "--test", str(test), "--out-dir", str(tmp_path / "run"),
                          "--steps", "40", "--eval-every", "40", "--no-jit"])
    script = np.load(tmp_path / "run" / "Results.npz")
    X, y = read_labelled_csv(train)
    X_test, y_test = read_labelled_csv(test)
    classifier = GamoClassifier(steps=40, scaling="pixels", learning_rate=0.0002, random_state=0,
                                jit=False).fit(X, y)
    predicted = classifier.predict(X_test)
    _, _, by_size = relabel_by_size(y, y_test)                 # the script's class order
    np.testing.assert_array_equal(confusion_matrix(y_test, predicted, labels=by_size), script["confMat"])
    assert balanced_accuracy_score(y_test, predicted) == pytest.approx(float(script["acsa"]), abs=1e-12)
