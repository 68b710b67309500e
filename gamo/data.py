"""Data: reading the prepared CSV files, relabelling classes by size, the
imbalance, the SMOTE baseline's balancing, batches. Plain NumPy (no framework)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gamo.environment import how_to_run
from gamo.errors import InputError, one_line
from gamo.methods import oversampled

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

    from gamo.files import PathLike


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def check_separator(path: PathLike, first_line: str) -> None:
    """InputError for a table separated by ';' or tabs (as some locales' spreadsheets
    and pandas' sep= write): the files are comma-separated."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if "," not in first_line and separator in first_line:
            raise InputError(f"{path}: the columns are separated by {name}, not commas; write it with "
                             "commas (pandas: DataFrame.to_csv(path, index=False))")


def read_numeric_csv(path: PathLike, expected_columns: int | None = None) -> npt.NDArray[np.float64]:
    """Read a comma-separated table of numbers; skip one header row, with a note.

    Raises InputError naming the file for a missing file, a file that is not
    UTF-8 text, an empty file, non-numeric cells, rows of different lengths or
    NaN / infinite values. A message names the place as "line N" (a text
    editor's line number: the first line of the file is 1, header and blank
    lines counted) and "column M" (the first is 1).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or one_line(error)})") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise InputError(f"{path}: file is empty")
    check_separator(path, numbered[0][1])
    if not any(_looks_numeric(cell) for cell in numbered[0][1].strip().split(",")):
        if numbered[0][1].split(",")[0].strip() in ("", "Unnamed: 0"):
            raise InputError(f"{path}: its first column has no name, as a pandas index written by "
                             "DataFrame.to_csv has; write the file with index=False (features, then the "
                             "label)")
        # A row with no number at all is a header; a row with some bad cells
        # is data, and the check below names the bad cell.
        print(f"note: {path}: skipping header row (line {numbered[0][0]})", file=sys.stderr)
        numbered = numbered[1:]
    if not numbered:
        raise InputError(f"{path}: no data rows")
    try:
        table = np.loadtxt([line for _, line in numbered], delimiter=",", ndmin=2, dtype=np.float64,
                           comments=None)
    except ValueError as error:
        raise InputError(f"{path}: {_first_unreadable_line(numbered) or one_line(error)}") from None
    if expected_columns is not None and table.shape[1] != expected_columns:
        raise InputError(
            f"{path}: expected {expected_columns} columns, found {table.shape[1]}")
    if not np.isfinite(table).all():
        row, column = np.argwhere(~np.isfinite(table))[0]
        raise InputError(f"{path}: NaN or infinite value at line {numbered[row][0]}, column {column + 1}")
    return table


def _first_unreadable_line(numbered: list[tuple[int, str]]) -> str | None:
    """Where a table stops being a table of numbers: the first line with another
    number of cells than the first line, or the first cell that is not a number."""
    width = numbered[0][1].count(",") + 1
    for number, line in numbered:
        cells = line.split(",")
        if len(cells) != width:
            return f"line {number} has {len(cells)} columns, line {numbered[0][0]} has {width}"
        for column, cell in enumerate(cells, start=1):
            if not _looks_numeric(cell):
                return f"non-numeric cell {cell.strip()[:40]!r} at line {number}, column {column}"
    return None


def integer_labels(values: np.ndarray, path: PathLike,
                   allowed: Sequence[int] | None = None) -> npt.NDArray[np.int64]:
    """Check that a label column holds integers (within `allowed`, if given)."""
    if not np.array_equal(values, np.round(values)):
        raise InputError(f"{path}: labels must be integers")
    if np.abs(values).max() >= 2 ** 31:
        raise InputError(f"{path}: label {values[np.argmax(np.abs(values))]:g} out of range")
    labels = values.astype(np.int64)
    if allowed is not None:
        bad = labels[~np.isin(labels, allowed)]
        if bad.size:
            raise InputError(
                f"{path}: label {bad[0]} outside {min(allowed)}-{max(allowed)}")
    return labels


def read_labelled_csv(path: PathLike) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Read a prepared file: all columns but the last are features, the last the label."""
    table = read_numeric_csv(path)
    if table.shape[1] < 2:
        raise InputError(f"{path}: need at least one feature column and a label column")
    return table[:, :-1].astype(np.float32), integer_labels(table[:, -1], path)


# The reference reads 0-255 pixels; data whose largest value is below this use so little of
# that range that (x - 127.5) / 127.5 flattens them to nearly one value (raw 0-16 digit
# intensities: all within [-1, -0.87]), and GAMO then trains to chance.
PIXEL_SPAN = 64


def check_pixels(x: np.ndarray, path: PathLike) -> None:
    """InputError naming --no-scale unless x looks like 0-255 pixels: no negative
    value, none above 255, and a largest value of PIXEL_SPAN or more."""
    if x.size == 0:
        return
    low, high = float(np.min(x)), float(np.max(x))
    if low < 0 or high > 255 or high < PIXEL_SPAN:
        raise InputError(f"{path}: the features are not 0-255 pixels (values from {low:.4g} to {high:.4g}), "
                         "which the default scaling (x - 127.5) / 127.5 assumes; pass --no-scale to use "
                         "them as they are (standardised or other features), or rescale them to 0-255")


def scale_pixels(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Map pixel values 0..255 to [-1, 1]."""
    return ((np.asarray(x, dtype=np.float32) - 127.5) / 127.5).astype(np.float32)


def relabel_by_size(train_labels: npt.ArrayLike, test_labels: npt.ArrayLike, train_path: PathLike = "train",
                    test_path: PathLike | None = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber classes by training count, ascending (stable): 0 is the smallest.

    Returns (new train labels, new test labels, original label of each new class).
    """
    classes, counts = np.unique(train_labels, return_counts=True)
    if classes.size < 2:
        raise InputError(f"{train_path}: need at least 2 classes, found {classes.size}")
    unseen = np.setdiff1d(np.unique(test_labels), classes)
    if unseen.size:
        raise InputError(f"{test_path}: label {unseen[0]} does not occur in {train_path}")
    order = classes[np.argsort(counts, kind="stable")]
    mapping = {int(old): new for new, old in enumerate(order)}
    remap = np.vectorize(mapping.__getitem__, otypes=[np.int64])
    return remap(train_labels), remap(test_labels), order


@dataclass(frozen=True)
class Imbalance:
    """Per-class counts of a relabelled training set and what balancing needs."""

    counts: np.ndarray

    @property
    def num_classes(self) -> int:
        """c, the number of classes."""
        return self.counts.size

    @property
    def ratios(self) -> np.ndarray:
        """Each class's imbalance ratio: the largest count over its count."""
        return self.counts.max() / self.counts

    @property
    def minority(self) -> np.ndarray:
        """The imbalanced classes (ir > 1), in label order."""
        return np.flatnonzero(self.ratios > 1)

    @property
    def to_balance(self) -> np.ndarray:
        """How many rows each class lacks to match the largest."""
        return self.counts.max() - self.counts

    @property
    def fake_label_probabilities(self) -> np.ndarray:
        """Probability of each class in a fake batch: proportional to to_balance."""
        return self.to_balance / self.to_balance.sum()


def imbalance_of(labels: npt.ArrayLike, num_classes: int | None = None,
                 path: PathLike = "train") -> Imbalance:
    """The Imbalance of relabelled training labels; InputError if no class is a minority."""
    counts = np.bincount(labels, minlength=num_classes or 0)
    imbalance = Imbalance(counts)
    if imbalance.minority.size == 0:
        raise InputError(f"{path}: No imbalanced classes found")
    return imbalance


def sample_fake_labels(rng: np.random.Generator, imbalance: Imbalance, size: int) -> npt.NDArray[np.float32]:
    """Draw `size` fake labels among the minority classes, one-hot with c columns."""
    labels = rng.choice(imbalance.num_classes, size=size, p=imbalance.fake_label_probabilities)
    return one_hot(labels, imbalance.num_classes)


def one_hot(labels: np.ndarray | Sequence[int], num_classes: int) -> npt.NDArray[np.float32]:
    """Integer labels as float32 one-hot rows of num_classes columns."""
    return np.eye(num_classes, dtype=np.float32)[labels]


REFERENCE_BATCH_SIZE = 32


def check_batch_size(batch_size: int, dataset: Dataset, path: PathLike) -> None:
    """InputError for a --batch-size chosen above the training rows (one batch of
    every row each step: not the reference's game). The reference's 32 passes on a
    smaller set, as the estimators take it."""
    if batch_size > max(len(dataset.y_train), REFERENCE_BATCH_SIZE):
        raise InputError(f"--batch-size {batch_size}: larger than the {len(dataset.y_train)} training rows "
                         f"of {path} (the reference's is {REFERENCE_BATCH_SIZE})")


def batch_slices(num_rows: int, batch_size: int) -> list[slice]:
    """Consecutive slices of the (already shuffled) set; the last may be shorter."""
    return [slice(start, min(start + batch_size, num_rows))
            for start in range(0, num_rows, batch_size)]


@dataclass
class Dataset:
    """A relabelled train/test pair: class 0 is the smallest, c-1 the largest."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    imbalance: Imbalance
    original_labels: np.ndarray     # original label of each new class


def single_row_notes(counts: np.ndarray, names: npt.ArrayLike) -> list[str]:
    """The one rule of the scripts and the estimators for a class with a single
    training row: it trains, with this note (its IGU has one point to combine)."""
    names = np.asarray(names)
    return [f"class {names[k].tolist()!r} has a single training row; every sample generated for it is "
            "that row" for k in np.flatnonzero(np.asarray(counts) == 1)]


def load_dataset(train_path: PathLike, test_path: PathLike | None, scale: bool = True,
                 missing_hint: str = "MNIST_process.py") -> Dataset:
    """The relabelled, scaled train and test sets; test_path None: no test set (empty)."""
    for given in filter(None, (train_path, test_path)):
        path = Path(given)  # type: ignore[arg-type]   # mypy joins the two path types to object here
        if not path.is_file():
            prepared = path.name.endswith(("_trainData.csv", "_testData.csv"))   # the processing's names
            hint = (f"; run '{how_to_run(missing_hint)}' to prepare it, or pass --train/--test" if prepared
                    else "; check the path")
            raise InputError(f"{path}: file not found{hint}")
    x_train, y_train = read_labelled_csv(train_path)
    x_test, y_test = read_labelled_csv(test_path) if test_path else (x_train[:0], y_train[:0])
    if x_train.shape[1] != x_test.shape[1]:
        raise InputError(f"{test_path}: {x_test.shape[1]} features, but {train_path} "
                         f"has {x_train.shape[1]}")
    y_train, y_test, original = relabel_by_size(y_train, y_test, train_path, test_path)
    imbalance = imbalance_of(y_train, path=train_path)
    for note in single_row_notes(imbalance.counts, original):
        print(f"warning: {train_path}: {note}", file=sys.stderr)
    if scale:
        check_pixels(x_train, train_path)
        check_pixels(x_test, test_path or train_path)
        x_train, x_test = scale_pixels(x_train), scale_pixels(x_test)
    return Dataset(x_train, y_train, x_test, y_test, imbalance, original)


def training_rows(dataset: Dataset, rng: np.random.Generator, method: str = "gamo", seed: int = 0,
                  path: PathLike = "train") -> tuple[np.ndarray, np.ndarray]:
    """The rows a run trains on: balanced first by the method's over-sampler (seeded
    with `seed`) if it has one (gamo.methods), then shuffled once with the run's
    generator, as the reference shuffles once."""
    x, y = oversampled(method, dataset.x_train, dataset.y_train, seed, path)
    order = rng.permutation(len(y))
    return x[order], y[order]
