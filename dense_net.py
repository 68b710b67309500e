"""Networks of GAMO on feature vectors: classifier M, discriminator D, the
generator trunk (the paper's cTMU) and one instance generation unit (IGU) per
minority class. Sizes are arguments; the defaults are the reference's.

Also the Keras primitives every script trains with: the loss, one gradient
update, the Adam states (the reference's Keras 2.2 arithmetic with its shared
step counter, or Keras 3's), the trunk's BatchNormalization with the
reference's per-call-site moving statistics, and the thin seam to the backend
Keras runs on (KERAS_BACKEND: tensorflow, the default, jax or torch).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import random
import sys

import numpy as np

from dense_suppli import import_backend_quietly, import_tensorflow_quietly, running_our_script

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402
from keras.src.backend.common import global_state as keras_global_state  # noqa: E402

# ====================================================================== the backend seam
# What Keras 3 does not abstract: taking gradients and compiling a function
# that updates variables. Everything else (networks, losses, the order of the
# updates, the Adam and BatchNorm arithmetic) is keras.ops on keras.Variables,
# written once. On JAX a compiled function is made pure: it runs inside a
# keras.StatelessScope that maps every state variable to a value passed in,
# and the values it leaves there are written back after the call.

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "jax":
    import jax
elif BACKEND == "torch":
    import torch

    # The steps' products are a few rows wide: one thread is 3 times faster than
    # PyTorch's pool of one per core here (bench/README.md). Set for this
    # project's scripts only, and only if OMP_NUM_THREADS does not say otherwise.
    if running_our_script() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def value_and_gradients(loss_fn, variables):
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


def total_loss(value):
    """A loss, or the sum of a dict of loss terms."""
    if not isinstance(value, dict):
        return value
    terms = list(value.values())
    loss = terms[0]
    for term in terms[1:]:
        loss = loss + term
    return loss


def value_with_total(value, loss):
    return {"loss": loss, **value} if isinstance(value, dict) else loss


def _jax_value_and_gradients(loss_fn, variables):
    """Inside a pure step: loss_fn of the variables' current values, differentiated;
    what loss_fn assigns on the way (BatchNorm statistics) is kept in the step's scope."""
    if not _JAX_SCOPES:
        raise RuntimeError("on JAX, gradients are taken inside a compiled function (compile_function)")
    outer = _JAX_SCOPES[-1]
    keys = [id(v) for v in variables]

    def loss_of(values):
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


def set_random_seed(seed):
    """keras.utils.set_random_seed: Python's, NumPy's and Keras' seeds. It also
    seeds TensorFlow wherever TensorFlow is installed, whatever the backend;
    imported here first, TensorFlow starts without its console lines."""
    if BACKEND != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
        import_tensorflow_quietly()
    keras.utils.set_random_seed(seed)


# Keras' global random state (keras.utils.set_random_seed's; Keras has no public getter).
KERAS_SEED, KERAS_SEED_GENERATOR = "global_random_seed", "global_seed_generator"


