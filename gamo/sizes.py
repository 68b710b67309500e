"""The networks' default sizes (the reference's), importable without Keras: the
command lines read them for their defaults before any backend starts."""

LATENT_DIM = 100                  # the generator's noise input
NUM_FEATURES = 512                # F's feature vectors (convolutional GAMO)
IMAGE_SHAPE = (28, 28, 1)
