"""What the image case adds to dense_suppli.py: the original's
fashion_mnist_suppli.py, now a face of the `gamo` package (gamo/images.py).

Where the original's parts live now:
    the helpers it shares with dense_suppli.py   gamo/data.py, gamo/metrics.py (see dense_suppli.py)
    flat rows to images (28x28x1) and back       gamo/images.py (to_images, image_shape_for)
    pictures for people: upright images,         gamo/images.py (upright, class_titles,
    class names                                  FASHION_MNIST_NAMES)
"""

from gamo.images import (  # noqa: F401
    FASHION_MNIST_NAMES,
    class_titles,
    image_shape_for,
    parse_image_shape,
    to_images,
    upright,
)
