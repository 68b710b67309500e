"""What a run tells people while it trains: the summary before it, a progress
bar, TensorBoard scalars, and the versions it ran with."""

from __future__ import annotations

import atexit
import sys
from typing import TYPE_CHECKING

import numpy as np

from gamo.environment import keras_backend_name
from gamo.errors import InputError, one_line
from gamo.methods import method_named

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tqdm.auto import tqdm

    from gamo.data import Dataset
    from gamo.files import PathLike
    from gamo.run.settings import TrainingSettings


def print_summary(settings: TrainingSettings, dataset: Dataset, train_labels: np.ndarray,
                  more: str | None = None) -> None:
    """The run's seed, data, classes, method and output folder, before training."""
    method = getattr(settings, "method", "")
    counts = dataset.imbalance.counts
    print(f"seed {settings.seed}; {len(dataset.y_train)} training rows, {len(dataset.y_test)} test "
          f"rows, {dataset.x_train.shape[1]} features, {counts.size} classes")
    print("classes by size (new label: original label x count): "
          + ", ".join(f"{k}: {o} x {n}" for k, (o, n) in enumerate(zip(dataset.original_labels, counts))))
    if len(train_labels) != len(dataset.y_train):
        print(f"{method}: {len(train_labels)} training rows, {np.bincount(train_labels).tolist()} per class")
    if more:
        print(more)
    print(f"method: {method_named(method).description if method else 'GAMO'}; minority classes: "
          f"{dataset.imbalance.minority.tolist()}; output folder {settings.out_dir}; "
          f"Keras backend {keras_backend_name()}")


def progress_bar(total: int, done: int = 0) -> tqdm:
    """A tqdm bar of `total` batches, `done` of them already. Its clock restarts
    after the first batch, which holds the step's compilation: the rate and the
    time left are those of the batches after it (elapsed counts from there too)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="batch", dynamic_ncols=True, mininterval=1.0)
    bar.update(done)

    def first_update(n: float | None = 1) -> bool | None:
        del bar.update                   # the class's update from now on
        shown = bar.update(n)
        finished = bar.n
        bar.reset()                      # timers and rate estimates from now
        bar.n = bar.last_print_n = bar.initial = finished
        bar.refresh()
        return shown

    bar.update = first_update
    return bar


class ScalarWriter:
    """Scalars as TensorBoard event files, written with tensorboardX: pure Python,
    so a JAX or PyTorch run does not load TensorFlow (whose tf.summary also
    needs the tensorboard package) just to log; TensorBoard reads its files."""

    def __init__(self, log_dir: PathLike) -> None:
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

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        """Each finite scalar at `step`."""
        for name, value in scalars.items():
            if np.isfinite(value):
                self.writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        """Write out what is queued and close the files."""
        self.writer.close()      # a second close does nothing


def library_versions() -> dict[str, str]:
    """Versions of the numerical libraries this process has loaded."""
    return {name: sys.modules[name].__version__ for name in ("tensorflow", "jax", "torch", "keras", "numpy")
            if name in sys.modules}
