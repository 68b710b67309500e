"""What the image case adds to dense_suppli.py: flat rows to images and back."""

from __future__ import annotations

import numpy as np

from dense_suppli import InputError, square_side


def parse_image_shape(text):
    """'28x28' or '28x28x1' -> (28, 28, 1)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected HxW or HxWxC, got {text!r}") from None
    if len(shape) == 2:
        shape += (1,)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected HxW or HxWxC, got {text!r}")
    return shape


def image_shape_for(num_features, given=None, path="train"):
    """The image shape of flat rows: given, or square single-channel."""
    if given is not None:
        if int(np.prod(given)) != num_features:
            raise InputError(f"{path}: {num_features} features do not make images of shape "
                             f"{'x'.join(map(str, given))}")
        return tuple(given)
    side = square_side(num_features)
    if side is None:
        raise InputError(f"{path}: {num_features} features are not square images; "
                         "pass --image-shape HxWxC")
    return (side, side, 1)


def to_images(rows, image_shape):
    """Flat rows (n, H*W*C) -> images (n, H, W, C)."""
    return np.asarray(rows).reshape((len(rows), *image_shape))
