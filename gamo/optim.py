"""The loss and the optimisers: one gradient update, and the Adam states (the
reference's Keras 2.2 arithmetic with its shared step counter, or Keras 3's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gamo.backend import COUNTER_DTYPE, in_place_adam, value_and_gradients, without_gradient_tracking
from gamo.state import state_variable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import TypeAlias

    from gamo.backend import LossValue, Tensor

# isort: split
import keras
from keras import ops


def mse(target: Tensor, output: Tensor) -> Tensor:
    """The mean squared error, over every element."""
    return ops.mean(ops.square(ops.subtract(target, output)))


def update(optimizer: AdamState, variables: Sequence[keras.Variable],
           loss_fn: Callable[[], LossValue]) -> LossValue:
    """One gradient step of `optimizer` on `variables` against loss_fn()."""
    loss, gradients = value_and_gradients(loss_fn, variables)
    with without_gradient_tracking():
        optimizer.apply(gradients, variables)
    return loss


def labels_of(model: keras.Model) -> Callable[[Tensor], Tensor]:
    """A function: inputs -> the model's predicted labels (inference mode)."""
    return lambda x: ops.argmax(model(x, training=False), axis=-1)


class FlatAdam:
    """keras.optimizers.Adam's arithmetic with both moments in one flat buffer.

    Each generator update touches ten small variables; Keras' Adam spends
    separate kernels and variable writes on every one of them. Here the
    gradients are concatenated, the moments updated in one pass and the steps
    split back: Keras' Adam's formulas in its order (equal up to float rounding).
    """

    def __init__(self, lr: float, beta1: float, beta2: float = 0.999, epsilon: float = 1e-7) -> None:
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon

    def build(self, variables: Sequence[keras.Variable]) -> None:
        """The state for these variables: the step counter and both moments, zero."""
        self.sizes = [int(np.prod(variable.shape)) for variable in variables]
        total = sum(self.sizes)
        self.iterations = state_variable((), "iterations", COUNTER_DTYPE)
        self.momentum = state_variable(total, "momentum")
        self.velocity = state_variable(total, "velocity")
        self.variables = [self.iterations, self.momentum, self.velocity]
        self.names = ["iterations", "m", "v"]

    def apply(self, gradients: Sequence[Tensor], variables: Sequence[keras.Variable]) -> None:
        """One Adam step of the variables (those of build, in order) down their gradients."""
        gradient = flat(gradients)
        step = ops.cast(self.iterations + 1, "float32")
        alpha = self.lr * ops.sqrt(1 - ops.power(self.beta2, step)) / (1 - ops.power(self.beta1, step))
        m = self.momentum + (gradient - self.momentum) * (1 - self.beta1)
        v = self.velocity + (ops.square(gradient) - self.velocity) * (1 - self.beta2)
        self.momentum.assign(m)
        self.velocity.assign(v)
        subtract_pieces(variables, m * alpha / (ops.sqrt(v) + self.epsilon), self.sizes)
        self.iterations.assign_add(1)


def flat(tensors: Iterable[Tensor]) -> Tensor:
    """The tensors flattened and concatenated, in order."""
    return ops.concatenate([ops.reshape(t, [-1]) for t in tensors], axis=0)


def subtract_pieces(variables: Sequence[keras.Variable], change: Tensor, sizes: Sequence[int]) -> None:
    """variable -= its piece of the flat `change`, for each variable in order."""
    for variable, piece in zip(variables, ops.split(change, np.cumsum(sizes)[:-1].tolist())):
        variable.assign_sub(ops.reshape(piece, variable.shape))


