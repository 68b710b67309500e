"""Convolutional GAMO: oversampling in a feature space learned end to end.

Each round of the original's outer loop:
  (a) one epoch of F+M over the training set (batch 32, reshuffled every epoch)
      that updates the feature extractor F only (M stays fixed);
  (b) the features of the whole training set, computed with the updated F;
  (c) one pass of the dense game over the batches on those features, with the
      IGUs combining them (gamo.game's compiled step, unchanged).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from gamo.backend import (
    compile_function,
    inputs_and_targets_spec,
    jit_for_convolutions,
    step_network,
    to_numpy,
)
from gamo.data import batch_slices
from gamo.learner import Learner
from gamo.metrics import scores
from gamo.optim import mse, update
from gamo.run.loop import Pass
from gamo.state import merged_names, named_model_variables, named_optimizer_variables

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import keras

    from gamo.backend import Tensor
    from gamo.game import Gamo
    from gamo.group import LearnerGroup
    from gamo.metrics import Scores


class FeatureGamo(Learner):
    """GAMO in the feature space of an extractor F that learns through the fixed
    classifier M (the reference's F+M model), round after round."""

    def __init__(self, extractor: keras.Model, gamo: Gamo, batch_size: int, jit: bool = True) -> None:
        self.extractor, self.gamo, self.batch_size = extractor, gamo, batch_size
        self.num_classes = gamo.num_classes
        classifier, step_extractor = gamo.players.M, step_network(extractor)
        trained = extractor.trainable_variables
        # The reference compiles F+M with the same Adam object as the game's models:
        # with its shared step counter (the default), F+M's updates advance it too.
        self.optimizer = gamo.adam.new(trained)
        self.compiled_feature_step = compile_function(
            lambda images, targets: update(self.optimizer, trained, lambda: mse(
                targets, classifier(step_extractor(images, training=True), training=False))),
            self.state_variables(), jit_for_convolutions(jit),
            signature=inputs_and_targets_spec(extractor, self.num_classes), convolutional=True)
        self.compiled_features = compile_function(lambda images: step_extractor(images, training=False),
                                                  extractor.variables, jit_for_convolutions(jit),
                                                  convolutional=True, row_by_row=True)
        self.train_features: np.ndarray | None = None
        # F+M's losses of the last epoch, reported with the next batch
        self.epoch_losses: list[Tensor] = []
        self.group: LearnerGroup | None = None      # the runs trained with this one (gamo.group)

    @property
    def compiled_step(self) -> Callable[..., dict[str, Tensor]]:     # type: ignore[override]
        """The game's step on a batch of features."""
        return self.gamo.compiled_step

    def epoch(self, images: np.ndarray, onehot: np.ndarray, rng: np.random.Generator) -> None:
        """(a) One F+M pass in a fresh random order, as Keras' fit(shuffle=True) does."""
        order = rng.permutation(len(images))
        for rows in batch_slices(len(images), self.batch_size):
            chosen = order[rows]
            self.epoch_losses.append(self.compiled_feature_step(images[chosen], onehot[chosen]))

    def features(self, images: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """F's features of the images (inference mode), `chunk` images at a time."""
        return np.concatenate([to_numpy(self.compiled_features(images[start:start + chunk]))
                               for start in range(0, len(images), chunk)])

    def rounds(self, images: np.ndarray, labels: np.ndarray, onehot: np.ndarray, slices: list[slice],
               rng: np.random.Generator, resumed_mid_pass: bool = False) -> Iterator[Pass]:
        """Passes for the training loop: each round's F+M epoch (skipped by a run
        resumed inside a pass, whose F is already trained), (b) the training
        features with the new F for the IGUs, then (c) the game's pass on them."""
        for round_number in itertools.count():
            if self.group is not None:      # F+M's updates advance the game's shared Adam counter
                self.group.sync()
            if round_number > 0 or not resumed_mid_pass:
                self.epoch(images, onehot, rng)
            self.train_features = self.features(images)
            self.gamo.players.set_class_points(self.train_features, labels)
            if self.group is not None:      # the counter and the IGUs' points, changed
                self.group.reload()
            yield Pass(self.train_features, onehot, slices)

    def evaluation(self, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                   test_labels: np.ndarray) -> Callable[[], tuple[Scores, Scores]]:
        """F does not change during a pass: the round's training features are current."""
        def evaluate() -> tuple[Scores, Scores]:
            if self.train_features is None:       # resumed at the very end: no pass played
                self.train_features = self.features(train_images)
            c = self.num_classes
            return (scores(train_labels, self.gamo.predict_labels(self.train_features), c),
                    scores(test_labels, self.gamo.predict_labels(self.features(test_images)), c))
        return evaluate

    # ------------------------------------------------------------ the Learner interface
    def step_inputs(self, x: np.ndarray, y_onehot: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The game's batch of features and its draws."""
        return self.gamo.step_inputs(x, y_onehot, rng)

    def pending_losses(self) -> dict[str, Tensor]:
        """The first batch of a pass also reports its epoch's F+M losses."""
        if not self.epoch_losses:
            return {}
        losses = {"FM": np.array([to_numpy(loss) for loss in self.epoch_losses])}
        self.epoch_losses = []
        return losses

    def joined(self, group: LearnerGroup) -> None:
        """Sync with the group around each round's F+M epoch (see rounds)."""
        self.group = group

    def loss_names(self) -> tuple[str, ...]:
        """F+M's loss, then the game's."""
        return ("FM", *self.gamo.loss_names())

    def predict_batch(self, images: np.ndarray) -> Tensor:
        """M's labels for a batch of images, through F."""
        return self.gamo.predict_batch(self.compiled_features(images))

    def classifier_updates(self) -> int:
        """How many updates M's Adam state has applied."""
        return self.gamo.classifier_updates()

    def models(self) -> dict[str, keras.Model]:
        """F and the game's models, by the reference's names."""
        return {"Conv": self.extractor, **self.gamo.models()}

    def named_state(self) -> dict[str, keras.Variable]:
        """F's weights and Adam state, and the game's, by stable name."""
        return merged_names(
            named_model_variables("Conv", self.extractor),
            named_optimizer_variables("adam_Conv", self.optimizer), self.gamo.named_state())
