"""Networks of convolutional GAMO: the original's fashion_mnist_net.py, now a
face of the `gamo` package (gamo/nets.py).

    F   build_feature_extractor   image (28x28x1) -> Conv2D 32 (5x5, same) -> LeakyReLU(0.1)
                                  -> AveragePooling 2x2 -> Conv2D 32 (5x5, same)
                                  -> LeakyReLU(0.1) -> AveragePooling 2x2 -> Flatten
                                  -> Dense 512, tanh

M, D, the generator trunk and the IGUs are the dense ones (dense_net.py) on F's
512-d feature vectors. F's LeakyReLU is gamo/layers.py's (the same values, a
gradient that lets TensorFlow's oneDNN fuse it); saved models hold Keras' own.
"""

from gamo.nets import (  # noqa: F401
    FILTERS,
    IMAGE_SHAPE,
    KERNEL_SIZE,
    NUM_FEATURES,
    build_classifier,
    build_discriminator,
    build_feature_extractor,
    build_generator_trunk,
    build_igu,
)
