"""The ground floor of every script: data, metrics, settings, records,
checkpoints, stop requests and pictures, for GAMO on feature vectors and for
the scripts built on it.

Everything here is plain NumPy / scikit-learn (no TensorFlow), so the data
preparation scripts can import it without paying for a framework start-up.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix

try:
    import fcntl
except ImportError:          # not on Windows: no folder locks there
    fcntl = None


class InputError(Exception):
    """A problem with the user's input; reported as one line, exit status 2."""


class RunError(Exception):
    """A run that cannot go on (out of memory, say); reported as one line, exit status 1."""


class WriteError(RunError):
    """An output that could not be written (disk full, permission lost); reported
    as one line, exit status 1. Finished files and the previous checkpoint stay."""


class NotFinite(RunError):
    """A player's loss (or a weight about to be saved) became NaN or infinite;
    reported as one line, exit status 3. No checkpoint is written with it: the
    newest one is the last good state."""


def run_cli(main, argv=None):
    """Run a script's main(argv); turn input errors into one line and exit 2,
    failed writes into one line and exit 1, a non-finite loss into one line and exit 3."""
    try:
        return main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except NotFinite as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def one_line(error):
    """An exception's message as one line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def keras_backend_name():
    """The backend Keras will run on, as Keras chooses it (KERAS_BACKEND, then
    ~/.keras/keras.json, then TensorFlow), without importing Keras."""
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(config.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_backend_quietly():
    """Import TensorFlow quietly when it is Keras' backend (JAX and PyTorch
    start quietly)."""
    return import_tensorflow_quietly() if keras_backend_name() == "tensorflow" else None


PROJECT_DIR = Path(__file__).resolve().parent
# The commands `pip install` makes (pyproject.toml's [project.scripts]).
COMMANDS = ("gamo-dense", "gamo-fashion-mnist", "gamo2pix", "gamo-mnist-process", "gamo-fmnist-process")


def running_our_script():
    """True when the process is one of this project's scripts, benchmarks or
    installed commands (not a user's program that imports gamo, nor a test runner)."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is None:
        return False
    return Path(main).resolve().parent in (PROJECT_DIR, PROJECT_DIR / "bench") or Path(main).name in COMMANDS


def import_tensorflow_quietly():
    """Import TensorFlow; in this project's scripts, let it probe for devices with
    file descriptor 2 muted.

    Its C++ start-up lines (CUDA probing, absl notices) ignore
    TF_CPP_MIN_LOG_LEVEL; muting them keeps errors to one line. Python
    exceptions still propagate normally. Imported from another program (`import
    gamo`), nothing of the process is changed: TensorFlow starts as it would.
    """
    if "tensorflow" in sys.modules or not running_our_script():
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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

def current_umask():
    """The process's umask, read without changing it where Linux tells it (/proc);
    elsewhere set and put back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The temporary name keeps the extension (writers such as Keras and
    matplotlib pick the format from it); on failure it is removed, so a
    half-written file never appears under the final name.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())   # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({error.strerror or one_line(error)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_npz(path, arrays):
    """np.savez's format with no time stamps and no pickled objects: the same
    arrays always give the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def save_npz(path, **arrays):
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays)


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

    Raises InputError naming the file for a missing file, a file that is not
    UTF-8 text, an empty file, non-numeric cells, rows of different lengths or
    NaN / infinite values.
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
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise InputError(f"{path}: file is empty")
    skip = 0
    if not any(_looks_numeric(cell) for cell in first.strip().split(",")):
        # A row with no number at all is a header; a row with some bad cells
        # is data, and the parser below names the bad cell.
        print(f"note: {path}: skipping header row", file=sys.stderr)
        skip = lines.index(first) + 1
    rows = [line for line in lines[skip:] if line.strip()]
    if not rows:
        raise InputError(f"{path}: no data rows")
    try:
        table = np.loadtxt(rows, delimiter=",", ndmin=2, dtype=np.float64, comments=None)
    except ValueError as error:
        reason = one_line(error)
        if "could not convert" in reason:
            reason = "non-numeric cell: " + reason
        raise InputError(f"{path}: {reason}") from None
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
    if np.abs(values).max() >= 2 ** 31:
        raise InputError(f"{path}: label {values[np.argmax(np.abs(values))]:g} out of range")
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


