"""The thin seam to the backend Keras runs on (KERAS_BACKEND: tensorflow, the
default, jax or torch): what Keras 3 does not abstract.

Taking gradients and compiling a function that updates variables. Everything
else (networks, losses, the order of the updates, the Adam and BatchNorm
arithmetic) is keras.ops on keras.Variables, written once. On JAX a compiled
function is made pure: it runs inside a keras.StatelessScope that maps every
state variable to a value passed in, and the values it leaves there are
written back after the call.

Importing this module starts the backend (quietly, in this project's scripts).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.environment import import_backend_quietly, running_our_script

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

# A tensor of the backend Keras runs on: tf.Tensor, jax.Array or torch.Tensor
# (keras.ops take and give each backend's own type, and Keras has no common one).
Tensor = Any
# A loss, or named loss terms whose sum is the loss.
LossValue = Tensor | dict[str, Tensor]

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402
from keras import ops  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "jax":
    import jax
elif BACKEND == "torch":
    import torch

    CORE_THREADS = torch.get_num_threads()     # PyTorch's own choice: one per core
    # The steps' products are a few rows wide: one thread is 3 times faster than
    # PyTorch's pool of one per core here (bench/README.md). Set for this
    # project's scripts only, and only if OMP_NUM_THREADS does not say otherwise.
    if running_our_script() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """The estimators' thread policy while they train: on PyTorch one intra-op thread,
    as the scripts use (a step's products are a few rows wide, and PyTorch's pool of
    one thread per core slows ten-fold as soon as anything else shares the cores),
    unless OMP_NUM_THREADS says otherwise; the caller's setting is put back after.
    TensorFlow and JAX keep their own pools."""
    if BACKEND != "torch" or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    with torch_threads(1):
        yield


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to `count` while inside, the caller's after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def convolution_threads() -> int | None:
    """PyTorch's threads for a step or inference of convolutions over a batch of
    images: one per core while OpenMP's waiting threads sleep (OMP_WAIT_POLICY=PASSIVE,
    which the convolutional scripts set): measured 1.5 times as fast as one thread
    alone, 5-10% slower beside a busy process; with spinning waits (OpenMP's
    default) a second thread made them 2.2 times slower as soon as another process
    shared the cores (bench/README.md). None: as set (OMP_NUM_THREADS, spinning waits)."""
    if BACKEND != "torch" or "OMP_NUM_THREADS" in os.environ \
            or os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return None
    return CORE_THREADS


def thread_settings() -> str:
    """The intra-op threads a run uses, for its settings.json."""
    if BACKEND != "torch":
        return os.environ.get("TF_NUM_INTRAOP_THREADS", "all cores")
    wide = convolution_threads()
    return f"{torch.get_num_threads()}" + (f", {wide} for convolutions" if wide else "")


# PyTorch's eager convolutions over 1024 images outgrow the caches: inference runs
# 2-3 times faster on 128 images a call (bench/README.md).
TORCH_IMAGES_PER_CALL = 128


def value_and_gradients(loss_fn: Callable[[], LossValue],
                        variables: Sequence[keras.Variable]) -> tuple[LossValue, list[Tensor]]:
    """loss_fn() and its gradients with respect to `variables`. loss_fn may
    return a dict of terms instead: their sum (in order) is differentiated and
    the value is {"loss": sum, **terms}."""
    if BACKEND == "tensorflow":
        with tf.GradientTape() as tape:
            value = loss_fn()
            loss = total_loss(value)
        return value_with_total(value, loss), tape.gradient(loss, variables)
    if BACKEND == "torch":
        value = loss_fn()
        loss = total_loss(value)
        gradients = list(torch.autograd.grad(loss, [v.value for v in variables]))
        value = {name: term.detach() for name, term in value.items()} if isinstance(value, dict) else value
        return value_with_total(value, loss.detach()), gradients
    return _jax_value_and_gradients(loss_fn, variables)


def total_loss(value: LossValue) -> Tensor:
    """A loss, or the sum of a dict of loss terms."""
    if not isinstance(value, dict):
        return value
    terms = list(value.values())
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    return loss


def value_with_total(value: LossValue, loss: Tensor) -> LossValue:
    """The loss itself, or {"loss": the sum, **terms} for loss terms."""
    return {"loss": loss, **value} if isinstance(value, dict) else loss


def _jax_value_and_gradients(loss_fn: Callable[[], LossValue],
                             variables: Sequence[keras.Variable]) -> tuple[LossValue, list[Tensor]]:
    """Inside a pure step: loss_fn of the variables' current values, differentiated;
    what loss_fn assigns on the way (BatchNorm statistics) is kept in the step's scope."""
    if not _JAX_SCOPES:
        raise RuntimeError("on JAX, gradients are taken inside a compiled function (compile_function)")
    outer = _JAX_SCOPES[-1]
    keys = [id(v) for v in variables]

    def loss_of(values: list[Tensor]) -> tuple[Tensor, tuple[dict[int, Tensor], LossValue]]:
        inner = keras.StatelessScope()
        inner.state_mapping = {**outer.state_mapping, **dict(zip(keys, values))}
        with inner:
            value = loss_fn()
        assigned = {key: state for key, state in inner.state_mapping.items()
                    if key not in keys and state is not outer.state_mapping.get(key)}
        return total_loss(value), (assigned, value)

    (loss, (assigned, value)), gradients = jax.value_and_grad(loss_of, has_aux=True)(
        [outer.state_mapping[key] for key in keys])
    outer.state_mapping.update(assigned)
    return value_with_total(value, loss), gradients


