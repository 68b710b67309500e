"""GAMO2pix's variational autoencoder for one class: an encoder head on the
frozen feature extractor F's features, the sampling, and a decoder to images,
with one compiled training step."""

from __future__ import annotations

import numpy as np

from gamo.backend import compile_function, step_network
from gamo.layers import Sampling
from gamo.optim import update
from gamo.state import merged_names, named_model_variables, named_optimizer_variables

# isort: split
import keras
from keras import layers, ops

HEAD_WIDTH = 128
LATENT_DIM = 100
DECODER_FILTERS = 32


def build_encoder_head(num_features, latent_dim=LATENT_DIM, width=HEAD_WIDTH, name="encoder"):
    """Features (from F) -> Dense tanh -> (z_mean, z_sigma)."""
    features = keras.Input((num_features,), name="features")
    hidden = layers.Dense(width, activation="tanh", name=f"{name}_hidden")(features)
    z_mean = layers.Dense(latent_dim, name="z_mean")(hidden)
    z_sigma = layers.Dense(latent_dim, name="z_sigma")(hidden)
    return keras.Model(features, [z_mean, z_sigma], name=name)


def build_decoder(image_shape, latent_dim=LATENT_DIM, filters=DECODER_FILTERS, name="decoder"):
    """z -> Dense -> (H/4 x W/4 x filters) -> two stride-2 transposed convs -> tanh image."""
    height, width, channels = image_shape
    if height % 4 or width % 4:
        raise ValueError(f"image sides must be multiples of 4, got {height}x{width}")
    z = keras.Input((latent_dim,), name="z")
    hidden = layers.Dense((height // 4) * (width // 4) * filters, name=f"{name}_dense")(z)
    hidden = layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky_0")(hidden)
    hidden = layers.Reshape((height // 4, width // 4, filters), name=f"{name}_reshape")(hidden)
    for index in (1, 2):
        hidden = layers.Conv2DTranspose(filters, 4, strides=2, padding="same",
                                        name=f"{name}_deconv_{index}")(hidden)
        hidden = layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky_{index}")(hidden)
    image = layers.Conv2D(channels, 4, padding="same", activation="tanh", name=f"{name}_image")(hidden)
    return keras.Model(z, image, name=name)


def vae_loss_terms(images, reconstructions, z_mean, z_sigma):
    """The VAE's loss as its two terms, whose sum is trained on:
    pixels * MSE(image, reconstruction), and the KL averaged over the batch.

    KL = -0.5 * sum(1 + z_sigma - z_mean^2 - exp(z_sigma)) per sample.
    """
    pixels = int(images.shape[1] * images.shape[2] * images.shape[3])
    reconstruction = pixels * ops.mean(ops.square(ops.subtract(images, reconstructions)))
    kl = -0.5 * ops.sum(1 + z_sigma - ops.square(z_mean) - ops.exp(z_sigma), axis=-1)
    return {"reconstruction": reconstruction, "KL": ops.mean(kl)}


VAE_LOSSES = ("loss", "reconstruction", "KL")


class ClassVae:
    """Encoder head, sampling and decoder for one class, with one compiled step.
    The sampling's noise is an input, drawn by the caller from its seeded generator."""

    def __init__(self, num_features, image_shape, settings, seed, adam):
        self.encoder = build_encoder_head(num_features)
        self.sampling = Sampling(consistent=settings.consistent_vae, seed=seed)
        self.latent_dim = self.encoder.output[0].shape[-1]
        self.decoder = build_decoder(image_shape)
        # How the step applies them: the models, or on PyTorch plain functions of their variables
        self.networks = [step_network(m) for m in (self.encoder, self.sampling, self.decoder)]
        self.variables = self.encoder.trainable_variables + self.decoder.trainable_variables
        # Fresh moments for every class; with the reference's shared step counter
        # (the default) the count runs on from class to class (QUIRK).
        self.optimizer = adam.new(self.variables)
        self.compiled_step = compile_function(self.step, [*vae_state_variables(self), *adam.variables],
                                              settings.jit, convolutional=True)

    def __call__(self, features, noise):
        encoder, sampling, decoder = self.networks
        z_mean, z_sigma = encoder(features)
        return decoder(sampling([z_mean, z_sigma, noise])), z_mean, z_sigma

    def noise(self, rng, rows):
        """The sampling's N(0, 1) noise for `rows` rows, from the caller's generator."""
        return rng.standard_normal((rows, self.latent_dim)).astype(np.float32)

    def step(self, features, images, noise):
        """One update; the loss and its terms: {"loss", "reconstruction", "KL"}."""
        return update(self.optimizer, self.variables, lambda: vae_loss_terms(images, *self(features, noise)))

    def images_from(self, features, rng):
        """Decoded images of feature vectors, the sampling's noise drawn from `rng`."""
        return keras.ops.convert_to_numpy(self(features, self.noise(rng, len(features)))[0])


def named_vae_state(vae, prefix=""):
    """{stable name: variable} of a VAE in training: weights and Adam state, each name
    after `prefix` (a class's "class_<k>/"). Its noise comes from the run's generator."""
    return merged_names(
        named_model_variables(f"{prefix}encoder", vae.encoder),
        named_model_variables(f"{prefix}decoder", vae.decoder),
        named_optimizer_variables(f"{prefix}adam_vae", vae.optimizer))


def vae_state_variables(vae):
    return list(named_vae_state(vae).values())