def save_image_grid(path, images, shape, row_titles=None, cell=1.6):
    """Save images[r][c] (flat, scaled to [-1, 1]) as a grid of greyscale pictures.

    `shape` is the side of square images or (height, width); `cell`, inches per picture.
    """
    images = np.asarray(images)
    height, width = (shape, shape) if np.isscalar(shape) else tuple(shape)[:2]
    rows, cols = images.shape[:2]
    figure = new_figure(rows, cols, cell)
    axes = figure.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            axis = axes[r][c]
            axis.imshow(images[r, c].reshape(height, width), cmap="gray", vmin=-1, vmax=1,
                        interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        if row_titles is not None:
            axes[r][0].set_ylabel(row_titles[r], fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def save_learning_curve(path, record):
    """Train and test ACSA and GM against step, and the players' losses (if recorded)."""
    seen = record.steps_seen >= 0
    steps = record.steps_seen[seen]
    panels = 3 if record.loss_names else 2
    figure = new_figure(1, panels, cell=4)
    axes = figure.subplots(1, panels)
    for axis, metric in zip(axes, ("acsa", "gm")):
        for suffix, style in (("Tr", "--"), ("Ts", "-")):
            axis.plot(steps, record.arrays[f"{metric}Save{suffix}"][seen], style,
                      label="train" if suffix == "Tr" else "test")
        axis.set_xlabel("step")
        axis.set_ylabel(metric.upper())
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend()
    if record.loss_names:
        plot_losses(axes[2], steps, {name: record.arrays[f"loss_{name}"][seen] for name in record.loss_names})
    figure.tight_layout()
    save_figure(figure, path)


def plot_losses(axis, steps, losses):
    """Each player's mean loss against step; the generator's per-class losses as
    their mean over classes with the range of classes shaded."""
    generator = {opponent: np.array([values for name, values in losses.items()
                                     if name.startswith(f"G_{opponent}_")]) for opponent in ("M", "D")}
    for name, values in losses.items():
        if not name.startswith("G_"):
            axis.plot(steps, values, label=name)
    for opponent, per_class in generator.items():
        if per_class.size and np.isfinite(per_class).any():
            with warnings.catch_warnings():      # an interval without batches is NaN for every class
                warnings.simplefilter("ignore", RuntimeWarning)
                low, mean, high = np.nanmin(per_class, 0), np.nanmean(per_class, 0), np.nanmax(per_class, 0)
            line, = axis.plot(steps, mean, "--", label=f"G vs {opponent} (mean of {len(per_class)} classes)")
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("mean loss since the previous evaluation")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7)


def save_losses_csv(path, record):
    """losses.csv: a row per evaluation: the step, then each loss's mean over
    the batches since the previous evaluation."""
    seen = record.steps_seen >= 0
    columns = [record.steps_seen[seen].astype(float)] + [record.arrays[f"loss_{name}"][seen]
                                                         for name in record.loss_names]
    save_loss_table(path, ["step"], record.loss_names, np.column_stack(columns))


def save_loss_table(path, integer_columns, loss_names, rows):
    """A CSV with a header: the integer columns (step, class), then the losses."""
    with atomic_path(path) as tmp:
        np.savetxt(tmp, rows, delimiter=",", fmt=["%d"] * len(integer_columns) + ["%.7g"] * len(loss_names),
                   header=",".join([*integer_columns, *loss_names]), comments="")


# ---------------------------------------------------------------- data sets

@dataclass
class Dataset:
    """A relabelled train/test pair: class 0 is the smallest, c-1 the largest."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    imbalance: Imbalance
    original_labels: np.ndarray     # original label of each new class


def load_dataset(train_path, test_path, scale=True, missing_hint="MNIST_process.py"):
    """The relabelled, scaled train and test sets; test_path None: no test set (empty)."""
    for path in filter(None, (train_path, test_path)):
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found; run 'python {missing_hint}' to "
                             "prepare it, or pass --train/--test")
    x_train, y_train = read_labelled_csv(train_path)
    x_test, y_test = read_labelled_csv(test_path) if test_path else (x_train[:0], y_train[:0])
    if x_train.shape[1] != x_test.shape[1]:
        raise InputError(f"{test_path}: {x_test.shape[1]} features, but {train_path} "
                         f"has {x_train.shape[1]}")
    y_train, y_test, original = relabel_by_size(y_train, y_test, train_path, test_path)
    imbalance = imbalance_of(y_train, path=train_path)
    for k in np.flatnonzero(imbalance.counts == 1):
        print(f"warning: {train_path}: class {original[k]} has a single training point; every "
              "sample generated for it is that point", file=sys.stderr)
    if scale:
        x_train, x_test = scale_pixels(x_train), scale_pixels(x_test)
    return Dataset(x_train, y_train, x_test, y_test, imbalance, original)


def training_rows(dataset, rng, smote_seed=None, path="train"):
    """The rows a run trains on: SMOTE-balanced if smote_seed is given, then
    shuffled once with the run's generator, as the reference shuffles once."""
    x, y = dataset.x_train, dataset.y_train
    if smote_seed is not None:
        x, y = smote_balance(x, y, smote_seed, path)
    order = rng.permutation(len(y))
    return x[order], y[order]


def print_summary(settings, dataset, train_labels, method, more=None):
    """The run's seed, data, classes, method and output folder, before training."""
    counts = dataset.imbalance.counts
    print(f"seed {settings.seed}; {len(dataset.y_train)} training rows, {len(dataset.y_test)} test "
          f"rows, {dataset.x_train.shape[1]} features, {counts.size} classes")
    print("classes by size (new label: original label x count): "
          + ", ".join(f"{k}: {o} x {n}" for k, (o, n) in enumerate(zip(dataset.original_labels, counts))))
    if len(train_labels) != len(dataset.y_train):
        print(f"SMOTE: {len(train_labels)} training rows, {np.bincount(train_labels).tolist()} per class")
    if more:
        print(more)
    print(f"method: {method}; minority classes: {dataset.imbalance.minority.tolist()}; "
          f"output folder {settings.out_dir}; Keras backend {keras_backend_name()}")


# ---------------------------------------------------------------- the record

RECORD_KEYS = ("acsaSaveTr", "gmSaveTr", "accSaveTr", "acsaSaveTs", "gmSaveTs", "accSaveTs",
               "confMatSaveTr", "confMatSaveTs", "tprSaveTr", "tprSaveTs")


LOSS_PLAYERS = {"M_real": "the classifier M on real rows", "M_fake": "the classifier M on generated rows",
                "D_real": "the discriminator D on real rows",
                "D_fake": "the discriminator D on generated rows",
                "FM": "the feature extractor F (through the fixed M)", "loss": "the VAE",
                "reconstruction": "the VAE's reconstruction term", "KL": "the VAE's KL term"}


def describe_loss(name):
    """Whose loss `name` is, in words: G_M_3 -> the generator of class 3 against M."""
    if name in LOSS_PLAYERS:
        return LOSS_PLAYERS[name]
    parts = name.split("_")
    if len(parts) == 3 and parts[0] == "G":
        return f"the generator of class {parts[2]} against {parts[1]}"
    return f"the {name} loss"


class LossMeans:
    """The players' losses of every batch since the last evaluation, summed per
    name; `take()` gives their means and starts the next interval."""

    def __init__(self, names):
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.sums = np.zeros(len(self.names))
        self.counts = np.zeros(len(self.names), np.int64)
        self.latest = {}

    def add(self, losses, step, checkpoint_root, where=""):
        """Add one batch's {name: value or array of values}; raise NotFinite
        naming the player, `where` and the step, and the last good checkpoint
        in `checkpoint_root`, if any is NaN or infinite."""
        for name, value in losses.items():
            values = np.asarray(value, np.float64).ravel()
            if not np.isfinite(values).all():
                bad = values[~np.isfinite(values)][0]
                raise NotFinite(f"{where}step {step}: the loss of {describe_loss(name)} ({name}) is {bad}; "
                                f"stopped ({newest_checkpoint_line(checkpoint_root)}, try a lower --lr or "
                                "check the data)")
            i = self.index[name]
            self.sums[i] += values.sum()
            self.counts[i] += values.size
            if values.size:
                self.latest[name] = values[-1]

    def means(self):
        """Each name's mean since the previous take (NaN where no batch gave one)."""
        means = np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)
        return dict(zip(self.names, means))

    def take(self):
        """The means, and a new interval begins."""
        means = self.means()
        self.sums[:], self.counts[:] = 0, 0
        return means

    def state(self):
        return {"loss_sums": self.sums, "loss_counts": self.counts}

    def restore(self, arrays):
        """The sums of a checkpoint (one written before losses were recorded has none)."""
        if "loss_sums" in arrays and len(arrays["loss_sums"]) == len(self.names):
            self.sums[:], self.counts[:] = arrays["loss_sums"], arrays["loss_counts"]


