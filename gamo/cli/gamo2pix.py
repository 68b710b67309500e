"""GAMO2pix's command line: fashion_mnist_gamo2pix_main.py (the installed
command gamo2pix); the work is in gamo.gamo2pix."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamo.environment import prefer_sleeping_threads

prefer_sleeping_threads()   # read when the backend is imported, below

from gamo.data import load_dataset  # noqa: E402
from gamo.errors import InputError, run_cli  # noqa: E402
from gamo.files import save_json  # noqa: E402
from gamo.gamo2pix import PixRun, load_gamo_models, newest_models_folder  # noqa: E402
from gamo.images import FASHION_MNIST_NAMES, add_picture_options  # noqa: E402
from gamo.run.folder import claim_output_dir  # noqa: E402
from gamo.run.settings import TrainingSettings, add_training_options, comparable, new_parser, settings_from  # noqa: E402
from gamo.seeding import set_random_seed  # noqa: E402


@dataclass
class PixSettings(TrainingSettings):
    train: str = "fMnist_100_trainData.csv"
    out_dir: str = "fMnist_100_ImgGen"
    steps: int = 25000
    save_every: int = 2000
    gamo_dir: str = "fMnist_100_Gamo"
    models: str = ""                  # default: the newest gamo_models_<step> in gamo_dir
    classes: list | None = None       # default: every minority class
    picture_every: int = 500
    num_images: int = 100
    consistent_vae: bool = False
    as_stored: bool = False           # overview.png only: draw the images as the CSV stores them
    names: str = ",".join(FASHION_MNIST_NAMES)   # overview.png only: the original labels' names

    def positive_integers(self):
        return (*super().positive_integers(), "picture_every", "num_images")

    def uncompared(self):
        """How overview.png is drawn, too: a finished run redraws it with --resume; and
        --steps: a run continues to more steps with --resume."""
        return (*super().uncompared(), "as_stored", "names", "steps")


def parse_classes(text):
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated class numbers, got {text!r}") from None


def build_parser():
    defaults = PixSettings()
    parser = new_parser("GAMO2pix: train a VAE decoder per minority class that turns GAMO's generated "
                        "feature vectors into images; defaults are the reference's.")
    add_training_options(parser, defaults, train_help="the training CSV GAMO was trained on",
                         out_dir_help="output folder", steps_help="VAE steps per class (1 per batch)",
                         save_help="save the encoder head and decoder (and a checkpoint) every N steps")
    parser.add_argument("--gamo-dir", default=defaults.gamo_dir,
                        help="output folder of fashion_mnist_gamo_main.py")
    parser.add_argument("--models", default="", help="a gamo_models_<step> folder (default: the "
                        "newest in --gamo-dir)")
    parser.add_argument("--classes", type=parse_classes, default=None,
                        help="minority classes to do, e.g. 0,1 (relabelled numbering: 0 is the "
                             "smallest class; default: all)")
    parser.add_argument("--picture-every", type=int, default=defaults.picture_every,
                        help="write Train_<step>.png and Test_<step>.png every N steps")
    parser.add_argument("--num-images", type=int, default=defaults.num_images,
                        help="generated PNG images to write per class")
    parser.add_argument("--consistent-vae", action="store_true",
                        help="sample with exp(0.5 z_sigma) (z_sigma a log variance, as in the KL "
                             "term) instead of the reference's exp(z_sigma)")
    add_picture_options(parser, "overview.png")
    return parser


def main(argv=None, after_step=None):
    settings = settings_from(build_parser().parse_args(argv), PixSettings)
    if settings.jit is None:       # the VAE's step: XLA unless --no-jit, as before --jit was an option
        settings.jit = True
    dataset = load_dataset(settings.train, None, scale=not settings.no_scale,
                           missing_hint="fMNIST_process.py")
    minority = [int(k) for k in dataset.imbalance.minority]
    classes = settings.classes or minority
    unknown = sorted(set(classes) - set(minority))
    if unknown:
        raise InputError(f"--classes: {unknown} not among the minority classes {minority}")
    folder = Path(settings.models) if settings.models else newest_models_folder(settings.gamo_dir)
    models = load_gamo_models(folder, classes)
    image_shape = tuple(models.extractor.input.shape[1:])
    if int(np.prod(image_shape)) != dataset.x_train.shape[1]:
        raise InputError(f"{settings.train}: {dataset.x_train.shape[1]} features, but "
                         f"{folder}'s F takes images of shape {image_shape}")
    out_dir = claim_output_dir(settings)
    set_random_seed(settings.seed)
    print(f"models from {folder}; classes {classes}; seed {settings.seed}; output folder {out_dir}")
    run = PixRun(settings, dataset, models, classes, image_shape, after_step)
    if settings.resume:
        run.resume()
    run.play()
    save_json(out_dir / "settings.json", {**comparable(settings), "models_folder": str(folder),
                                          "status": "finished", "wall_time_s": run.wall_time()})
    print(f"wrote {out_dir}/Pictures_<k>/, models_<k>/, generated_<k>/ and {out_dir}/overview.png")
    return out_dir


def cli():
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)
