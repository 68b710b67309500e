"""Data, metrics and file helpers for GAMO on feature vectors.

Everything here is plain NumPy / scikit-learn (no TensorFlow), so the data
preparation scripts can import it without paying for a framework start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix


class InputError(Exception):
    """A problem with the user's input; reported as one line, exit status 2."""


def run_cli(main, argv=None):
    """Run a script's main(argv); turn input errors into one line and exit 2."""
    try:
        return main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def import_tensorflow_quietly():
    """Import TensorFlow and let it probe for devices with file descriptor 2 muted.

    Its C++ start-up lines (CUDA probing, absl notices) ignore
    TF_CPP_MIN_LOG_LEVEL; muting them keeps errors to one line. Python
    exceptions still propagate normally.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


# ---------------------------------------------------------------- file output

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The temporary name keeps the extension (writers such as Keras and
    matplotlib pick the format from it); on failure it is removed, so a
    half-written file never appears under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_npz(path, **arrays):
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def save_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def save_labelled_csv(path, features, labels):
    """Write features then the label as the last column, integers where exact."""
    table = np.column_stack([features, labels])
    integral = np.array_equal(table, np.round(table))
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt="%d" if integral else "%.9g", delimiter=",")


def prepare_output_dir(out_dir):
    """Create the output folder, or explain in one line why it cannot be used."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{out_dir}: cannot create output folder ({error.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"{out_dir}: output folder is not writable")
    return out_dir


# ---------------------------------------------------------------- CSV reading