class Record:
    """Scores at every evaluation: index step / eval_every, the final one last;
    with `loss_names`, each loss's mean over the batches since the previous evaluation."""

    def __init__(self, steps, eval_every, num_classes, loss_names=()):
        self.length = math.ceil(steps / eval_every) + 1
        c = num_classes
        self.arrays = {key: np.zeros((self.length, c, c) if "confMat" in key else
                                     (self.length, c) if "tpr" in key else self.length)
                       for key in RECORD_KEYS}
        self.loss_names = tuple(loss_names)
        self.arrays.update({f"loss_{name}": np.full(self.length, np.nan) for name in self.loss_names})
        self.steps_seen = np.full(self.length, -1)

    def store(self, index, step, train, test, losses=None):
        if index >= self.length:
            return
        self.steps_seen[index] = step
        for name, mean in (losses or {}).items():
            self.arrays[f"loss_{name}"][index] = mean
        for suffix, result in (("Tr", train), ("Ts", test)):
            self.arrays[f"acsaSave{suffix}"][index] = result.acsa
            self.arrays[f"gmSave{suffix}"][index] = result.gm
            self.arrays[f"accSave{suffix}"][index] = result.acc
            self.arrays[f"tprSave{suffix}"][index] = result.tpr
            self.arrays[f"confMatSave{suffix}"][index] = result.conf_mat

    def state(self):
        """The record as arrays for a checkpoint."""
        return {"steps_seen": self.steps_seen, **self.arrays}

    def restore(self, arrays):
        """The record of a checkpoint: of this run, or of a run of fewer steps
        being continued (its evaluations fill the first slots; the slot of its
        final evaluation is evaluated again at its step)."""
        stored = len(arrays["steps_seen"])
        self.steps_seen[:stored] = arrays["steps_seen"]
        for key in self.arrays:
            if key in arrays:        # a checkpoint written before losses were recorded has none
                self.arrays[key][:stored] = arrays[key]


