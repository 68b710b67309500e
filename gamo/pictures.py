"""Pictures: image grids, learning curves, the players' losses, PNG files.
matplotlib without pyplot (nothing is shown), OpenCV for single images."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gamo.files import atomic_path
from gamo.images import upright

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from gamo.files import PathLike
    from gamo.run.record import Record


def new_figure(rows: int, cols: int, cell: float = 1.6) -> Figure:
    """A matplotlib Figure without pyplot: nothing is shown, nothing is kept."""
    from matplotlib.figure import Figure

    return Figure(figsize=(cols * cell, rows * cell))


def save_figure(figure: Figure, path: PathLike) -> None:
    """Save a figure atomically, in the format its file name's extension names (PNG if none)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")


def save_image_grid(path: PathLike, images: npt.ArrayLike, shape: int | Sequence[int],
                    row_titles: Sequence[str] | None = None, cell: float = 1.6) -> None:
    """Save images[r][c] (flat, scaled to [-1, 1]) as a grid of greyscale pictures.

    `shape` is the side of square images or (height, width); `cell`, inches per picture.
    """
    images = np.asarray(images)
    # np.isscalar does not narrow the type: mypy still sees an int in tuple().
    height, width = (shape, shape) if np.isscalar(shape) else tuple(shape)[:2]  # type: ignore[arg-type]
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


def save_learning_curve(path: PathLike, record: Record) -> None:
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


def plot_losses(axis: Axes, steps: np.ndarray, losses: Mapping[str, np.ndarray]) -> None:
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


def write_pngs(folder: Path, images: np.ndarray) -> None:
    """Each image as an 8-bit PNG file (OpenCV), from [-1, 1]."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)
    for index, image in enumerate(pixels):
        with atomic_path(folder / f"{index:04d}.png") as tmp:
            if not cv2.imwrite(tmp, image):
                raise OSError(f"cannot write {folder / f'{index:04d}.png'}")


def save_overview(path: PathLike, generated: Sequence[np.ndarray], real: Sequence[np.ndarray],
                  titles: Sequence[str], image_shape: Sequence[int], as_stored: bool = False,
                  columns: int = 6) -> None:
    """A row per class: generated images, then real ones; upright unless as_stored."""
    columns = min([columns] + [len(images) for images in (*generated, *real)])
    rows = [np.concatenate([gen[:columns], rea[:columns]]).reshape(2 * columns, -1)
            for gen, rea in zip(generated, real)]
    shape = image_shape[:2]
    if not as_stored:
        rows, shape = [upright(row, image_shape) for row in rows], (image_shape[1], image_shape[0])
    save_image_grid(path, np.stack(rows), shape, row_titles=titles)