# On PyTorch the steps apply the networks as plain functions of their variables and
# update them in place (gamo.backend_torch), unless GAMO_TORCH_KERAS_CALLS=1 asks for
# Keras' own calls (the path the fast one is tested against).
PLAIN_STEPS = BACKEND == "torch" and os.environ.get("GAMO_TORCH_KERAS_CALLS") != "1"


def step_network(model: keras.layers.Layer) -> Callable[..., Any]:
    """What a training step calls to apply `model` (inputs, training=...): on PyTorch a
    plain function of its variables (gamo.backend_torch.PlainNetwork), elsewhere the
    model itself, which TensorFlow and JAX trace once into a compiled step."""
    if not PLAIN_STEPS:
        return model
    from gamo.backend_torch import PlainNetwork
    return PlainNetwork(model)


def in_place_adam() -> Callable[..., None] | None:
    """ReferenceAdam's arithmetic applied to the tensors in place (PyTorch), or None."""
    if not PLAIN_STEPS:
        return None
    from gamo.backend_torch import reference_adam_step
    return reference_adam_step


def without_gradient_tracking() -> contextlib.AbstractContextManager[Any]:
    """Where variables are updated: PyTorch records no graph there."""
    return torch.no_grad() if BACKEND == "torch" else contextlib.nullcontext()


def compile_function(fn: Callable[..., Any], variables: Iterable[keras.Variable], jit: bool = True,
                     signature: list[tf.TensorSpec] | None = None, whole: bool = True,
                     convolutional: bool = False, row_by_row: bool = False) -> Callable[..., Any]:
    """fn(*arrays), compiled once for repeated calls; it may read and assign
    `variables`, which must hold every variable it touches.

    TensorFlow: a tf.function (traced once for `signature`, if given), under
    XLA if jit and `whole` (not whole: its xla_cluster parts are); JAX: fn
    made pure over the variables' values, under jax.jit if jit; PyTorch: fn run
    eagerly (faster than torch.compile here, bench/README.md) by plain_step.
    `convolutional`: fn runs convolutions over a batch of images (PyTorch gives it
    convolution_threads()); `row_by_row`: each row of fn's result depends on the
    same row of its arguments alone, as in inference (PyTorch feeds it at most
    TORCH_IMAGES_PER_CALL rows a call when convolutional).
    """
    if BACKEND == "tensorflow":
        return tf.function(fn, jit_compile=jit if whole else None, input_signature=signature,
                           reduce_retracing=signature is None)
    if BACKEND == "jax":
        return _JaxFunction(fn, variables, jit)
    if jit and os.environ.get("GAMO_TORCH_COMPILE"):      # measured slower (bench/README.md)
        return torch.compile(fn)
    if not PLAIN_STEPS:
        return fn
    step = plain_step(fn, convolution_threads() if convolutional else None)
    return in_row_chunks(step, TORCH_IMAGES_PER_CALL) if convolutional and row_by_row else step