# ---------------------------------------------------------------- settings

@dataclass
class TrainingSettings:
    """What every training script shares; each script subclasses it with its own
    defaults and settings. Everything a run depends on is a field: the fields
    are saved beside the results and compared when a run is resumed."""

    train: str = ""
    out_dir: str = ""
    steps: int = 50000
    batch_size: int = 32
    save_every: int = 5000
    lr: float = 0.0002
    beta1: float = 0.5
    seed: int = 0
    no_scale: bool = False
    standard_adam: bool = False       # each Adam state its own step counter (not the reference's)
    jit: bool = True
    resume: bool = False
    tensorboard: str = ""             # a folder for TensorBoard event files, if given

    def positive_integers(self):
        """Names of the settings that must be positive integers."""
        return ("steps", "batch_size", "save_every")

    def validate(self):
        for name in self.positive_integers():
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be a positive integer, "
                                 f"got {getattr(self, name)}")

    def data_files(self):
        """The settings that name input files: compared on resume by their content."""
        return ("train",)

    def uncompared(self):
        """Settings that do not change the run's mathematics: a checkpoint written
        with other values resumes (where the output folder is, how the data files
        are spelled, XLA or not, how often checkpoints are written)."""
        return ("resume", "out_dir", "jit", "save_every", "tensorboard", *self.data_files())


def add_training_options(parser, defaults, train_help, out_dir_help, steps_help, save_help):
    """The options every training script shares, with the script's defaults."""
    parser.add_argument("--train", default=defaults.train, help=train_help)
    parser.add_argument("--out-dir", default=defaults.out_dir, help=out_dir_help)
    parser.add_argument("--steps", type=int, default=defaults.steps, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="rows per batch")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help=save_help)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    parser.add_argument("--beta1", type=float, default=defaults.beta1, help="Adam beta_1")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of weights, shuffling and noise (the reference sets none)")
    parser.add_argument("--no-scale", action="store_true",
                        help="use the values as they are instead of (x - 127.5) / 127.5 "
                             "(for features that are not 0-255 pixels)")
    parser.add_argument("--standard-adam", action="store_true",
                        help="each Adam state counts its own steps (Keras 3's Adam) instead of the "
                             "reference's one step counter shared by every model (Keras 2.2)")
    parser.add_argument("--no-jit", dest="jit", action="store_false",
                        help="compile the steps with tf.function only, without XLA")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in the output folder "
                             "(the settings must be the checkpoint's)")
    parser.add_argument("--tensorboard", metavar="DIR", default=defaults.tensorboard,
                        help="also write the losses and scores as TensorBoard event files into DIR")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, but a flag's (whose default only means 'not given')."""

    def _get_help_string(self, action):
        return action.help if action.nargs == 0 else super()._get_help_string(action)


def new_parser(description):
    """The command line parser of every script and benchmark."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def settings_from(args, cls):
    """The settings of class `cls` from parsed options, validated."""
    settings = cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
    settings.validate()
    return settings


def comparable(settings):
    """Settings as JSON values with the SHA-256 of each data file's content, for
    settings.json and checkpoints, and for comparing with them (first_difference)."""
    values = json.loads(json.dumps(asdict(settings), default=str))
    values.pop("resume", None)
    return {**values, "data_sha256": {name: file_sha256(getattr(settings, name))
                                      for name in settings.data_files()}}


@functools.lru_cache(maxsize=16)
def _sha256_of(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path):
    """The SHA-256 of a file's content ("(missing)" if it cannot be read)."""
    try:
        status = os.stat(path)
        return _sha256_of(os.path.realpath(path), status.st_size, status.st_mtime_ns)
    except OSError:
        return "(missing)"