@contextlib.contextmanager
def global_random_state_kept():
    """Inside, code may reseed the process' global random generators (Python's,
    NumPy's, Keras', TensorFlow's, PyTorch's: set_random_seed does); on leaving,
    the caller's states are put back, as a scikit-learn estimator leaves them."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    keras_seed = keras_global_state.get_global_attribute(KERAS_SEED)
    keras_generator = keras_global_state.get_global_attribute(KERAS_SEED_GENERATOR)
    tensorflow_seed = _tensorflow_seed_state()
    torch_state = torch.get_rng_state() if BACKEND == "torch" else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        keras_global_state.set_global_attribute(KERAS_SEED, keras_seed)
        keras_global_state.set_global_attribute(KERAS_SEED_GENERATOR, keras_generator)
        if tensorflow_seed is not None:
            _restore_tensorflow_seed(*tensorflow_seed)
        if torch_state is not None:
            torch.set_rng_state(torch_state)


def _tensorflow_context():
    from tensorflow.python.eager import context

    return context.context()


def _tensorflow_seed_state():
    """TensorFlow's global seed and its op-seed sequence (tf.random.set_seed's state;
    TensorFlow has no public getter), if TensorFlow is loaded."""
    if "tensorflow" not in sys.modules:
        return None
    context = _tensorflow_context()
    return context._seed, copy.deepcopy(getattr(context, "_rng", None))


def _restore_tensorflow_seed(seed, sequence):
    context = _tensorflow_context()
    context._seed = seed
    if sequence is not None:
        context._rng = sequence
    elif hasattr(context, "_rng"):       # no seed had been set: none is
        del context._rng


def without_gradient_tracking():
    """Where variables are updated: PyTorch records no graph there."""
    return torch.no_grad() if BACKEND == "torch" else contextlib.nullcontext()


def compile_function(fn, variables, jit=True, signature=None, whole=True):
    """fn(*arrays), compiled once for repeated calls; it may read and assign
    `variables`, which must hold every variable it touches.

    TensorFlow: a tf.function (traced once for `signature`, if given), under
    XLA if jit and `whole` (not whole: its xla_cluster parts are); JAX: fn
    made pure over the variables' values, under jax.jit if jit; PyTorch: fn
    itself (eager), which measured faster than torch.compile here (bench/README.md).
    """
    if BACKEND == "tensorflow":
        return tf.function(fn, jit_compile=jit if whole else None, input_signature=signature,
                           reduce_retracing=signature is None)
    if BACKEND == "jax":
        return _JaxFunction(fn, variables, jit)
    if jit and os.environ.get("GAMO_TORCH_COMPILE"):      # measured slower (bench/README.md)
        return torch.compile(fn)
    return fn


def jit_for_convolutions(jit):
    """Whether to compile a function of convolutions with XLA: not on TensorFlow,
    whose graph-mode oneDNN kernels run the feature extractor's epoch 1.3-1.6
    times and its features 2.4 times as fast as XLA's convolutions (bench/README.md)."""
    return jit and BACKEND != "tensorflow"


def xla_cluster(fn, jit=True):
    """A part of a compiled TensorFlow function that XLA compiles as a whole
    (the rest of it has shapes that vary); elsewhere the whole function is one."""
    return tf.function(fn, jit_compile=jit) if BACKEND == "tensorflow" else fn


_JAX_SCOPES = []     # the scopes of the pure functions being run, innermost last


class _JaxFunction:
    """fn over keras.Variables as a pure JAX function of their values."""

    def __init__(self, fn, variables, jit):
        self.fn, self.variables = fn, list(variables)
        self.pure = jax.jit(self._pure) if jit else self._pure

    def _pure(self, values, *args):
        scope = keras.StatelessScope()
        scope.state_mapping = {id(v): value for v, value in zip(self.variables, values)}
        _JAX_SCOPES.append(scope)
        try:
            with scope:
                outputs = self.fn(*args)
        finally:
            _JAX_SCOPES.pop()
        return outputs, [scope.state_mapping[id(v)] for v in self.variables]

    def __call__(self, *args):
        outputs, values = self.pure([v.value for v in self.variables], *args)
        for variable, value in zip(self.variables, values):
            variable.assign(value)
        return outputs


def route_rows(code, labels, units, num_classes, width):
    """Each row of `code` through the unit of its one-hot label (a zero row
    where there is none): TensorFlow partitions the rows by label, outside
    XLA since the parts' sizes vary; the other backends run every unit on every
    row and keep each row's own, with static shapes that compile."""
    if BACKEND == "tensorflow":
        label_ids = tf.argmax(labels, axis=-1, output_type=tf.int32)
        rows = tf.dynamic_partition(tf.range(tf.shape(code)[0]), label_ids, num_classes)
        codes = tf.dynamic_partition(code, label_ids, num_classes)
        return tf.dynamic_stitch(rows, [units[k](codes[k]) if k in units else
                                        tf.zeros((tf.shape(codes[k])[0], width)) for k in range(num_classes)])
    label_ids = ops.argmax(labels, axis=-1)
    routed = ops.zeros((ops.shape(code)[0], width))
    for k, unit in units.items():
        routed = routed + ops.where(ops.expand_dims(label_ids == k, -1), unit(code), 0.0)
    return routed


