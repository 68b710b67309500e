"""Flat rows as images and back, and how pictures for people show them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gamo.errors import InputError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Sequence

    import numpy.typing as npt

    from gamo.data import Dataset
    from gamo.files import PathLike


def square_side(num_features: int) -> int | None:
    """Side of a square image with this many pixels, or None."""
    side = int(round(num_features ** 0.5))
    return side if side * side == num_features else None


def parse_image_shape(text: str) -> tuple[int, ...]:
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


def image_shape_for(num_features: int, given: Sequence[int] | None = None,
                    path: PathLike = "train") -> tuple[int, ...]:
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


def to_images(rows: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
    """Flat rows (n, H*W*C) -> images (n, H, W, C)."""
    return np.asarray(rows).reshape((len(rows), *image_shape))


FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                       "Bag", "Ankle boot")


def upright(images: npt.ArrayLike, image_shape: Sequence[int]) -> np.ndarray:
    """Images as the processed CSVs store them -> as people look at them.

    fMNIST_process.py stores every Fashion-MNIST image transposed, as the
    reference does (QUIRK; MNIST_process.py does not); pictures meant for
    reading transpose them back.
    Returns flat rows of images of shape (W, H, C).
    """
    height, width, *channels = image_shape
    images = np.asarray(images).reshape(-1, height, width, *(channels or [1]))
    return images.transpose(0, 2, 1, 3).reshape(len(images), -1)


def class_titles(dataset: Dataset, classes: Iterable[int],
                 names: Sequence[str] = FASHION_MNIST_NAMES) -> list[str]:
    """'Ankle boot (40)': each class's name, by its original label, and its training
    count; 'label 7 (40)' where names has none."""
    titles = []
    for k in classes:
        original = int(dataset.original_labels[k])
        name = names[original] if original < len(names) and names[original] else f"label {original}"
        titles.append(f"{name} ({dataset.imbalance.counts[k]})")
    return titles


def add_picture_options(parser: argparse.ArgumentParser, picture: str = "the picture") -> None:
    """--as-stored and --names: how a picture for people shows the images and names its rows."""
    parser.add_argument("--as-stored", action="store_true",
                        help=f"draw {picture}'s images as the CSV stores them, for files that hold them "
                             "upright (MNIST_process.py's, fMNIST_process.py --no-transpose); by default "
                             "they are transposed back, as fMNIST_process.py stores them transposed, "
                             "like the reference")
    parser.add_argument("--names", default=",".join(FASHION_MNIST_NAMES),
                        help=f"comma-separated names of the original labels 0, 1, ... for {picture}'s rows "
                             "('' for label numbers)")


def parse_names(text: str) -> tuple[str, ...]:
    """'a,b,c' -> ('a', 'b', 'c'); '' -> () (titles by label number)."""
    return tuple(part.strip() for part in text.split(",")) if text.strip() else ()
