"""The record of a run: scores at every evaluation (Record.npz, the reference's
keys) and the players' mean losses between evaluations (losses.csv)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gamo.errors import NotFinite
from gamo.files import atomic_path
from gamo.run.checkpoint import newest_checkpoint_line

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    import numpy.typing as npt

    from gamo.files import PathLike
    from gamo.metrics import Scores

RECORD_KEYS = ("acsaSaveTr", "gmSaveTr", "accSaveTr", "acsaSaveTs", "gmSaveTs", "accSaveTs",
               "confMatSaveTr", "confMatSaveTs", "tprSaveTr", "tprSaveTs")


LOSS_PLAYERS = {"M_real": "the classifier M on real rows", "M_fake": "the classifier M on generated rows",
                "D_real": "the discriminator D on real rows",
                "D_fake": "the discriminator D on generated rows",
                "FM": "the feature extractor F (through the fixed M)", "loss": "the VAE",
                "reconstruction": "the VAE's reconstruction term", "KL": "the VAE's KL term"}


def describe_loss(name: str) -> str:
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

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.sums = np.zeros(len(self.names))
        self.counts = np.zeros(len(self.names), np.int64)
        self.latest: dict[str, float] = {}

    def add(self, losses: Mapping[str, npt.ArrayLike], step: int, checkpoint_root: PathLike,
            where: str = "") -> None:
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

    def means(self) -> dict[str, float]:
        """Each name's mean since the previous take (NaN where no batch gave one)."""
        means = np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)
        return dict(zip(self.names, means))

    def take(self) -> dict[str, float]:
        """The means, and a new interval begins."""
        means = self.means()
        self.sums[:], self.counts[:] = 0, 0
        return means

    def state(self) -> dict[str, np.ndarray]:
        """The sums and counts so far, for a checkpoint."""
        return {"loss_sums": self.sums, "loss_counts": self.counts}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The sums of a checkpoint (one written before losses were recorded has none)."""
        if "loss_sums" in arrays and len(arrays["loss_sums"]) == len(self.names):
            self.sums[:], self.counts[:] = arrays["loss_sums"], arrays["loss_counts"]


class Record:
    """Scores at every evaluation: index step / eval_every, the final one last;
    with `loss_names`, each loss's mean over the batches since the previous evaluation."""

    def __init__(self, steps: int, eval_every: int, num_classes: int, loss_names: Iterable[str] = ()) -> None:
        self.length = math.ceil(steps / eval_every) + 1
        c = num_classes
        self.arrays = {key: np.zeros((self.length, c, c) if "confMat" in key else
                                     (self.length, c) if "tpr" in key else self.length)
                       for key in RECORD_KEYS}
        self.loss_names = tuple(loss_names)
        self.arrays.update({f"loss_{name}": np.full(self.length, np.nan) for name in self.loss_names})
        self.steps_seen = np.full(self.length, -1)

    def store(self, index: int, step: int, train: Scores, test: Scores,
              losses: Mapping[str, float] | None = None) -> None:
        """The scores (and mean losses) of the evaluation at `index`; past the end, nothing."""
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

    def state(self) -> dict[str, np.ndarray]:
        """The record as arrays for a checkpoint."""
        return {"steps_seen": self.steps_seen, **self.arrays}

    def restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The record of a checkpoint: of this run, or of a run of fewer steps
        being continued (its evaluations fill the first slots; the slot of its
        final evaluation is evaluated again at its step)."""
        stored = len(arrays["steps_seen"])
        self.steps_seen[:stored] = arrays["steps_seen"]
        for key in self.arrays:
            if key in arrays:        # a checkpoint written before losses were recorded has none
                self.arrays[key][:stored] = arrays[key]


def save_losses_csv(path: PathLike, record: Record) -> None:
    """losses.csv: a row per evaluation: the step, then each loss's mean over
    the batches since the previous evaluation."""
    seen = record.steps_seen >= 0
    columns = [record.steps_seen[seen].astype(float)] + [record.arrays[f"loss_{name}"][seen]
                                                         for name in record.loss_names]
    save_loss_table(path, ["step"], record.loss_names, np.column_stack(columns))


def save_loss_table(path: PathLike, integer_columns: Sequence[str], loss_names: Sequence[str],
                    rows: npt.ArrayLike) -> None:
    """A CSV with a header: the integer columns (step, class), then the losses."""
    with atomic_path(path) as tmp:
        np.savetxt(tmp, rows, delimiter=",", fmt=["%d"] * len(integer_columns) + ["%.7g"] * len(loss_names),
                   header=",".join([*integer_columns, *loss_names]), comments="")


def latest_losses(latest: Mapping[str, float],
                  names: Iterable[str] = ("M_real", "D_real", "FM", "loss")) -> dict[str, str]:
    """The progress bar's losses: the last batch's M and D (and F+M's, the VAE's)."""
    return {name.removesuffix("_real"): f"{latest[name]:.4f}" for name in names if name in latest}
