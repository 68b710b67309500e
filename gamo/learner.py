"""What the training loop needs of whatever learns, and the simplest learner:
the paper's baseline, the classifier alone."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.backend import (
    compile_function,
    inputs_and_targets_spec,
    jit_for_convolutions,
    step_network,
    to_numpy,
)
from gamo.optim import AdamStates, mse, update
from gamo.state import merged_names, named_model_variables, named_optimizer_variables

# isort: split
import keras

if TYPE_CHECKING:
    from collections.abc import Callable

    from gamo.backend import Tensor


class Learner(abc.ABC):
    """What the training loop and Run need of whatever learns."""

    num_classes: int

    compiled_step: Callable[..., dict[str, Tensor]]

    def step_inputs(self, x: np.ndarray, y_onehot: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The arrays compiled_step takes for one batch: the batch, and any random
        draws from `rng` (gamo.group stacks them over several runs)."""
        return (x, y_onehot)

    def train_on_batch(self, x: np.ndarray, y_onehot: np.ndarray,
                       rng: np.random.Generator) -> dict[str, Tensor]:
        """One batch's updates; random draws come from `rng`. Returns the
        batch's {loss name: value} (tensors) for the names of loss_names()."""
        return {**self.pending_losses(), **self.compiled_step(*self.step_inputs(x, y_onehot, rng))}

    def pending_losses(self) -> dict[str, Tensor]:
        """Losses of work done between batches, reported with the next batch (and cleared)."""
        return {}

    def joined(self, group: Any) -> None:
        """Called when the learner joins a gamo.group.LearnerGroup, which trains its
        compiled step from then on (a learner with work between batches syncs with it)."""
        return None

    @abc.abstractmethod
    def loss_names(self) -> tuple[str, ...]:
        """The names of the losses train_on_batch returns, in the record's order."""

    @abc.abstractmethod
    def predict_batch(self, x: np.ndarray) -> Tensor:
        """The classifier's labels for a batch (a compiled function)."""

    @abc.abstractmethod
    def classifier_updates(self) -> int:
        """How many updates the classifier's optimiser has applied."""

    @abc.abstractmethod
    def models(self) -> dict[str, keras.Model]:
        """Name prefix -> model, as the reference saves them."""

    @abc.abstractmethod
    def named_state(self) -> dict[str, keras.Variable]:
        """{stable name: variable} of everything a checkpoint keeps: weights,
        optimiser and other states; the names are the checkpoint's keys."""

    def state_variables(self) -> list[keras.Variable]:
        """Every variable of named_state, in its order."""
        return list(self.named_state().values())

    def predict_labels(self, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """The classifier's labels for all of `x`, `chunk` rows at a time."""
        return np.concatenate([to_numpy(self.predict_batch(x[start:start + chunk]))
                               for start in range(0, len(x), chunk)])


class ClassifierOnly(Learner):
    """The paper's baseline: the classifier alone, one update per batch on the real
    batch (GAMO's classifier without the game). With an `extractor` (the
    convolutional case) F and M learn together, F feeding M."""

    def __init__(self, classifier: keras.Model, extractor: keras.Model | None = None,
                 adam: AdamStates | None = None, jit: bool = True) -> None:
        self.classifier, self.extractor = classifier, extractor
        self.num_classes = classifier.output.shape[-1]
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.networks = [m for m in (extractor, classifier) if m is not None]
        self.step_extractor = step_network(extractor) if extractor is not None else None
        self.step_classifier = step_network(classifier)
        self.trainable = [v for m in self.networks for v in m.trainable_variables]
        self.opt_classifier = self.adam.new(self.trainable)
        jit = jit if extractor is None else jit_for_convolutions(jit)
        convolutional = extractor is not None
        self.compiled_step = compile_function(self.step, self.state_variables(), jit, signature=(
            inputs_and_targets_spec(extractor or classifier, self.num_classes)), convolutional=convolutional)
        self.compiled_predict = compile_function(
            lambda x: keras.ops.argmax(self.outputs(x, training=False), axis=-1),
            [v for m in self.networks for v in m.variables], jit,
            convolutional=convolutional, row_by_row=True)

    def outputs(self, x: Tensor, training: bool) -> Tensor:
        """M's class probabilities (through F first, if there is one)."""
        features = self.step_extractor(x, training=training) if self.step_extractor is not None else x
        return self.step_classifier(features, training=training)

    def step(self, x: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """One update of M (and F) on a batch; its loss."""
        return {"M_real": update(self.opt_classifier, self.trainable,
                                 lambda: mse(targets, self.outputs(x, training=True)))}

    def loss_names(self) -> tuple[str, ...]:
        """M's loss on the real batch."""
        return ("M_real",)

    def predict_batch(self, x: np.ndarray) -> Tensor:
        """The classifier's labels for a batch."""
        return self.compiled_predict(x)

    def classifier_updates(self) -> int:
        """How many updates M's Adam state has applied."""
        return int(self.opt_classifier.iterations.numpy())

    def models(self) -> dict[str, keras.Model]:
        """F (if any) and M, by the reference's names."""
        return {**({"Conv": self.extractor} if self.extractor is not None else {}), "MLP": self.classifier}

    def named_state(self) -> dict[str, keras.Variable]:
        """The models' weights and the Adam states, by stable name."""
        return merged_names(
            *(named_model_variables(name, model) for name, model in self.models().items()),
            named_optimizer_variables("adam_M", self.opt_classifier), self.adam.named_variables())
