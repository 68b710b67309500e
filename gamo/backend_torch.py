"""PyTorch's side of the backend seam: the training steps without Keras' per-call
machinery (imported by gamo.backend under KERAS_BACKEND=torch only).

On PyTorch a step runs eagerly, so every `model(x)` pays Keras' Layer.__call__
(argument binding, tree mapping, name scopes) for each layer, and every
keras.ops call converts its arguments: four fifths of a dense GAMO batch went
there (bench/README.md). Here:
  - PlainNetwork: a Keras functional model applied as a plain function of the
    tensors its variables hold. Its graph is read from the model once; each
    layer is then applied with torch operations (Dense as addmm, LeakyReLU,
    Concatenate, ConvexCombination, Conv2D and AveragePooling2D on channels-first
    views, training BatchNormalization through PyTorch's batch_norm kernel) or,
    for any other layer, through its own `call` (its arithmetic in keras.ops,
    without Layer.__call__). The model stays the one definition of the network:
    saving, loading and prediction use it.
  - reference_adam_step: ReferenceAdam's update through PyTorch's fused Adam kernel.
  - write_site_statistics: CallSiteStatistics' moving averages in place, every
    call site's of a step together at its end (deferred_site_statistics).
  - route_rows: the fake batch's rows through their own IGU only, by index.
What differs from Keras' arithmetic is float32 rounding only (fused products, the
variance summed as E[(x - mean)^2]): tests/test_torch_steps.py compares the two.
Keras' torch variables assign in place (copy_), so the tensor a variable holds
is the same object for the variable's life: it is read once.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import math
import threading
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as tnn

from gamo.layers import CallSiteBatchNormalization, ConvexCombination

# isort: split
import keras
from keras import layers
from keras.src.backend.torch import nn as keras_torch_nn  # Keras' "same" padding, reused

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from gamo.layers import CallSiteStatistics
    from gamo.optim import ReferenceAdam

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "linear": None, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1)}


def tensor_of(variable: keras.Variable) -> torch.Tensor:
    """The torch tensor a Keras variable holds (its own, not a copy)."""
    return variable.value


def activation_of(layer: keras.layers.Layer) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The layer's activation as a torch function (None: linear); Keras' own if not a common one."""
    name = getattr(layer.activation, "__name__", "")
    return ACTIVATIONS[name] if name in ACTIVATIONS else layer.activation


def dense(layer: layers.Dense) -> Callable[..., torch.Tensor] | None:
    """x W + b and the activation; None for LoRA or quantised layers (their own call)."""
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        return None
    kernel = tensor_of(layer.kernel)
    bias = tensor_of(layer.bias) if layer.bias is not None else None
    activation = activation_of(layer)

    def apply(x: torch.Tensor, training: bool) -> torch.Tensor:
        # addmm: the bias added to the float32 product, as matmul then add do, in one operation
        # (and its gradient with the product's); matmul for inputs of more than two axes.
        if bias is not None and x.dim() == 2:
            y = torch.addmm(bias, x, kernel)
        else:
            y = torch.matmul(x, kernel)
            if bias is not None:
                y = y + bias
        return y if activation is None else activation(y)
    return apply


def leaky_relu(layer: layers.LeakyReLU) -> Callable[..., torch.Tensor]:
    slope = float(layer.negative_slope)
    return lambda x, training: tnn.leaky_relu(x, slope)


def concatenate(layer: layers.Concatenate) -> Callable[..., torch.Tensor]:
    axis = layer.axis
    return lambda inputs, training: torch.cat(inputs, dim=axis)


def convex_combination(layer: ConvexCombination) -> Callable[..., torch.Tensor]:
    points = tensor_of(layer.points)
    return lambda weights, training: torch.matmul(weights, points)