def plain_step(fn: Callable[..., Any], threads: int | None = None) -> Callable[..., Any]:
    """fn as a PyTorch step: its NumPy arguments converted to tensors once, on the
    way in, call sites' BatchNorm statistics written together at its end, and run
    with `threads` intra-op threads (None: as set)."""
    from gamo.backend_torch import deferred_site_statistics

    def step(*args: Any) -> Any:
        with torch_threads(threads) if threads else contextlib.nullcontext(), deferred_site_statistics():
            return fn(*(ops.convert_to_tensor(a) if isinstance(a, np.ndarray) else a for a in args))
    return step


def in_row_chunks(fn: Callable[..., Tensor], rows: int) -> Callable[..., Tensor]:
    """fn(*arrays) on at most `rows` rows of each at a time, the results joined (PyTorch)."""
    def chunked(*arrays: Any) -> Tensor:
        total = len(arrays[0])
        if total <= rows:
            return fn(*arrays)
        return torch.cat([fn(*(a[start:start + rows] for a in arrays)) for start in range(0, total, rows)])
    return chunked


# On TensorFlow, XLA compiles the game's step for about 10 s more than a plain graph
# and then saves about 0.03 ms a batch per feature (1-3 ms at 30-64 features:
# bench/fit_speed.py; 23 ms at 784, where the plain graph takes 45 ms a batch and XLA
# 22: the demo's run). It pays from this many batch-features on.
XLA_PAYS_FROM_BATCH_FEATURES = 330_000


def jit_for_work(batches: int, num_features: int) -> bool:
    """Whether to compile a game's step with XLA for `batches` batches of rows of
    `num_features`: on TensorFlow when XLA pays for its compilation; always on JAX,
    whose eager steps are ten times slower; PyTorch runs eagerly."""
    if BACKEND == "tensorflow":
        return batches * num_features >= XLA_PAYS_FROM_BATCH_FEATURES
    return BACKEND == "jax"