# ====================================================================== networks

LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9
HIDDEN_WIDTHS = (256, 128)        # M and D
TRUNK_WIDTHS = (256, 64)          # generator trunk; the last is the code size
LATENT_DIM = 100


def _leaky_mlp(inputs, widths, name):
    hidden = inputs
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, name=f"{name}_dense_{index}")(hidden)
        hidden = layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky_{index}")(hidden)
    return hidden


def build_classifier(num_features, num_classes, widths=HIDDEN_WIDTHS, name="classifier"):
    """M: features -> Dense/LeakyReLU(0.1) stack -> softmax over the classes."""
    features = keras.Input((num_features,), name="features")
    hidden = _leaky_mlp(features, widths, name)
    probabilities = layers.Dense(num_classes, activation="softmax", name=f"{name}_out")(hidden)
    return keras.Model(features, probabilities, name=name)


def build_discriminator(num_features, num_classes, widths=HIDDEN_WIDTHS, name="discriminator"):
    """D: [features, one-hot label] -> Dense/LeakyReLU(0.1) stack -> P(real)."""
    features = keras.Input((num_features,), name="features")
    label = keras.Input((num_classes,), name="label")
    joined = layers.Concatenate(name=f"{name}_concat")([features, label])
    hidden = _leaky_mlp(joined, widths, name)
    real = layers.Dense(1, activation="sigmoid", name=f"{name}_out")(hidden)
    return keras.Model([features, label], real, name=name)


def build_generator_trunk(latent_dim, num_classes, widths=TRUNK_WIDTHS, name="generator"):
    """The conditional transient mapping unit: [noise, label] -> a code of widths[-1]."""
    noise = keras.Input((latent_dim,), name="noise")
    label = keras.Input((num_classes,), name="label")
    hidden = layers.Concatenate(name=f"{name}_concat")([noise, label])
    for index, width in enumerate(widths):
        hidden = layers.Dense(width, activation="relu", name=f"{name}_dense_{index}")(hidden)
        hidden = CallSiteBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_{index}")(hidden)
    return keras.Model([noise, label], hidden, name=name)


@keras.saving.register_keras_serializable(package="gamo")
class LeakyReLU(layers.LeakyReLU):
    """keras.layers.LeakyReLU, its gradient taken from its output: the same values
    (with a positive slope the output is positive exactly where the input is).

    On TensorFlow with oneDNN, grappler's remapper fuses Conv2D + BiasAdd +
    LeakyRelu into one kernel; TensorFlow's own gradient of LeakyRelu reads the
    BiasAdd's output, which the fusion removes, so the remapper gives up on the
    whole graph and prints "remapper failed ... missing node ... BiasAdd".
    Reading the output instead keeps the fusion (the feature extractor F's step)."""

    def call(self, inputs):
        if BACKEND != "tensorflow":
            return super().call(inputs)
        return _leaky_relu_with_gradient_from_output(inputs, self.negative_slope)


def _leaky_relu_with_gradient_from_output(inputs, slope):
    @tf.custom_gradient
    def leaky_relu(x):
        y = tf.nn.leaky_relu(x, alpha=slope)
        # LeakyReluGrad's arithmetic: the gradient where positive, else gradient * slope.
        return y, lambda dy: tf.where(y > 0, dy, dy * tf.cast(slope, dy.dtype))
    return leaky_relu(inputs)


@keras.saving.register_keras_serializable(package="gamo")
class ConvexCombination(layers.Layer):
    """Weights (batch, n) times the n stored points: convex when the weights are."""

    def __init__(self, num_points, num_features, **kwargs):
        super().__init__(**kwargs)
        self.num_points = num_points
        self.num_features = num_features

    def build(self, input_shape):
        # The class's points are data, not parameters: a non-trainable weight,
        # so they are saved with the model and can be replaced (new features).
        self.points = self.add_weight(shape=(self.num_points, self.num_features),
                                      initializer="zeros", trainable=False, name="points")

    def call(self, weights):
        return ops.matmul(weights, ops.cast(self.points, weights.dtype))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    def get_config(self):
        return {**super().get_config(), "num_points": self.num_points,
                "num_features": self.num_features}


