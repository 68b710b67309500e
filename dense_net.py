"""Networks of GAMO on feature vectors: the original's dense_net.py, now a face of
the `gamo` package (gamo/nets.py), re-exported here under the original's roles.

    M      build_classifier       features -> Dense 256 -> LeakyReLU(0.1) -> Dense 128
                                  -> LeakyReLU(0.1) -> Dense c, softmax
    D      build_discriminator    [features, one-hot label] -> the same stack -> Dense 1, sigmoid
    G      build_generator_trunk  [noise (100), label] -> Dense 256 relu -> BatchNorm(0.9)
                                  -> Dense 64 relu -> BatchNorm(0.9): the paper's cTMU
    IGU_k  build_igu              code -> Dense n_k softmax (convex weights) -> their
                                  weighted sum of class k's points

Where the original's parts live now:
    the four networks, their widths and slopes    gamo/nets.py (HIDDEN_WIDTHS, TRUNK_WIDTHS,
                                                  LEAKY_SLOPE, BN_MOMENTUM, LATENT_DIM)
    the IGU's convex combination, the trunk's     gamo/layers.py (ConvexCombination,
    BatchNorm with Keras 2.2's per-call-site      CallSiteBatchNormalization,
    moving statistics                             CallSiteStatistics)
    Adam(0.0002, 0.5) and loss="mse" in compile   gamo/optim.py (AdamStates, mse, update)
    the composite models G+IGU_k+M, G+IGU_k+D     gamo/game.py (Gamo.generator_updates)
"""

from gamo.nets import (  # noqa: F401
    BN_MOMENTUM,
    HIDDEN_WIDTHS,
    LATENT_DIM,
    LEAKY_SLOPE,
    TRUNK_WIDTHS,
    build_classifier,
    build_discriminator,
    build_generator_trunk,
    build_igu,
)