def jit_as_asked(jit: bool | None, steps: int, num_features: int) -> bool:
    """--jit / --no-jit as given; neither: jit_for_work for a run of `steps` (2 per batch)."""
    return jit_for_work(-(-steps // 2), num_features) if jit is None else jit


def jit_for_convolutions(jit: bool) -> bool:
    """Whether to compile a function of convolutions with XLA: not on TensorFlow,
    whose graph-mode oneDNN kernels run the feature extractor's epoch 1.3-1.6
    times and its features 2.4 times as fast as XLA's convolutions (bench/README.md)."""
    return jit and BACKEND != "tensorflow"


def xla_cluster(fn: Callable[..., Any], jit: bool = True) -> Callable[..., Any]:
    """A part of a compiled TensorFlow function that XLA compiles as a whole
    (the rest of it has shapes that vary); elsewhere the whole function is one."""
    return tf.function(fn, jit_compile=jit) if BACKEND == "tensorflow" else fn


_JAX_SCOPES: list[keras.StatelessScope] = []     # the scopes of the pure functions being run, innermost last


class _JaxFunction:
    """fn over keras.Variables as a pure JAX function of their values."""

    def __init__(self, fn: Callable[..., Any], variables: Iterable[keras.Variable], jit: bool) -> None:
        self.fn, self.variables = fn, list(variables)
        self.pure = jax.jit(self._pure) if jit else self._pure

    def _pure(self, values: list[Tensor], *args: Tensor) -> tuple[Any, list[Tensor]]:
        scope = keras.StatelessScope()
        scope.state_mapping = {id(v): value for v, value in zip(self.variables, values)}
        _JAX_SCOPES.append(scope)
        try:
            with scope:
                outputs = self.fn(*args)
        finally:
            _JAX_SCOPES.pop()
        return outputs, [scope.state_mapping[id(v)] for v in self.variables]

    def __call__(self, *args: Tensor) -> Any:
        outputs, values = self.pure([v.value for v in self.variables], *args)
        for variable, value in zip(self.variables, values):
            variable.assign(value)
        return outputs


def route_rows(code: Tensor, labels: Tensor, units: Mapping[int, Callable[[Tensor], Tensor]],
               num_classes: int, width: int) -> Tensor:
    """Each row of `code` through the unit of its one-hot label (a zero row
    where there is none): TensorFlow partitions the rows by label, outside
    XLA since the parts' sizes vary; PyTorch, eager, takes each unit's rows by
    index; JAX runs every unit on every row and keeps each row's own, with
    static shapes that compile."""
    if BACKEND == "tensorflow":
        label_ids = tf.argmax(labels, axis=-1, output_type=tf.int32)
        rows = tf.dynamic_partition(tf.range(tf.shape(code)[0]), label_ids, num_classes)
        codes = tf.dynamic_partition(code, label_ids, num_classes)
        return tf.dynamic_stitch(rows, [units[k](codes[k]) if k in units else
                                        tf.zeros((tf.shape(codes[k])[0], width)) for k in range(num_classes)])
    if PLAIN_STEPS:
        from gamo.backend_torch import route_rows as route_rows_eagerly
        return route_rows_eagerly(code, labels, units, width)
    label_ids = ops.argmax(labels, axis=-1)
    routed = ops.zeros((ops.shape(code)[0], width))
    for k, unit in units.items():
        routed = routed + ops.where(ops.expand_dims(label_ids == k, -1), unit(code), 0.0)
    return routed


# Step counters: JAX has 64-bit integers only when asked (jax_enable_x64); 32 bits
# count 2^31 updates, far more than a run makes.
COUNTER_DTYPE = "int32" if BACKEND == "jax" and not jax.config.jax_enable_x64 else "int64"


def batch_spec(*shape: int) -> tf.TensorSpec | None:
    """A float32 batch of any size (TensorFlow): a step is traced once (several
    seconds) for the full batches and the shorter last one; XLA still compiles
    each size. JAX traces each size; None elsewhere."""
    return tf.TensorSpec((None, *shape), tf.float32) if BACKEND == "tensorflow" else None


def tensor_spec(*shape: int) -> tf.TensorSpec | None:
    """A float32 tensor of exactly this shape (TensorFlow); None elsewhere."""
    return tf.TensorSpec(shape, tf.float32) if BACKEND == "tensorflow" else None


def signature(*specs: tf.TensorSpec | None) -> list[tf.TensorSpec] | None:
    """An input signature for compile_function (TensorFlow only)."""
    return list(specs) if BACKEND == "tensorflow" else None


def inputs_and_targets_spec(model: keras.Model, num_classes: int) -> list[tf.TensorSpec] | None:
    """The signature of a step on (a batch of `model`'s inputs, one-hot targets)."""
    return signature(batch_spec(*model.input_shape[1:]), batch_spec(num_classes))


def as_tensors(*arrays: Any) -> list[Tensor]:
    """Arrays (or tensors) as float32 tensors of the backend."""
    if PLAIN_STEPS:      # no conversion of what already is one (Keras' costs more than a step's op)
        return [a if isinstance(a, torch.Tensor) and a.dtype == torch.float32
                else ops.convert_to_tensor(a, dtype="float32") for a in arrays]
    return [ops.convert_to_tensor(array, dtype="float32") for array in arrays]


def to_numpy(tensor: Tensor) -> np.ndarray:
    """A tensor of the backend as a NumPy array."""
    return ops.convert_to_numpy(tensor)


def numpy_losses(losses: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """A step's {name: loss tensor} as {name: NumPy value}, for the record."""
    return {name: to_numpy(value) for name, value in losses.items()}
