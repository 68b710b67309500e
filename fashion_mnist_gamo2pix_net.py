"""GAMO2pix's networks: the original's fashion_mnist_gamo2pix_net.py, now a face
of the `gamo` package (gamo/vae.py, gamo/layers.py).

    encoder head   build_encoder_head   F's features (512) -> Dense 128 tanh -> z_mean, z_sigma (100)
    sampling       Sampling             z = z_mean + exp(z_sigma) * N(0, 1) (QUIRK; see --consistent-vae)
    decoder        build_decoder        z -> Dense 7*7*32 -> LeakyReLU(0.1) -> 7x7x32 -> two
                                        Conv2DTranspose 32 (4x4, stride 2) with LeakyReLU(0.1)
                                        -> Conv2D 1 (4x4), tanh
    loss           vae_loss_terms       784 * MSE(image, reconstruction) + KL
"""

from gamo.layers import Sampling  # noqa: F401
from gamo.vae import (  # noqa: F401
    DECODER_FILTERS,
    HEAD_WIDTH,
    LATENT_DIM,
    build_decoder,
    build_encoder_head,
    vae_loss_terms,
)