def _looks_numeric(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_numeric_csv(path, expected_columns=None):
    """Read a comma-separated table of numbers; skip one header row, with a note.

    Raises InputError naming the file for a missing file, an empty file,
    non-numeric cells, rows of different lengths or NaN / infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    with open(path) as handle:
        first = handle.readline()
    if not first.strip():
        raise InputError(f"{path}: file is empty")
    cells = first.strip().split(",")
    skip = 0
    if not any(_looks_numeric(cell) for cell in cells):
        # A row with no number at all is a header; a row with some bad cells
        # is data, and the parser below names the bad cell.
        print(f"note: {path}: skipping header row", file=sys.stderr)
        skip = 1
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as error:
        reason = str(error).splitlines()[0]
        if "could not convert" in reason:
            reason = "non-numeric cell: " + reason
        raise InputError(f"{path}: {reason}") from None
    if table.size == 0:
        raise InputError(f"{path}: no data rows")
    if expected_columns is not None and table.shape[1] != expected_columns:
        raise InputError(
            f"{path}: expected {expected_columns} columns, found {table.shape[1]}")
    if not np.isfinite(table).all():
        row = int(np.argwhere(~np.isfinite(table))[0][0]) + 1 + skip
        raise InputError(f"{path}: NaN or infinite value in row {row}")
    return table


def integer_labels(values, path, allowed=None):
    """Check that a label column holds integers (within `allowed`, if given)."""
    if not np.array_equal(values, np.round(values)):
        raise InputError(f"{path}: labels must be integers")
    labels = values.astype(np.int64)
    if allowed is not None:
        bad = labels[~np.isin(labels, allowed)]
        if bad.size:
            raise InputError(
                f"{path}: label {bad[0]} outside {min(allowed)}-{max(allowed)}")
    return labels


def read_labelled_csv(path):
    """Read a prepared file: all columns but the last are features, the last the label."""
    table = read_numeric_csv(path)
    if table.shape[1] < 2:
        raise InputError(f"{path}: need at least one feature column and a label column")
    return table[:, :-1].astype(np.float32), integer_labels(table[:, -1], path)


# ---------------------------------------------------------------- preprocessing

def scale_pixels(x):
    """Map pixel values 0..255 to [-1, 1]."""
    return ((np.asarray(x, dtype=np.float32) - 127.5) / 127.5).astype(np.float32)


def relabel_by_size(train_labels, test_labels, train_path="train", test_path="test"):
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
    def num_classes(self):
        return self.counts.size

    @property
    def ratios(self):
        return self.counts.max() / self.counts

    @property
    def minority(self):
        """The imbalanced classes (ir > 1), in label order."""
        return np.flatnonzero(self.ratios > 1)

    @property
    def to_balance(self):
        return self.counts.max() - self.counts

    @property
    def fake_label_probabilities(self):
        """Probability of each class in a fake batch: proportional to to_balance."""
        return self.to_balance / self.to_balance.sum()


def imbalance_of(labels, num_classes=None, path="train"):
    counts = np.bincount(labels, minlength=num_classes or 0)
    imbalance = Imbalance(counts)
    if imbalance.minority.size == 0:
        raise InputError(f"{path}: No imbalanced classes found")
    return imbalance


def sample_fake_labels(rng, imbalance, size):
    """Draw `size` fake labels among the minority classes, one-hot with c columns."""
    labels = rng.choice(imbalance.num_classes, size=size, p=imbalance.fake_label_probabilities)
    return one_hot(labels, imbalance.num_classes)


def smote_balance(features, labels, seed, path="train"):
    """The SMOTE baseline's training set: every class grown to the majority's count
    with imbalanced-learn's SMOTE (the original rows first, then the synthetic ones)."""
    from imblearn.over_sampling import SMOTE

    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    if smallest < 2:
        raise InputError(f"{path}: SMOTE needs at least 2 training rows in every class, "
                         f"the smallest class has {smallest}")
    smote = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
    balanced, balanced_labels = smote.fit_resample(features, labels)
    return balanced.astype(np.float32), np.asarray(balanced_labels, dtype=np.int64)


def one_hot(labels, num_classes):
    return np.eye(num_classes, dtype=np.float32)[labels]


def batch_slices(num_rows, batch_size):
    """Consecutive slices of the (already shuffled) set; the last may be shorter."""
    return [slice(start, min(start + batch_size, num_rows))
            for start in range(0, num_rows, batch_size)]


# ---------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Scores:
    acsa: float
    gm: float
    acc: float
    tpr: np.ndarray
    conf_mat: np.ndarray


def scores(true_labels, predicted_labels, num_classes):
    """ACSA (mean per-class recall), GM (geometric mean of recalls), accuracy."""
    conf_mat = confusion_matrix(true_labels, predicted_labels, labels=np.arange(num_classes))
    support = conf_mat.sum(axis=1)
    tpr = np.divide(np.diag(conf_mat), support, out=np.zeros(num_classes), where=support > 0)
    gm = 0.0 if np.any(tpr == 0) else float(np.exp(np.log(tpr).mean()))
    return Scores(acsa=float(tpr.mean()), gm=gm,
                  acc=float(accuracy_score(true_labels, predicted_labels)),
                  tpr=tpr, conf_mat=conf_mat)


def square_side(num_features):
    """Side of a square image with this many pixels, or None."""
    side = int(round(num_features ** 0.5))
    return side if side * side == num_features else None


# ---------------------------------------------------------------- pictures

def new_figure(rows, cols, cell=1.6):
    """A matplotlib Figure without pyplot: nothing is shown, nothing is kept."""
    from matplotlib.figure import Figure

    return Figure(figsize=(cols * cell, rows * cell))


def save_figure(figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")


def save_image_grid(path, images, shape, row_titles=None):
    """Save images[r][c] (flat, scaled to [-1, 1]) as a grid of greyscale pictures.

    `shape` is the side of square images or (height, width).
    """
    images = np.asarray(images)
    height, width = (shape, shape) if np.isscalar(shape) else tuple(shape)[:2]
    rows, cols = images.shape[:2]
    figure = new_figure(rows, cols)
    axes = figure.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            axis = axes[r][c]
            axis.imshow(images[r, c].reshape(height, width), cmap="gray", vmin=-1, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
        if row_titles is not None:
            axes[r][0].set_ylabel(row_titles[r], fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def save_learning_curve(path, record):
    """Train and test ACSA and GM against step."""
    seen = record.steps_seen >= 0
    steps = record.steps_seen[seen]
    figure = new_figure(1, 2, cell=4)
    for axis, metric in zip(figure.subplots(1, 2), ("acsa", "gm")):
        for suffix, style in (("Tr", "--"), ("Ts", "-")):
            axis.plot(steps, record.arrays[f"{metric}Save{suffix}"][seen], style,
                      label="train" if suffix == "Tr" else "test")
        axis.set_xlabel("step")
        axis.set_ylabel(metric.upper())
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    save_figure(figure, path)