def conv2d(layer: layers.Conv2D) -> Callable[..., torch.Tensor] | None:
    """Keras' Conv2D on channels-last images, without its two copies: the image seen
    as channels-first is already in the channels-last memory layout the convolution
    kernel prefers (a view), and so is its output seen back. None for other forms."""
    if layer.data_format != "channels_last" or layer.groups != 1 or getattr(layer, "lora_enabled", False) \
            or getattr(layer, "quantization_mode", None):
        return None
    kernel = tensor_of(layer.kernel)
    bias = tensor_of(layer.bias) if layer.bias is not None else None
    activation = activation_of(layer)

    def apply(x: torch.Tensor, training: bool) -> torch.Tensor:
        images, padding = channels_first_padded(x, layer.kernel_size, layer.strides, layer.padding, "conv",
                                                layer.dilation_rate)
        y = tnn.conv2d(images, kernel.permute(3, 2, 0, 1), None, layer.strides, padding, layer.dilation_rate)
        y = y.permute(0, 2, 3, 1)
        if bias is not None:
            y = y + bias              # after the convolution, as Keras' layer adds it
        return y if activation is None else activation(y)
    return apply


def average_pooling2d(layer: layers.AveragePooling2D) -> Callable[..., torch.Tensor] | None:
    """Keras' AveragePooling2D on channels-last images, without its copies (as conv2d)."""
    if layer.data_format != "channels_last":
        return None

    def apply(x: torch.Tensor, training: bool) -> torch.Tensor:
        images, padding = channels_first_padded(x, layer.pool_size, layer.strides, layer.padding, "pooling")
        y = tnn.avg_pool2d(images, layer.pool_size, layer.strides, padding, count_include_pad=False)
        return y.permute(0, 2, 3, 1)
    return apply


def channels_first_padded(x: torch.Tensor, size: Sequence[int], strides: Sequence[int], padding: str,
                          operation: str, dilation: Any = 1) -> tuple[torch.Tensor, Any]:
    """A channels-last batch of images as a channels-first view and the padding to
    give the operation ("same": Keras' own, padding the view where it is uneven)."""
    images = x.permute(0, 3, 1, 2)
    if padding != "same":
        return images, 0
    return keras_torch_nn._apply_same_padding(images, size, strides, "channels_first", operation, dilation)