CONVEX_WEIGHTS = "convex_weights"
CONVEX_COMBINATION = "convex_combination"


def build_igu(code_dim, num_points, num_features, name="igu"):
    """IGU_k: code -> softmax weights over class k's points -> their weighted sum."""
    code = keras.Input((code_dim,), name="code")
    weights = layers.Dense(num_points, activation="softmax", name=CONVEX_WEIGHTS)(code)
    sample = ConvexCombination(num_points, num_features, name=CONVEX_COMBINATION)(weights)
    return keras.Model(code, sample, name=name)


def set_class_points(igu, points):
    """Give an IGU the current points of its class (pixels, or features that change)."""
    igu.get_layer(CONVEX_COMBINATION).points.assign(points)


def class_points(igu):
    return igu.get_layer(CONVEX_COMBINATION).points


def convex_weights_model(igu):
    """The part of an IGU that gives the convex weights of its class's points."""
    return keras.Model(igu.input, igu.get_layer(CONVEX_WEIGHTS).output)


# ====================================================================== BatchNorm

@keras.saving.register_keras_serializable(package="gamo")
class CallSiteBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, whose moving statistics a call site can take over.

    Outside `statistics_of_call_site`, this is Keras 3's layer: one moving
    average over every training call. Inside it, a training call normalises
    with the batch mean and biased batch variance, as before, and hands both to
    the site, which writes the moving statistics (see CallSiteStatistics).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.site = None

    def call(self, inputs, training=None, mask=None):
        if not training or self.site is None or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        mean, variance = ops.moments(inputs, axes=list(range(len(inputs.shape) - 1)))
        self.site.record(self, mean, variance, ops.cast(ops.shape(inputs)[0], inputs.dtype))
        return ops.batch_normalization(inputs, mean, variance, axis=-1, offset=self.beta, scale=self.gamma,
                                       epsilon=self.epsilon)


class CallSiteStatistics:
    """The moving statistics of ONE call site of a model's BatchNormalization
    layers, as Keras 2.2 on TensorFlow 1 keeps them (QUIRK of the reference).

    There every model that calls the trunk (each composite G+IGU_k+M and
    G+IGU_k+D) makes its own moving-average update with zero-debiasing: its own
    accumulator A and count t per layer and statistic; at each of its training
    calls A <- A - (A - value)(1 - momentum), t <- t + 1, and the layer's moving
    statistic is SET to A / (1 - momentum^t) (written as
    moving - (moving - A / (1 - momentum^t)), TensorFlow 1's arithmetic).
    The variance averaged is the batch variance times n / (n - 1 - epsilon).
    """

    def __init__(self, model, name):
        self.layers = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
        self.accumulators = {layer.name: state_variable((2, layer.moving_mean.shape[0]),
                                                        f"{name}_{layer.name}_biased")
                             for layer in self.layers}
        self.counts = {layer.name: state_variable((), f"{name}_{layer.name}_step") for layer in self.layers}

    @property
    def variables(self):
        return [v for layer in self.layers for v in (self.accumulators[layer.name], self.counts[layer.name])]

    def record(self, layer, mean, variance, rows):
        """Average this call's batch statistics into the site's and write them into the layer."""
        decay = ops.convert_to_tensor(1.0 - layer.momentum, "float32")
        corrected = variance * (rows / (rows - (1.0 + layer.epsilon)))
        accumulator, count = self.accumulators[layer.name], self.counts[layer.name]
        biased = accumulator - (accumulator - ops.stack([mean, corrected])) * decay
        accumulator.assign(biased)
        count.assign_add(1.0)
        unbiased = biased / (1.0 - ops.power(1.0 - decay, count))
        for moving, value in ((layer.moving_mean, unbiased[0]), (layer.moving_variance, unbiased[1])):
            moving.assign(moving - (moving - value))