def first_difference(settings, mine, theirs):
    """'name = theirs there, mine here' for the first setting that changes the
    run's mathematics and differs, or None. A data file differs by its content;
    records written before the data hashes (no data_sha256) are compared by the
    data files' names instead."""
    by_name = set(settings.data_files()) if "data_sha256" not in theirs else set()
    skipped = set(settings.uncompared()) - by_name
    for name, value in mine.items():
        if name == "data_sha256" and isinstance(theirs.get(name), dict):
            for file, digest in value.items():
                if theirs[name].get(file) != digest:
                    return (f"the content of --{file} (SHA-256 {str(theirs[name].get(file))[:12]} there, "
                            f"{digest[:12]} here)")
        elif name not in skipped and name != "data_sha256" and theirs.get(name, "(not set)") != value:
            return f"{name} = {theirs.get(name, '(not set)')!r} there, {value!r} here"
    return None


_HELD_LOCKS = {}     # output folder -> its open lock file, held until this process ends


def lock_output_dir(out_dir):
    """One writer per output folder: an OS lock on <out_dir>/.lock (which names
    the holder's process id), held until this process ends. The OS releases it
    when the process ends in any way, so a killed run leaves no lock behind."""
    key = str(Path(out_dir).resolve())
    if key in _HELD_LOCKS or fcntl is None:
        return
    try:
        stream = open(Path(out_dir) / ".lock", "a+")
    except OSError as error:
        raise WriteError(f"{out_dir}: cannot write its lock file ({error.strerror})") from None
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.seek(0)
        holder = stream.read().strip() or "unknown"
        stream.close()
        raise InputError(f"{out_dir}: in use by a running run (process {holder}); wait for it to end, "
                         "or pass another --out-dir") from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{os.getpid()}\n")
    stream.flush()
    _HELD_LOCKS[key] = stream


def claim_output_dir(settings):
    """Create the output folder; refuse one that holds another run's outputs.

    A run with the same settings may write there again (or resume); a run with
    other settings (say the convolutional script where the dense one wrote)
    would mix its files with the other run's. A new run marks the folder as
    its own in settings.json; a resumed one changes nothing until it trains.
    """
    out_dir = prepare_output_dir(settings.out_dir)
    lock_output_dir(out_dir)
    path = out_dir / "settings.json"
    mine = comparable(settings)
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
            if not isinstance(theirs, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not the settings of a run ({one_line(error)}); pass another "
                             "--out-dir or remove that folder") from None
        difference = first_difference(settings, mine, theirs)
        if difference:
            raise InputError(f"{out_dir}: holds the outputs of another run ({difference}); pass another "
                             "--out-dir or remove that folder")
    if not settings.resume:
        save_json(path, {**mine, "status": "running"})
    return out_dir


# ---------------------------------------------------------------- checkpoints

def write_checkpoint(root, number, variables, state, arrays, keep=2):
    """Write <root>/step_<number>/ (variables.npz, arrays.npz, state.json) into a
    temporary folder, then rename it; keep the newest `keep` checkpoints. A
    failed write leaves the earlier checkpoints as they were (WriteError).
    `variables` is {stable name: variable}: each value is stored under its name."""
    root = Path(root)
    final, tmp = root / f"step_{number}", None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step_{number}-", dir=root))
        write_npz(tmp / "variables.npz", finite_values(variables, number, root))
        write_npz(tmp / "arrays.npz", arrays)
        (tmp / "state.json").write_text(json.dumps(state))
        os.chmod(tmp, 0o777 & ~current_umask())   # mkdtemp makes 0700; give the usual mode
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise WriteError(f"{final}: cannot write the checkpoint ({reason})") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for _, old in sorted(checkpoints_in(root))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def finite_values(variables, number, root):
    """{name: array} of the variables; NotFinite if a weight or state is NaN or infinite
    (a diverged update whose loss was still finite): such a state is never a checkpoint."""
    values = {name: np.asarray(v) for name, v in variables.items()}
    for name, value in values.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NotFinite(f"{root}/step_{number}: {name} is not finite; checkpoint not written "
                            f"({newest_checkpoint_line(root)})")
    return values


def newest_checkpoint_line(root):
    newest = max(checkpoints_in(root), default=None)
    return f"the newest, {newest[1]}, is the last good state" if newest else "no checkpoint had been written"


