"""GAMO for scikit-learn and imbalanced-learn users: a classifier and an over-sampler.

    from gamo import GamoClassifier, GamoSampler

GamoClassifier plays GAMO's game (gamo.game's Gamo and compiled step, the
scripts' defaults) on any 2-D numeric X and any labels; its classifier M
predicts, and its generator draws new minority samples (`sample`).
GamoSampler is an imbalanced-learn over-sampler: `fit_resample` trains GAMO on
(X, y) and adds generated rows for every class its `sampling_strategy` asks
for, so it goes into an `imblearn.pipeline.Pipeline` like SMOTE.

Classes are ordered by size as in the scripts (the smallest first); every
class smaller than the largest gets an instance generation unit. Fitting seeds
Keras, NumPy and Python as the scripts do (so that a seed gives the script's
run) inside gamo.seeding.global_random_state_kept(): the caller's global random
generators are as they were once `fit` returns, as with scikit-learn's own
estimators.
"""

from __future__ import annotations

import itertools
import math
import warnings
from types import SimpleNamespace

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from gamo import nets
from gamo.backend import jit_for_work, training_threads
from gamo.data import Imbalance, batch_slices, one_hot, relabel_by_size
from gamo.game import Gamo, build_learner
from gamo.learner import ClassifierOnly
from gamo.reuse import trained_in_kept_learner
from gamo.run.loop import Pass, played
from gamo.run.record import latest_losses
from gamo.run.report import progress_bar
from gamo.seeding import global_random_state_kept, set_random_seed
from gamo.validation import (
    GAMO_PARAMETERS,
    TABULAR_EPOCHS,
    TABULAR_LEARNING_RATE,
    TABULAR_MIN_BATCHES,
    check_class_sizes,
    check_parameters,
    fitted_scaler,
    integer_seed,
    tabular_steps,
)

# isort: split
import keras

GAME_PARAMETERS = """\
    steps : int or "auto", default="auto"
        The reference's max_step: 2 per batch, so steps / 2 batches; each batch
        updates M twice (real and generated rows). "auto": a budget that grows
        with the data, max({min_batches} batches, {epochs} passes over X), chosen
        on the benchmark's development subset (README: "Tabular data"); the
        scripts' (and the reference's) budget is 50000.
    epochs : int or None, default=None
        If given, train for this many passes over X instead (steps = 2 x batches).
    batch_size : int, default=32
        Rows per batch (the reference's).
    latent_dim : int, default=100
        Size of the generator's noise input.
    learning_rate : float, default={learning_rate}
        Adam's learning rate for every player (the reference's: 0.0002; chosen
        with the budget on the benchmark's development subset).
    beta_1 : float, default=0.5
        Adam's beta_1 for every player.
    use_discriminator : bool, default=True
        False gives the paper's GAMO-without-D ablation."""
NUMERIC_PARAMETERS = """\
    standard_adam : bool, default=False
        Each Adam state counts its own steps (Keras 3's Adam) instead of the
        reference's one step counter shared by every model (Keras 2.2).
    standard_batchnorm : bool, default=False
        Keras 3's single moving average of the generator trunk's BatchNorm
        statistics instead of the reference's per-call-site averages.
    scaling : {"standard", "pixels"} or None, default="standard"
        "standard": zero mean and unit variance per feature (for tabular data);
        "pixels": the reference's (x - 127.5) / 127.5 for 0-255 pixels; None: as given.
    jit : bool or "auto", default="auto"
        Compile the step with XLA (slower to start, faster per batch). "auto":
        on TensorFlow, XLA where it pays (batches x features of 330000 or more:
        5000 batches at 64 features), a plain graph for shorter fits; JAX always
        compiles; PyTorch runs eagerly. Fits of the
        same shapes share their compiled step (gamo.reuse)."""


