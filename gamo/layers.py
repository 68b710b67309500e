"""The project's own layers, registered for saving under the package name "gamo"
(models saved by earlier versions load after `import gamo.layers`)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from gamo.backend import BACKEND
from gamo.state import state_variable

# isort: split
import keras
from keras import layers, ops

if BACKEND == "tensorflow":
    import tensorflow as tf

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from gamo.backend import Tensor


@keras.saving.register_keras_serializable(package="gamo")
class LeakyReLU(layers.LeakyReLU):
    """keras.layers.LeakyReLU, its gradient taken from its output: the same values
    (with a positive slope the output is positive exactly where the input is).

    On TensorFlow with oneDNN, grappler's remapper fuses Conv2D + BiasAdd +
    LeakyRelu into one kernel; TensorFlow's own gradient of LeakyRelu reads the
    BiasAdd's output, which the fusion removes, so the remapper gives up on the
    whole graph and prints "remapper failed ... missing node ... BiasAdd".
    Reading the output instead keeps the fusion (the feature extractor F's step)."""

    def call(self, inputs: Tensor) -> Tensor:
        """max(x, slope * x), its gradient read from the output on TensorFlow."""
        if BACKEND != "tensorflow":
            return super().call(inputs)
        return _leaky_relu_with_gradient_from_output(inputs, self.negative_slope)


def _leaky_relu_with_gradient_from_output(inputs: Tensor, slope: float) -> Tensor:
    @tf.custom_gradient
    def leaky_relu(x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        y = tf.nn.leaky_relu(x, alpha=slope)
        # LeakyReluGrad's arithmetic: the gradient where positive, else gradient * slope.
        return y, lambda dy: tf.where(y > 0, dy, dy * tf.cast(slope, dy.dtype))
    return leaky_relu(inputs)


@keras.saving.register_keras_serializable(package="gamo")
class ConvexCombination(layers.Layer):
    """Weights (batch, n) times the n stored points: convex when the weights are."""

    def __init__(self, num_points: int, num_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_points = num_points
        self.num_features = num_features

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """The stored points: (num_points, num_features) zeros until set."""
        # The class's points are data, not parameters: a non-trainable weight,
        # so they are saved with the model and can be replaced (new features).
        self.points = self.add_weight(shape=(self.num_points, self.num_features),
                                      initializer="zeros", trainable=False, name="points")

    def call(self, weights: Tensor) -> Tensor:
        """The weights' combinations of the points: (batch, num_features)."""
        return ops.matmul(weights, ops.cast(self.points, weights.dtype))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, int]:
        """(batch, num_features)."""
        return (input_shape[0], self.num_features)

    def get_config(self) -> dict[str, Any]:
        """The layer's configuration, with its sizes."""
        return {**super().get_config(), "num_points": self.num_points,
                "num_features": self.num_features}


@keras.saving.register_keras_serializable(package="gamo")
class CallSiteBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization, whose moving statistics a call site can take over.

    Outside `statistics_of_call_site`, this is Keras 3's layer: one moving
    average over every training call. Inside it, a training call normalises
    with the batch mean and biased batch variance, as before, and hands both to
    the site, which writes the moving statistics (see CallSiteStatistics).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site: CallSiteStatistics | None = None

    def call(self, inputs: Tensor, training: bool | None = None, mask: Tensor | None = None) -> Tensor:
        """Keras' BatchNormalization; in training inside a call site, the site keeps the statistics."""
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

    def __init__(self, model: keras.Model, name: str) -> None:
        self.layers = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
        self.accumulators = {layer.name: state_variable((2, layer.moving_mean.shape[0]),
                                                        f"{name}_{layer.name}_biased")
                             for layer in self.layers}
        self.counts = {layer.name: state_variable((), f"{name}_{layer.name}_step") for layer in self.layers}

    @property
    def variables(self) -> list[keras.Variable]:
        """Each layer's accumulators and count."""
        return [v for layer in self.layers for v in (self.accumulators[layer.name], self.counts[layer.name])]

    def record(self, layer: CallSiteBatchNormalization, mean: Tensor, variance: Tensor, rows: Tensor) -> None:
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
def statistics_of_call_site(model: keras.Model, site: CallSiteStatistics | None) -> Iterator[None]:
    """While inside, training calls of the model's CallSiteBatchNormalization
    layers leave their moving statistics to `site` (None: to Keras 3's average).
    Used while a step is traced: the choice is part of the compiled graph."""
    bns = [layer for layer in model.layers if isinstance(layer, CallSiteBatchNormalization)]
    # object.__setattr__: Keras' attribute tracking (which a site needs none of) costs
    # more than the statistics themselves in a PyTorch step, which runs this per update.
    for layer in bns:
        object.__setattr__(layer, "site", site)
    try:
        yield
    finally:
        for layer in bns:
            object.__setattr__(layer, "site", None)


@keras.saving.register_keras_serializable(package="gamo")
class Sampling(layers.Layer):
    """z = z_mean + scale * noise: the N(0, 1) noise given as a third input (GAMO2pix
    draws it from the run's seeded generator, so compiling changes nothing), or
    drawn here from a seeded Keras generator.

    QUIRK of the reference (the default): scale = exp(z_sigma), i.e. z_sigma is
    used as a log standard deviation here while the KL term reads it as a log
    variance. consistent=True uses exp(0.5 * z_sigma), the textbook VAE.
    """

    def __init__(self, consistent: bool = False, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consistent = consistent
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Sequence[Tensor]) -> Tensor:
        """z from [z_mean, z_sigma] or [z_mean, z_sigma, noise]."""
        z_mean, z_sigma, *given = inputs
        noise = given[0] if given else keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        scale = ops.exp(0.5 * z_sigma) if self.consistent else ops.exp(z_sigma)
        return z_mean + scale * noise

    def get_config(self) -> dict[str, Any]:
        """The layer's configuration, with its choice of scale and its seed."""
        return {**super().get_config(), "consistent": self.consistent, "seed": self.seed}


# The project's stand-ins for stock Keras layers: the same values, and the same
# weights in the same order, so a saved copy can hold the stock layer.
STOCK_LAYERS = {LeakyReLU: layers.LeakyReLU, CallSiteBatchNormalization: layers.BatchNormalization}


def with_stock_layers(model: keras.Model) -> keras.Model:
    """The model to save: a copy with Keras' own layers where this project uses
    its stand-ins (F's LeakyReLU, the trunk's BatchNorm), so that the file loads
    with plain keras.models.load_model in a program that never imports gamo,
    as the original's files do; the model itself if it has none."""
    if not any(type(layer) in STOCK_LAYERS for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=lambda layer: STOCK_LAYERS.get(
        type(layer), type(layer)).from_config(layer.get_config()))
    copy.set_weights(model.get_weights())
    return copy