class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be used as it is."""


# What reading a damaged .npz or .json file, or checking its content, can raise.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile,
              NotImplementedError, RuntimeError, OverflowError, zlib.error, struct.error)


def read_checkpoint(root, settings, variables, check=None):
    """Load the newest usable checkpoint in `root` into `variables`; return
    (folder, state, arrays).

    `variables` is {name: thing with .shape, .dtype and .assign}, or a function
    of the checkpoint's state giving that; check(state, arrays), if given,
    raises KeyError, ValueError or TypeError for content that does not fit.
    Every file is read and checked before anything is assigned. A damaged
    checkpoint is reported in one line and the one before it tried. None
    usable, or one written with other settings: InputError, nothing changed.
    """
    found = sorted(checkpoints_in(root), reverse=True)
    if not found:
        raise InputError(f"{root}: no checkpoint to resume from")
    damaged = []
    for _, folder in found:
        try:
            state, targets, values, arrays = load_checkpoint(folder, settings, variables, check)
        except DamagedCheckpoint as damage:
            print(f"warning: {folder}: damaged ({damage}); trying the checkpoint before it", file=sys.stderr)
            damaged.append(f"{folder.name}: {damage}")
            continue
        for variable, value in zip(targets, values):
            variable.assign(value)
        return folder, state, arrays
    raise InputError(f"{root}: no usable checkpoint ({'; '.join(damaged)}); nothing was changed")


def load_checkpoint(folder, settings, variables, check):
    """Every file of one checkpoint, read and checked: (state, variables, their values, arrays)."""
    try:
        state = json.loads((folder / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
            raise ValueError("no settings in state.json")
    except (OSError, ValueError) as error:
        raise DamagedCheckpoint(f"state.json: {one_line(error)}") from None
    difference = first_difference(settings, comparable(settings), state["settings"])
    if difference:
        raise InputError(f"{folder}: the checkpoint was written by another run ({difference}); resume "
                         "with the checkpoint's settings and data")
    try:
        targets = variables(state) if callable(variables) else variables
        values = read_npz(folder / "variables.npz")
        arrays = read_npz(folder / "arrays.npz")
        if check is not None:
            check(state, arrays)
    except MemoryError:
        raise RunError(f"{folder}: not enough memory to read the checkpoint") from None
    except UNREADABLE as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else one_line(error)
        raise DamagedCheckpoint(reason) from None
    values = values_by_name(folder, targets, values)
    return state, list(targets.values()), values, arrays


def values_by_name(folder, targets, values):
    """The stored values in the order of `targets` ({name: variable}), each
    checked against its variable's shape and kind of number. Checkpoints of the
    first format (arr_0, arr_1, ... in the order of the variables) are read by
    position. A missing or unknown name: InputError (written by another version)."""
    if values and all(key == f"arr_{index}" for index, key in enumerate(values)):
        values = dict(zip(targets, values.values())) if len(values) == len(targets) else values
    missing, unknown = sorted(set(targets) - set(values)), sorted(set(values) - set(targets))
    if missing or unknown:
        raise InputError(f"{folder}: written by another version of the networks or the program "
                         f"(missing: {', '.join(missing[:3]) or 'none'}{' ...' if len(missing) > 3 else ''}; "
                         f"unknown: {', '.join(unknown[:3]) or 'none'}{' ...' if len(unknown) > 3 else ''})")
    for name, target in targets.items():
        value, kind = values[name], np.dtype(standard_dtype(target.dtype)).kind
        if value.shape != tuple(target.shape) or value.dtype.kind != kind:
            raise InputError(f"{folder}: {name} is {value.dtype}{list(value.shape)} there, "
                             f"{standard_dtype(target.dtype)}{list(target.shape)} here")
    return [values[name] for name in targets]


def standard_dtype(dtype):
    """A variable's dtype as NumPy names it (Keras gives strings, TensorFlow DType objects)."""
    return getattr(dtype, "name", str(dtype)).replace("torch.", "")


def read_npz(path):
    """Every array of an .npz file, read in full (no pickled objects)."""
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def checkpoints_in(root):
    """(step, folder) of every complete checkpoint (temporary folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [(int(p.name.split("_")[1]), p) for p in root.iterdir()
            if p.is_dir() and p.name.startswith("step_") and p.name.split("_")[1].isdigit()]


def generator_states(*generators):
    """The bit-generator states of NumPy generators, for state.json."""
    return [generator.bit_generator.state for generator in generators]


def restore_generators(states, *generators):
    if not isinstance(states, list) or len(states) != len(generators):
        raise ValueError(f"expected the states of {len(generators)} random generators")
    for generator, state in zip(generators, states):
        generator.bit_generator.state = state


# ---------------------------------------------------------------- stopping

class Interrupted(Exception):
    """A stop was asked for by a signal; the run has written a checkpoint."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """The signal that asked the run to stop, if any (set by stop_requests)."""

    signum = None

    def raise_if_asked(self):
        if self.signum:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def stop_requests():
    """While inside, SIGINT and SIGTERM only note the request, so the current
    batch ends and the caller can write a checkpoint before stopping."""
    request = StopRequest()

    def note(signum, frame):
        request.signum = signum

    handlers = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def checkpointed_stop(when_stopped):
    """Yield a StopRequest; when the work inside raises Interrupted (after its
    checkpoint), call when_stopped() for the line to print, print it and exit
    with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    try:
        with stop_requests() as request:
            yield request
    except Interrupted as stop:
        print(when_stopped(), file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None


def progress_bar(total, done=0):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="batch", dynamic_ncols=True, mininterval=1.0)
    bar.update(done)
    return bar