class GamoClassifier(ClassifierMixin, BaseEstimator):
    """GAMO's classifier M, trained in GAMO's three-player game.

    Defaults are the reference's where it has them.

    Parameters
    ----------
{game_parameters}
    classifier_only : bool, default=False
        True trains M alone on the real rows, one update per batch (the paper's
        baseline, the scripts' --classifier-only): steps / 2 updates.
{numeric_parameters}
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling and noise; the same int gives the same model.
    verbose : bool or int, default=False
        Show a progress bar while fitting, with the latest losses of M and D.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when X has string column names.
    class_order_ : ndarray of shape (n_classes,)
        The classes by size, the smallest first (the scripts' order): internal
        class i is ``classes_[class_order_[i]]``.
    minority_classes_ : ndarray
        The classes GAMO oversamples (every class smaller than the largest), the
        classes `sample` draws from; empty when M was trained alone.
    scaler_ : object
        The fitted scaling of X (``transform`` / ``inverse_transform``).
    classifier_ : keras.Model
        The trained classifier M (softmax outputs, internal class order).
    generator_ : object or None
        The trained generator: the shared trunk and one IGU per minority class
        (gamo.game.Players); None when M was trained alone.
    loss_curve_ : dict of str to ndarray of shape (n_batches,)
        Every player's loss at every batch of the fit, by name: ``M_real`` and
        ``M_fake`` (M on the real and on the generated rows), ``D_real`` and
        ``D_fake`` (D's), ``G_M_k`` and ``G_D_k`` (class k's generator against
        M and against D; k the internal class, ``classes_[class_order_[k]]``).
        scikit-learn's MLPClassifier has one loss per epoch under this name;
        here there are several players, and one value per batch.
    """

    def __init__(self, *, steps="auto", epochs=None, batch_size=32, latent_dim=nets.LATENT_DIM,
                 learning_rate=TABULAR_LEARNING_RATE, beta_1=0.5, use_discriminator=True,
                 classifier_only=False,
                 standard_adam=False, standard_batchnorm=False, scaling="standard", jit="auto",
                 random_state=None, verbose=False):
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.use_discriminator = use_discriminator
        self.classifier_only = classifier_only
        self.standard_adam = standard_adam
        self.standard_batchnorm = standard_batchnorm
        self.scaling = scaling
        self.jit = jit
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Play GAMO's game on (X, y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Numeric training rows.
        y : array-like of shape (n_samples,)
            Class labels; at least 2 classes, each with 2 or more rows.

        Returns
        -------
        GamoClassifier
            The fitted estimator.
        """
        check_parameters(self, GAMO_PARAMETERS)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        check_class_sizes(self.classes_, encoded)
        internal, _, order = relabel_by_size(encoded, encoded)     # 0 is the smallest class, as the scripts
        self.class_order_ = order                                   # internal class -> index in classes_
        self.scaler_ = fitted_scaler(self.scaling, X)
        x = np.asarray(self.scaler_.transform(X), dtype=np.float32)
        seed = integer_seed(self.random_state)
        with global_random_state_kept(), training_threads():
            learner, self.loss_curve_ = self._play(x, internal, seed)
        alone = isinstance(learner, ClassifierOnly)
        self.classifier_ = learner.classifier if alone else learner.players.classifier
        self.generator_ = None if alone else learner.players           # trunk, IGUs: for sample()
        self.minority_classes_ = self.classes_[order[list(self.generator_.igus)]] if not alone else \
            self.classes_[:0]
        self.sample_rng_ = np.random.default_rng([seed, 2])
        return self

    def _play(self, x, labels, seed):
        """The scripts' run without its files: seed, networks, one shuffle, the
        batches; returns the learner and its losses at every batch."""
        imbalance = Imbalance(np.bincount(labels))
        set_random_seed(seed)
        alone = self.classifier_only or imbalance.minority.size == 0
        if alone and not self.classifier_only:
            warnings.warn("every class is as large as the largest: nothing to oversample; "
                          "training the classifier alone", UserWarning, stacklevel=3)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(labels))        # one shuffle, as the scripts' training_rows
        x, labels = x[order], labels[order]
        slices = batch_slices(len(labels), self.batch_size)
        steps = 2 * self.epochs * len(slices) if self.epochs else tabular_steps(self.steps, len(slices))
        jit = jit_for_work(math.ceil(steps / 2), x.shape[1]) if self.jit == "auto" else self.jit
        settings = self._settings(alone, jit)
        learner = build_learner(settings, x.shape[1], imbalance)
        if isinstance(learner, Gamo):
            learner.players.set_class_points(x, labels)
        passes = itertools.repeat(Pass(x, one_hot(labels, imbalance.num_classes), slices))
        with trained_in_kept_learner(learner, settings,
                                     lambda: build_learner(settings, x.shape[1], imbalance)) as trainer:
            curve = self._losses(played(trainer, passes, 0, steps, rng), trainer.loss_names(), steps)
        return learner, curve

    def _losses(self, losses_per_batch, names, steps):
        """{loss name: its value at every batch}, with a progress bar if verbose."""
        progress = progress_bar(math.ceil(steps / 2)) if self.verbose else None
        curve = {name: [] for name in names}
        for losses in losses_per_batch:
            for name, value in losses.items():
                curve[name].append(value)
            if progress is not None:
                progress.set_postfix(latest_losses(losses), refresh=False)
                progress.update(1)
        if progress is not None:
            progress.close()
        return {name: np.asarray(values, np.float64) for name, values in curve.items()}

    def _settings(self, alone, jit):
        """The scripts' settings that build_learner reads, from this estimator's parameters."""
        return SimpleNamespace(
            lr=self.learning_rate, beta1=self.beta_1, standard_adam=self.standard_adam,
            standard_batchnorm=self.standard_batchnorm, is_baseline=alone, latent_dim=self.latent_dim,
            batch_size=self.batch_size, no_discriminator=not self.use_discriminator, jit=jit)

    def predict_proba(self, X):
        """Give M's softmax outputs, one column per class of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The class probabilities, columns in the order of ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        x = np.asarray(self.scaler_.transform(X), dtype=np.float32)
        outputs = np.concatenate([keras.ops.convert_to_numpy(self.classifier_(x[start:start + 4096],
                                                                               training=False))
                                  for start in range(0, len(x), 4096)]) if len(x) else \
            np.zeros((0, len(self.classes_)), np.float32)
        probabilities = np.empty_like(outputs)
        probabilities[:, self.class_order_] = outputs
        return probabilities

    def predict(self, X):
        """Predict the class of each row: M's most probable class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def sample(self, class_label, n):
        """Draw new samples of a minority class from the trained generator.

        The generator runs in inference mode; every sample is a convex
        combination of the class's training rows, in the units of X.

        Parameters
        ----------
        class_label : object
            One of ``minority_classes_``.
        n : int
            How many samples to draw (0 or more).

        Returns
        -------
        ndarray of shape (n, n_features)
            The new rows.
        """
        check_is_fitted(self)
        if class_label not in set(self.minority_classes_.tolist()):
            raise ValueError(f"class_label: expected one of the classes GAMO oversamples "
                             f"{self.minority_classes_.tolist()}, got {class_label!r}")
        n = int(n)
        if n < 0:
            raise ValueError(f"n: expected a number of samples >= 0, got {n}")
        internal = int(np.flatnonzero(self.classes_[self.class_order_] == class_label)[0])
        players = self.generator_
        noise = self.sample_rng_.standard_normal((n, players.latent_dim)).astype(np.float32)
        generated = players.generated(internal, noise, one_hot(np.full(n, internal), players.num_classes),
                                      training=False)
        return self.scaler_.inverse_transform(keras.ops.convert_to_numpy(generated).astype(np.float64))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class GamoSampler(BaseOverSampler):
    """Over-sample with GAMO: generated rows for the classes that need them.

    `fit_resample` trains GamoClassifier's game on (X, y), then adds generated
    rows of every class that `sampling_strategy` asks for. Only classes smaller
    than the largest can be generated. The trained game is kept as
    `estimator_`.

    Parameters
    ----------
    sampling_strategy : str, float, dict or callable, default="auto"
        What it means for imbalanced-learn's samplers: "auto", "minority",
        "not majority", "all", a float for binary problems, a dict or a callable.
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling and noise; the same int gives the same rows.
{game_parameters}
{numeric_parameters}
    verbose : bool or int, default=False
        Show a progress bar while fitting, with the latest losses of M and D.

    Attributes
    ----------
    sampling_strategy_ : dict
        Class label -> number of rows to generate (imbalanced-learn's).
    estimator_ : GamoClassifier
        The game trained on (X, y): its generator made the new rows; its
        ``loss_curve_`` holds the players' losses.
    n_features_in_ : int
        Number of features seen during fit_resample.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit_resample, when X has string column names.
    """

    def __init__(self, *, sampling_strategy="auto", random_state=None, steps="auto", epochs=None,
                 batch_size=32, latent_dim=nets.LATENT_DIM, learning_rate=TABULAR_LEARNING_RATE, beta_1=0.5,
                 use_discriminator=True, standard_adam=False, standard_batchnorm=False, scaling="standard",
                 jit="auto", verbose=False):
        super().__init__(sampling_strategy=sampling_strategy)
        self.random_state = random_state
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.latent_dim = latent_dim
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.use_discriminator = use_discriminator
        self.standard_adam = standard_adam
        self.standard_batchnorm = standard_batchnorm
        self.scaling = scaling
        self.jit = jit
        self.verbose = verbose

    def _fit_resample(self, X, y):
        dense = X.toarray() if sparse.issparse(X) else X
        params = {name: getattr(self, name) for name in GAMO_PARAMETERS if name != "classifier_only"}
        check_parameters(self, params)
        self.estimator_ = GamoClassifier(**params).fit(dense, y)
        new_rows, new_labels = [], []
        for class_label, count in self.sampling_strategy_.items():
            if count > 0:
                new_rows.append(self.estimator_.sample(class_label, count).astype(X.dtype))
                new_labels.append(np.full(count, class_label, dtype=y.dtype))
        if not new_rows:
            return X, y
        if sparse.issparse(X):
            resampled = sparse.vstack([X, *map(sparse.csr_matrix, new_rows)], format=X.format)
        else:
            resampled = np.vstack([X, *new_rows])
        return resampled, np.concatenate([y, *new_labels])




# The game's parameters are the same for both estimators: one text in both docstrings.
for _estimator in (GamoClassifier, GamoSampler):
    _estimator.__doc__ = (_estimator.__doc__ or "").replace("{game_parameters}", GAME_PARAMETERS.format(
        min_batches=TABULAR_MIN_BATCHES, epochs=TABULAR_EPOCHS, learning_rate=TABULAR_LEARNING_RATE)).replace(
        "{numeric_parameters}", NUMERIC_PARAMETERS)