def batch_normalization(layer: layers.BatchNormalization) -> Callable[..., torch.Tensor] | None:
    """Keras' BatchNormalization over the last axis (moving averages, or a call
    site's statistics inside gamo.layers.statistics_of_call_site); None for what
    this does not cover (renorm, other axes, no centre or scale)."""
    last_axis = layer.axis in (-1, len(layer.input.shape) - 1)
    if layer.renorm or not last_axis or not (layer.center and layer.scale):
        return None
    gamma, beta = tensor_of(layer.gamma), tensor_of(layer.beta)
    moving_mean, moving_variance = tensor_of(layer.moving_mean), tensor_of(layer.moving_variance)
    momentum, epsilon = layer.momentum, layer.epsilon

    def apply(x: torch.Tensor, training: bool) -> torch.Tensor:
        if not (training and layer.trainable):
            apply_deferred_statistics()     # a call site's may be waiting to be written here
            return normalised(x, moving_mean, moving_variance)
        if x.dim() == 2:
            # PyTorch's batch_norm kernel, forward and backward, on the batch's own
            # statistics (its variance summed as E[(x - mean)^2], as TensorFlow 1's
            # moments did): Keras' arithmetic to float32 rounding in two operations,
            # not a dozen and their gradients; the statistics recorded as Keras has them.
            with torch.no_grad():
                record(*moments(x), x.shape[0])
            return tnn.batch_norm(x, None, None, gamma, beta, training=True, eps=epsilon)
        mean, mean_of_squares = moments(x)
        with torch.no_grad():
            record(mean, mean_of_squares, x.shape[0])
        return normalised(x, mean, mean_of_squares - torch.square(mean))

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E[x] and E[x^2] over every axis but the last (Keras' variance: E[x^2] - E[x]^2)."""
        axes = list(range(x.dim() - 1))
        return torch.mean(x, dim=axes), torch.mean(torch.square(x), dim=axes)

    def record(mean: torch.Tensor, mean_of_squares: torch.Tensor, rows: int) -> None:
        """This call's statistics to the call site's average, or to the layer's moving average."""
        site = getattr(layer, "site", None)
        if site is not None:
            record_site_statistics(SiteRecord(site, layer, mean, mean_of_squares, rows))
            return
        apply_deferred_statistics()         # a call site's, waiting for this layer, first
        variance = mean_of_squares - torch.square(mean)
        moving_mean.copy_(moving_mean * momentum + mean * (1.0 - momentum))
        moving_variance.copy_(moving_variance * momentum + variance * (1.0 - momentum))

    def normalised(x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
        """keras.ops.batch_normalization's arithmetic on PyTorch."""
        return x.subtract(mean).mul_(variance.add(epsilon).rsqrt_().mul(gamma)).add_(beta)
    return apply


# Layer type -> a function of the layer giving its arithmetic (training flag last), or None.
TRANSLATIONS: dict[type, Callable[[Any], Callable[..., torch.Tensor] | None]] = {
    layers.Dense: dense, layers.LeakyReLU: leaky_relu, layers.Concatenate: concatenate,
    ConvexCombination: convex_combination, layers.BatchNormalization: batch_normalization,
    layers.Conv2D: conv2d, layers.AveragePooling2D: average_pooling2d,
}


def own_call(layer: keras.layers.Layer) -> Callable[..., Any]:
    """The layer's own `call` (keras.ops arithmetic), with its training flag if it takes one."""
    takes_training = "training" in inspect.signature(layer.call).parameters
    if takes_training:
        return lambda inputs, training: layer.call(inputs, training=training)
    return lambda inputs, training: layer.call(inputs)


def translated(layer: keras.layers.Layer) -> Callable[..., Any]:
    """How a plain function applies one layer: its torch arithmetic, or its own call."""
    for kind in type(layer).__mro__:
        if kind in TRANSLATIONS:
            apply = TRANSLATIONS[kind](layer)
            if apply is not None:
                return apply
            break
    return own_call(layer)


class PlainNetwork:
    """A Keras functional model (or a single layer) as a plain function of its
    variables' tensors: `network(inputs, training=...)` as `model(inputs, training=...)`."""

    def __init__(self, model: keras.layers.Layer) -> None:
        self.model = model
        self.layer = None if isinstance(model, keras.Model) else translated(model)
        if self.layer is not None:
            return
        # Each node of the graph, deepest first: (its arithmetic, the numbers of its
        # inputs, whether it takes a list, the numbers given to its outputs).
        ids = {id(tensor): index for index, tensor in enumerate(model.inputs)}
        self.steps: list[tuple[Callable[..., Any], list[int], bool, list[int]]] = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                sources = [ids[id(tensor)] for tensor in node.input_tensors]
                targets = [ids.setdefault(id(tensor), len(ids)) for tensor in node.outputs]
                self.steps.append((translated(node.operation), sources, len(node.input_tensors) > 1, targets))
        self.outputs = [ids[id(tensor)] for tensor in model.outputs]
        self.single = not isinstance(model.output, (list, tuple))

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        several = isinstance(inputs, (list, tuple))
        given = [x if isinstance(x, torch.Tensor) else keras.ops.convert_to_tensor(x, "float32")
                 for x in (inputs if several else [inputs])]      # as Layer.__call__ converts them
        if self.layer is not None:
            return self.layer(given if several else given[0], training)
        values: dict[int, Any] = dict(enumerate(given))
        for apply, sources, takes_list, targets in self.steps:
            result = apply([values[i] for i in sources] if takes_list else values[sources[0]], training)
            if len(targets) == 1:
                values[targets[0]] = result
            else:
                values.update(zip(targets, result))
        return values[self.outputs[0]] if self.single else [values[i] for i in self.outputs]


class SiteRecord(NamedTuple):
    """One training call's batch statistics for a call site's BatchNormalization layer."""
    site: CallSiteStatistics
    layer: CallSiteBatchNormalization
    mean: torch.Tensor
    mean_of_squares: torch.Tensor
    rows: int


class SiteTensors(NamedTuple):
    """A call site's state for one layer, read once: its accumulator's two rows
    (views), its count, the layer's moving mean and variance, and the decay
    1 - momentum and momentum as CallSiteStatistics.record computes them."""
    accumulated: list[torch.Tensor]
    count: torch.Tensor
    movings: list[torch.Tensor]
    decay: float              # a float32 value, exactly
    momentum: torch.Tensor


_SITE_TENSORS: weakref.WeakKeyDictionary[CallSiteStatistics, dict[str, SiteTensors]] = \
    weakref.WeakKeyDictionary()


def site_tensors(site: CallSiteStatistics, layer: CallSiteBatchNormalization) -> SiteTensors:
    """The site's tensors for this layer (read once)."""
    tensors = _SITE_TENSORS.setdefault(site, {})
    if layer.name not in tensors:
        decay = torch.tensor(1.0 - layer.momentum, dtype=torch.float32)
        tensors[layer.name] = SiteTensors(list(tensor_of(site.accumulators[layer.name]).unbind()),
                                          tensor_of(site.counts[layer.name]),
                                          [tensor_of(layer.moving_mean), tensor_of(layer.moving_variance)],
                                          float(decay), 1.0 - decay)
    return tensors[layer.name]


def route_rows(code: torch.Tensor, labels: torch.Tensor,
               units: Mapping[int, Callable[[torch.Tensor], torch.Tensor]], width: int) -> torch.Tensor:
    """gamo.backend.route_rows, eagerly: each unit on the rows of its label only (a
    zero row where a label has no unit), not every unit on every row."""
    label_ids = torch.argmax(labels, dim=-1)
    routed = torch.zeros((code.shape[0], width), dtype=code.dtype, device=code.device)
    for k, unit in units.items():
        rows = torch.nonzero(label_ids == k).squeeze(1)
        if rows.numel():
            routed = routed.index_copy(0, rows, unit(code.index_select(0, rows)))
    return routed


class Deferral(threading.local):
    """Call sites' statistics waiting to be written, in the order recorded, per
    thread (None: written at once)."""
    waiting: dict[tuple[int, int], SiteRecord] | None = None


_DEFERRAL = Deferral()


@contextlib.contextmanager
def deferred_site_statistics() -> Iterator[None]:
    """Inside (a step), call sites' BatchNorm statistics wait and are written together
    on the way out, or before an inference-mode call of a layer could read them: a
    dozen vectorised operations for a batch's 36 calls, not sixteen for each."""
    if _DEFERRAL.waiting is not None:          # nested: the outermost writes them
        yield
        return
    _DEFERRAL.waiting = {}
    try:
        yield
    finally:
        try:
            apply_deferred_statistics()
        finally:
            _DEFERRAL.waiting = None


def record_site_statistics(record: SiteRecord) -> None:
    """A call's statistics to its site: now, or with the step's others (deferred_site_statistics)."""
    waiting = _DEFERRAL.waiting
    if waiting is None:
        write_site_statistics([record])
        return
    key = (id(record.site), id(record.layer))
    if key in waiting:                 # a site's second call averages into what its first wrote
        apply_deferred_statistics()
    waiting[key] = record


def apply_deferred_statistics() -> None:
    """Write the statistics waiting (deferred_site_statistics), if any."""
    waiting = _DEFERRAL.waiting
    if waiting:
        records = list(waiting.values())
        waiting.clear()
        write_site_statistics(records)


@torch.no_grad()
def write_site_statistics(records: Sequence[SiteRecord]) -> None:
    """CallSiteStatistics.record's arithmetic (see there) for these calls, in the order
    given, on the tensors in place: the same operations elementwise, each over every
    call at once (each site at most once); the layers' moving statistics are set call
    after call, as recorded."""
    sites = [site_tensors(r.site, r.layer) for r in records]
    means = [r.mean for r in records]
    variances = torch._foreach_sub([r.mean_of_squares for r in records], torch._foreach_mul(means, means))
    corrected = torch._foreach_mul(variances, [r.rows / (r.rows - (1.0 + r.layer.epsilon)) for r in records])
    accumulated = [row for site in sites for row in site.accumulated]
    change = torch._foreach_sub(accumulated, [value for pair in zip(means, corrected) for value in pair])
    torch._foreach_mul_(change, [site.decay for site in sites for _ in range(2)])
    torch._foreach_sub_(accumulated, change)
    counts = [site.count for site in sites]
    torch._foreach_add_(counts, 1.0)
    debiasing = torch._foreach_pow([site.momentum for site in sites], counts)
    torch._foreach_neg_(debiasing)
    torch._foreach_add_(debiasing, 1.0)                       # 1 - momentum^count
    unbiased = torch._foreach_div(accumulated, [d for d in debiasing for _ in range(2)])
    # moving - (moving - unbiased), a layer's calls in turn: in round r, every layer's r-th call.
    calls_of_layer: dict[int, list[list[tuple[torch.Tensor, torch.Tensor]]]] = {}
    for index, (record, site) in enumerate(zip(records, sites)):
        calls_of_layer.setdefault(id(record.layer), []).append(
            list(zip(site.movings, unbiased[2 * index:2 * index + 2])))
    for calls in itertools.zip_longest(*calls_of_layer.values(), fillvalue=[]):
        pairs = [pair for call in calls for pair in call]
        movings, values = [moving for moving, _ in pairs], [value for _, value in pairs]
        torch._foreach_sub_(movings, torch._foreach_sub(movings, values))


class InPlaceAdam:
    """The tensors of a ReferenceAdam state and of the variables it updates, read
    once; a flat state's moments as views of its buffers, one per variable."""

    def __init__(self, adam: ReferenceAdam, variables: Sequence[keras.Variable]) -> None:
        self.variables = list(variables)
        self.params = [tensor_of(v) for v in variables]
        shapes = [p.shape for p in self.params]
        moments, velocities = ([tensor_of(m) for m in ms] for ms in (adam.moments, adam.velocities))
        self.moments = pieces(moments[0], adam.sizes, shapes) if adam.flat else moments
        self.velocities = pieces(velocities[0], adam.sizes, shapes) if adam.flat else velocities
        self.counter, self.iterations = tensor_of(adam.counter), tensor_of(adam.iterations)
        # The float32 constants as Python numbers (exactly), for PyTorch's fused kernel.
        self.lr, self.beta1, self.beta2 = (float(v) for v in (adam.lr, adam.beta1, adam.beta2))
        self.epsilon = adam.epsilon


_ADAM_TENSORS: weakref.WeakKeyDictionary[ReferenceAdam, InPlaceAdam] = weakref.WeakKeyDictionary()


def reference_adam_step(adam: ReferenceAdam, gradients: Sequence[torch.Tensor],
                        variables: Sequence[keras.Variable]) -> None:
    """ReferenceAdam.apply's update (see there) on the tensors in place, in one pass
    over each variable's moments: PyTorch's fused Adam kernel,

        t = counter + 1;  m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        w = w - (lr / (1 - beta_1^t)) m / (sqrt(v) / sqrt(1 - beta_2^t) + epsilon_t)

    which with epsilon_t = epsilon / sqrt(1 - beta_2^t) is the reference's
    w - lr_t m / (sqrt(v) + epsilon), lr_t = lr sqrt(1 - beta_2^t) / (1 - beta_1^t):
    the same update to float32 rounding (its bias corrections in float64, its
    products fused; tests/test_torch_steps.py), where separate passes took a
    third of a dense batch (bench/README.md)."""
    state = _ADAM_TENSORS.get(adam)
    if state is None or state.variables != list(variables):
        state = _ADAM_TENSORS[adam] = InPlaceAdam(adam, variables)
    t = state.counter.to(torch.float32) + 1
    epsilon_t = state.epsilon / math.sqrt(1.0 - state.beta2 ** float(t))
    # The kernel reads memory in order: a convolution kernel's gradient arrives permuted.
    gradients = [g.contiguous() for g in gradients]
    torch._fused_adam_(state.params, gradients, state.moments, state.velocities, [],
                       [t] * len(state.params), lr=state.lr, beta1=state.beta1, beta2=state.beta2,
                       weight_decay=0.0, eps=epsilon_t, amsgrad=False, maximize=False)
    state.counter.add_(1)
    state.iterations.add_(1)


def pieces(flat: torch.Tensor, sizes: Sequence[int], shapes: Sequence[torch.Size]) -> list[torch.Tensor]:
    """The flat tensor cut into pieces of these sizes and shapes (views: writing them writes it)."""
    return [piece.view(shape) for piece, shape in zip(flat.split(sizes), shapes)]
