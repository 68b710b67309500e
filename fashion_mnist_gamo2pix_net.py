"""GAMO2pix networks: a variational autoencoder on top of the frozen feature
extractor F, whose decoder turns GAMO's generated feature vectors into images,
as the original GAMO2pix does.
"""

from __future__ import annotations

from dense_suppli import import_backend_quietly

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

import dense_net  # noqa: E402, F401  (registers the IGU's layer, which the loaded GAMO models use)

HEAD_WIDTH = 128
LATENT_DIM = 100
DECODER_FILTERS = 32


@keras.saving.register_keras_serializable(package="gamo")
class Sampling(layers.Layer):
    """z = z_mean + scale * N(0, 1), from a seeded generator.

    QUIRK of the reference (the default): scale = exp(z_sigma), i.e. z_sigma is
    used as a log standard deviation here while the KL term reads it as a log
    variance. consistent=True uses exp(0.5 * z_sigma), the textbook VAE.
    """

    def __init__(self, consistent=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.consistent = consistent
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_sigma = inputs
        noise = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        scale = ops.exp(0.5 * z_sigma) if self.consistent else ops.exp(z_sigma)
        return z_mean + scale * noise

    def get_config(self):
        return {**super().get_config(), "consistent": self.consistent, "seed": self.seed}


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