@contextlib.contextmanager
def statistics_of_call_site(model, site):
    """While inside, training calls of the model's CallSiteBatchNormalization
    layers leave their moving statistics to `site` (None: to Keras 3's average).
    Used while a step is traced: the choice is part of the compiled graph."""
    bns = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
    for layer in bns:
        layer.site = site
    try:
        yield
    finally:
        for layer in bns:
            layer.site = None


# ====================================================================== training primitives

def mse(target, output):
    return ops.mean(ops.square(ops.subtract(target, output)))


def as_tensors(*arrays):
    return [ops.convert_to_tensor(array, dtype="float32") for array in arrays]


def state_variable(shape, name, dtype="float32"):
    """A zero-initialised variable that is state, not a parameter."""
    return keras.Variable(np.zeros(shape, dtype), dtype=dtype, trainable=False, name=name)


# Step counters: JAX has 64-bit integers only when asked (jax_enable_x64); 32 bits
# count 2^31 updates, far more than a run makes.
COUNTER_DTYPE = "int32" if BACKEND == "jax" and not jax.config.jax_enable_x64 else "int64"


def batch_spec(*shape):
    """A float32 batch of any size (TensorFlow): a step is traced once (several
    seconds) for the full batches and the shorter last one; XLA still compiles
    each size. JAX traces each size; None elsewhere."""
    return tf.TensorSpec((None, *shape), tf.float32) if BACKEND == "tensorflow" else None


def tensor_spec(*shape):
    return tf.TensorSpec(shape, tf.float32) if BACKEND == "tensorflow" else None


def signature(*specs):
    """An input signature for compile_function (TensorFlow only)."""
    return list(specs) if BACKEND == "tensorflow" else None


def inputs_and_targets_spec(model, num_classes):
    """The signature of a step on (a batch of `model`'s inputs, one-hot targets)."""
    return signature(batch_spec(*model.input_shape[1:]), batch_spec(num_classes))


def update(optimizer, variables, loss_fn):
    """One gradient step of `optimizer` on `variables` against loss_fn()."""
    loss, gradients = value_and_gradients(loss_fn, variables)
    with without_gradient_tracking():
        optimizer.apply(gradients, variables)
    return loss


def labels_of(model):
    """A function: inputs -> the model's predicted labels (inference mode)."""
    return lambda x: ops.argmax(model(x, training=False), axis=-1)


def to_numpy(tensor):
    return ops.convert_to_numpy(tensor)


def numpy_losses(losses):
    """A step's {name: loss tensor} as {name: NumPy value}, for the record."""
    return {name: to_numpy(value) for name, value in losses.items()}


# ====================================================================== Adam

class FlatAdam:
    """keras.optimizers.Adam's arithmetic with both moments in one flat buffer.

    Each generator update touches ten small variables; Keras' Adam spends
    separate kernels and variable writes on every one of them. Here the
    gradients are concatenated, the moments updated in one pass and the steps
    split back: Keras' Adam's formulas in its order (equal up to float rounding).
    """

    def __init__(self, lr, beta1, beta2=0.999, epsilon=1e-7):
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon

    def build(self, variables):
        self.sizes = [int(np.prod(variable.shape)) for variable in variables]
        total = sum(self.sizes)
        self.iterations = state_variable((), "iterations", COUNTER_DTYPE)
        self.momentum = state_variable(total, "momentum")
        self.velocity = state_variable(total, "velocity")
        self.variables = [self.iterations, self.momentum, self.velocity]
        self.names = ["iterations", "m", "v"]

    def apply(self, gradients, variables):
        gradient = flat(gradients)
        step = ops.cast(self.iterations + 1, "float32")
        alpha = self.lr * ops.sqrt(1 - ops.power(self.beta2, step)) / (1 - ops.power(self.beta1, step))
        m = self.momentum + (gradient - self.momentum) * (1 - self.beta1)
        v = self.velocity + (ops.square(gradient) - self.velocity) * (1 - self.beta2)
        self.momentum.assign(m)
        self.velocity.assign(v)
        subtract_pieces(variables, m * alpha / (ops.sqrt(v) + self.epsilon), self.sizes)
        self.iterations.assign_add(1)