class ScalarWriter:
    """Scalars as TensorBoard event files, written with tensorboardX: pure Python,
    so a JAX or PyTorch run does not load TensorFlow (whose tf.summary also
    needs the tensorboard package) just to log; TensorBoard reads its files."""

    def __init__(self, log_dir):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise InputError("--tensorboard: needs the tensorboardX package (pip install tensorboardX, "
                             "or this project's [tensorboard] extra)") from None
        try:
            self.writer = SummaryWriter(str(log_dir), flush_secs=30)
        except OSError as error:
            raise InputError(f"--tensorboard {log_dir}: cannot write there: {one_line(error)}") from None
        atexit.register(self.close)     # its queue is written out on close only; whatever ends the run

    def write(self, step, scalars):
        for name, value in scalars.items():
            if np.isfinite(value):
                self.writer.add_scalar(name, float(value), step)

    def close(self):
        self.writer.close()      # a second close does nothing


def latest_losses(latest, names=("M_real", "D_real", "FM", "loss")):
    """The progress bar's losses: the last batch's M and D (and F+M's, the VAE's)."""
    return {name.removesuffix("_real"): f"{latest[name]:.4f}" for name in names if name in latest}


# ---------------------------------------------------------------- the run

class Run:
    """What a run keeps around the learner: its step, random generators and record,
    the evaluations, pictures, saved models, checkpoints and result files.

    `evaluate()` returns (train Scores, test Scores); `pictures` (a function of a
    random generator giving a grid of flat images) and `image_side` draw a
    picture at each evaluation; `facts` go into settings.json at the end.
    """

    def __init__(self, settings, learner, evaluate, rng, facts=None, pictures=None, image_side=None):
        self.settings, self.learner, self.evaluate, self.rng = settings, learner, evaluate, rng
        self.facts, self.pictures, self.image_side = facts or {}, pictures, image_side
        self.out_dir = Path(settings.out_dir)
        self.step = 0
        self.picture_rng = np.random.default_rng([settings.seed, 1])
        self.record = Record(settings.steps, settings.eval_every, learner.num_classes, learner.loss_names())
        self.losses = LossMeans(learner.loss_names())
        self.board = ScalarWriter(settings.tensorboard) if settings.tensorboard else None
        self.latest = None
        self.started = time.time()

    def add_losses(self, losses, progress=None):
        """One batch's {name: NumPy loss}; NotFinite if one is NaN or infinite."""
        self.losses.add(losses, self.step, self.out_dir / "checkpoints")
        if progress is not None:
            progress.set_postfix(self.postfix(), refresh=False)

    def postfix(self):
        scores = {} if self.latest is None else {"test_acsa": f"{self.latest.acsa:.4f}",
                                                 "test_gm": f"{self.latest.gm:.4f}"}
        return {**scores, **latest_losses(self.losses.latest)}

    def evaluate_and_report(self, index, progress=None, final=False):
        """The final evaluation leaves its interval's sums in the checkpoint: a run
        continued to more steps evaluates that step again, over the same batches."""
        train, test = self.evaluate()
        losses = self.losses.means() if final else self.losses.take()
        self.record.store(index, self.step, train, test, losses)
        self.latest = test
        for name, result in (("train", train), ("test", test)):
            (progress.write if progress is not None else print)(
                f"step {self.step} {name}: ACSA {result.acsa:.4f} GM {result.gm:.4f} "
                f"TPR {np.array2string(result.tpr, precision=4, max_line_width=200)}")
        if progress is not None:
            progress.set_postfix(self.postfix())
        if self.record.loss_names:
            save_losses_csv(self.out_dir / "losses.csv", self.record)
        if self.board is not None:
            scores = {f"{metric}/{name}": getattr(result, metric) for metric in ("acsa", "gm", "acc")
                      for name, result in (("train", train), ("test", test))}
            self.board.write(self.step, {**{f"loss/{name}": mean for name, mean in losses.items()}, **scores})
        if self.pictures is not None and self.image_side:
            path = self.out_dir / "Pictures" / f"{self.out_dir.name}_{self.step}.png"
            save_image_grid(path, self.pictures(self.picture_rng), self.image_side)

    def close_board(self):
        if self.board is not None:
            self.board.close()

    def save_models(self):
        folder = self.out_dir / f"gamo_models_{self.step}"
        for name, model in self.learner.models().items():
            with atomic_path(folder / f"{name}_{self.step}.keras") as tmp:
                model.save(tmp)

    def save_checkpoint(self):
        """Every state variable, the step, the record, the generators and the settings."""
        state = {"step": self.step, "settings": comparable(self.settings),
                 "generators": generator_states(self.rng, self.picture_rng),
                 "wall_time_s": round(time.time() - self.started, 1)}
        write_checkpoint(self.out_dir / "checkpoints", self.step, self.learner.named_state(), state,
                         {**self.record.state(), **self.losses.state()})

    def resume(self):
        """Continue from the newest usable checkpoint in the output folder."""
        folder, state, arrays = read_checkpoint(self.out_dir / "checkpoints", self.settings,
                                                self.learner.named_state(), self.check_checkpoint)
        self.record.restore(arrays)
        self.losses.restore(arrays)
        restore_generators(state["generators"], self.rng, self.picture_rng)
        self.step = state["step"]
        self.started = time.time() - state.get("wall_time_s", 0.0)    # the time to this checkpoint counts
        print(f"resumed from {folder} at step {self.step}")

    def check_checkpoint(self, state, arrays):
        """Raise ValueError, KeyError or TypeError if a checkpoint's state or record do not fit this run."""
        step = state["step"]
        if not isinstance(step, int) or step < 0 or step % 2:
            raise ValueError(f"step {step!r} is not a step of this run")
        if step > self.settings.steps:
            raise InputError(f"{self.out_dir / 'checkpoints'}: the newest checkpoint is at step {step}, past "
                             f"--steps {self.settings.steps}; give --steps {step} or more to continue it")
        wall = state.get("wall_time_s", 0.0)
        if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not 0 <= wall < float("inf"):
            raise ValueError(f"wall_time_s {wall!r} is not a number of seconds")
        restore_generators(state["generators"], np.random.default_rng(), np.random.default_rng())
        length = len(arrays["steps_seen"])      # shorter: a run continued to more steps
        for key, expected in self.record.state().items():
            if key.startswith("loss_") and key not in arrays:     # written before losses were recorded
                continue
            if (arrays[key].shape[1:] != expected.shape[1:] or not 0 < arrays[key].shape[0] <= len(expected)
                    or arrays[key].shape[0] != length or arrays[key].dtype != expected.dtype):
                raise ValueError(f"{key} has shape {arrays[key].shape}, expected {expected.shape}")

    def save_results(self):
        save_npz(self.out_dir / "Record.npz", **self.record.arrays)
        if self.record.loss_names:
            save_losses_csv(self.out_dir / "losses.csv", self.record)
        if self.latest is not None:
            test = self.latest
            save_npz(self.out_dir / "Results.npz", acsa=test.acsa, gm=test.gm, tpr=test.tpr,
                     confMat=test.conf_mat, acc=test.acc)

    def stopped(self):
        """After a stop request: the results so far, and the line to print."""
        self.save_results()
        self.close_board()
        return (f"stopped at step {self.step}: checkpoint in {self.out_dir / 'checkpoints'}/, results so "
                f"far in {self.out_dir}/; continue with the same command and --resume")

    def finish(self):
        """Final evaluation (and picture) at the last index, final models, checkpoint and results."""
        self.evaluate_and_report(self.record.length - 1, final=True)
        self.save_models()
        self.save_checkpoint()
        self.save_results()
        save_learning_curve(self.out_dir / "learning_curve.png", self.record)
        self.close_board()
        wall = round(time.time() - self.started, 1)
        save_json(self.out_dir / "settings.json", {
            **comparable(self.settings), "method": self.settings.method, "status": "finished",
            "final_step": self.step, "batches": self.step // 2,
            "classifier_updates": self.learner.classifier_updates(), **self.facts, "wall_time_s": wall,
            "backend": keras_backend_name(), "threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "all cores"),
            "versions": library_versions()})
        test, out = self.latest, self.out_dir
        print(f"final test ACSA {test.acsa:.4f} GM {test.gm:.4f} acc {test.acc:.4f} after {self.step} steps "
              f"in {wall:.0f} s; outputs in {out}/ (learning curve: {out}/learning_curve.png)")
        return test


def evaluation(learner, dataset, as_inputs=lambda x: x):
    """(train Scores, test Scores) of the learner's classifier on the dataset's
    own (imbalanced) training set and on its test set."""
    c = dataset.imbalance.num_classes

    def evaluate():
        return (scores(dataset.y_train, learner.predict_labels(as_inputs(dataset.x_train)), c),
                scores(dataset.y_test, learner.predict_labels(as_inputs(dataset.x_test)), c))
    return evaluate


def class_counts(dataset, train_labels):
    """The class sizes of the data and of the rows trained on, for settings.json."""
    c = dataset.imbalance.num_classes
    return {"class_counts": dataset.imbalance.counts.tolist(),
            "train_counts": np.bincount(train_labels, minlength=c).tolist()}


def library_versions():
    """Versions of the numerical libraries this process has loaded."""
    return {name: sys.modules[name].__version__ for name in ("tensorflow", "jax", "torch", "keras", "numpy")
            if name in sys.modules}