class ReferenceAdam:
    """One state (moments m, v) of Keras 2.2's Adam, counting on a given step counter.

        t = counter + 1;  lr_t = lr * (sqrt(1 - beta_2^t) / (1 - beta_1^t))
        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        w = w - lr_t m / (sqrt(v) + epsilon);  counter += 1

    in float32 throughout, constants included (1 - beta_2 is 1 - float32(0.999)),
    as Keras 2.2 computed it. `flat` keeps the moments of all the variables in
    one buffer, as FlatAdam does (the same arithmetic, fewer kernels).
    `iterations` counts this state's own updates. On PyTorch the same update runs
    through PyTorch's fused Adam kernel (gamo.backend_torch: equal to float32 rounding).
    """

    def __init__(self, lr: float, beta1: float, counter: keras.Variable, flat: bool = False,
                 beta2: float = 0.999, epsilon: float = 1e-7) -> None:
        self.lr, self.beta1, self.beta2 = (ops.convert_to_tensor(value, "float32")
                                           for value in (lr, beta1, beta2))
        self.epsilon, self.counter, self.flat = epsilon, counter, flat
        self.in_place = in_place_adam()      # PyTorch: this update on the tensors directly

    def build(self, variables: Sequence[keras.Variable]) -> None:
        """The moments for these variables (one flat pair if flat), zero, and the update count."""
        self.sizes = [int(np.prod(v.shape)) for v in variables]
        shapes = [(sum(self.sizes),)] if self.flat else [v.shape for v in variables]
        self.moments = [state_variable(shape, "m") for shape in shapes]
        self.velocities = [state_variable(shape, "v") for shape in shapes]
        self.iterations = state_variable((), "updates", COUNTER_DTYPE)
        self.variables = [self.iterations, *self.moments, *self.velocities]
        tracked = ["all"] if self.flat else [v.path for v in variables]   # each moment by its variable
        self.names = ["updates", *(f"m:{path}" for path in tracked), *(f"v:{path}" for path in tracked)]

    def apply(self, gradients: Sequence[Tensor], variables: Sequence[keras.Variable]) -> None:
        """One step of the variables (those of build, in order); the shared counter advances."""
        if self.in_place is not None:
            return self.in_place(self, gradients, variables)
        t = ops.cast(self.counter, "float32") + 1
        lr_t = self.lr * (ops.sqrt(1.0 - ops.power(self.beta2, t)) / (1.0 - ops.power(self.beta1, t)))
        if self.flat:
            steps = [self._moments_step(self.moments[0], self.velocities[0], flat(gradients), lr_t)]
            subtract_pieces(variables, steps[0], self.sizes)
        else:
            for m, v, g, variable in zip(self.moments, self.velocities, gradients, variables):
                variable.assign(variable - self._moments_step(m, v, g, lr_t))
        self.counter.assign_add(1)
        self.iterations.assign_add(1)

    def _moments_step(self, m: keras.Variable, v: keras.Variable, g: Tensor, lr_t: Tensor) -> Tensor:
        m_t = self.beta1 * m + (1.0 - self.beta1) * g
        v_t = self.beta2 * v + (1.0 - self.beta2) * ops.square(g)
        m.assign(m_t)
        v.assign(v_t)
        return lr_t * m_t / (ops.sqrt(v_t) + self.epsilon)


# One Adam state: Keras 3's Adam, FlatAdam or ReferenceAdam (what AdamStates.new gives).
AdamState: TypeAlias = keras.optimizers.Adam | FlatAdam | ReferenceAdam


class AdamStates:
    """The Adam states of one run: `new(variables)` gives a model's (or an
    update's) own state with fresh moments.

    shared_counter=True, the reference (QUIRK): Keras 2.2's arithmetic, and ONE
    step counter for every state of the run, advanced by each update of any of
    them, as the reference's single Adam object compiled into every model.
    shared_counter=False: each state counts its own steps, with Keras 3's Adam
    (FlatAdam for flat states).
    """

    def __init__(self, lr: float, beta1: float, shared_counter: bool = True) -> None:
        self.lr, self.beta1 = lr, beta1
        self.counter = state_variable((), "shared_iterations", COUNTER_DTYPE) if shared_counter else None

    def new(self, variables: Sequence[keras.Variable], flat: bool = False) -> AdamState:
        """A state for these variables, built: fresh moments (flat: in one buffer)."""
        optimizer: AdamState
        if self.counter is not None:
            optimizer = ReferenceAdam(self.lr, self.beta1, self.counter, flat=flat)
        elif flat:
            optimizer = FlatAdam(self.lr, self.beta1)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=self.lr, beta_1=self.beta1)
        optimizer.build(variables)
        return optimizer

    @property
    def variables(self) -> list[keras.Variable]:
        """What a checkpoint keeps besides the states themselves: the shared counter."""
        return [self.counter] if self.counter is not None else []

    def named_variables(self) -> dict[str, keras.Variable]:
        """{stable name: variable} of what `variables` holds."""
        return {"adam/shared_iterations": self.counter} if self.counter is not None else {}