def flat(tensors):
    return ops.concatenate([ops.reshape(t, [-1]) for t in tensors], axis=0)


def subtract_pieces(variables, change, sizes):
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
    `iterations` counts this state's own updates.
    """

    def __init__(self, lr, beta1, counter, flat=False, beta2=0.999, epsilon=1e-7):
        self.lr, self.beta1, self.beta2 = (ops.convert_to_tensor(value, "float32")
                                           for value in (lr, beta1, beta2))
        self.epsilon, self.counter, self.flat = epsilon, counter, flat

    def build(self, variables):
        self.sizes = [int(np.prod(v.shape)) for v in variables]
        shapes = [(sum(self.sizes),)] if self.flat else [v.shape for v in variables]
        self.moments = [state_variable(shape, "m") for shape in shapes]
        self.velocities = [state_variable(shape, "v") for shape in shapes]
        self.iterations = state_variable((), "updates", COUNTER_DTYPE)
        self.variables = [self.iterations, *self.moments, *self.velocities]
        tracked = ["all"] if self.flat else [v.path for v in variables]   # each moment by its variable
        self.names = ["updates", *(f"m:{path}" for path in tracked), *(f"v:{path}" for path in tracked)]

    def apply(self, gradients, variables):
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

    def _moments_step(self, m, v, g, lr_t):
        m_t = self.beta1 * m + (1.0 - self.beta1) * g
        v_t = self.beta2 * v + (1.0 - self.beta2) * ops.square(g)
        m.assign(m_t)
        v.assign(v_t)
        return lr_t * m_t / (ops.sqrt(v_t) + self.epsilon)


class AdamStates:
    """The Adam states of one run: `new(variables)` gives a model's (or an
    update's) own state with fresh moments.

    shared_counter=True, the reference (QUIRK): Keras 2.2's arithmetic, and ONE
    step counter for every state of the run, advanced by each update of any of
    them, as the reference's single Adam object compiled into every model.
    shared_counter=False: each state counts its own steps, with Keras 3's Adam
    (FlatAdam for flat states).
    """

    def __init__(self, lr, beta1, shared_counter=True):
        self.lr, self.beta1 = lr, beta1
        self.counter = state_variable((), "shared_iterations", COUNTER_DTYPE) if shared_counter else None

    def new(self, variables, flat=False):
        if self.counter is not None:
            optimizer = ReferenceAdam(self.lr, self.beta1, self.counter, flat=flat)
        elif flat:
            optimizer = FlatAdam(self.lr, self.beta1)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=self.lr, beta_1=self.beta1)
        optimizer.build(variables)
        return optimizer

    @property
    def variables(self):
        """What a checkpoint keeps besides the states themselves: the shared counter."""
        return [self.counter] if self.counter is not None else []

    def named_variables(self):
        return {"adam/shared_iterations": self.counter} if self.counter is not None else {}


# ====================================================================== named state

def named_model_variables(prefix, model):
    """{prefix/variable path: variable} for every variable of a model (a stable
    name: the checkpoint key)."""
    return {f"{prefix}/{v.path}": v for v in model.variables}


def named_optimizer_variables(prefix, optimizer):
    """{prefix/name: variable} for an Adam state: ours name their moments after
    the variables they track, Keras' own after their paths."""
    names = getattr(optimizer, "names", None) or [v.path for v in optimizer.variables]
    return {f"{prefix}/{name}": v for name, v in zip(names, optimizer.variables)}


def merged_names(*groups):
    """One {name: variable} from several; a name given twice is a programming error."""
    merged = {}
    for group in groups:
        for name, variable in group.items():
            if name in merged:
                raise ValueError(f"two state variables named {name}")
            merged[name] = variable
    return merged
