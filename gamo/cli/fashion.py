"""Convolutional GAMO's command line: fashion_mnist_gamo_main.py (the installed
command gamo-fashion-mnist); the learner is gamo.feature_game.FeatureGamo.

As in the reference, the run stops inside the pass as soon as step reaches
--steps: a default run ends at exactly step 50000, in its 89th round.
The baselines (--method baseline, smote, ...) train F and M together instead, one
update per batch, and stop after steps / 2 batches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gamo.environment import prefer_onednn, prefer_sleeping_threads

prefer_onednn()             # read when the backend is imported, below
prefer_sleeping_threads()

from gamo import sizes  # noqa: E402
from gamo.cli.dense import Settings, add_game_options  # noqa: E402
from gamo.data import batch_slices, check_batch_size, load_dataset, one_hot, training_rows  # noqa: E402
from gamo.errors import run_cli  # noqa: E402
from gamo.images import image_shape_for, parse_image_shape, to_images  # noqa: E402
from gamo.run.folder import claim_output_dir  # noqa: E402
from gamo.run.report import print_summary  # noqa: E402
from gamo.run.settings import new_parser, settings_from  # noqa: E402

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Sequence

    from gamo.data import Dataset
    from gamo.learner import Learner
    from gamo.metrics import Scores
    from gamo.run.loop import Pass, Run


@dataclass
class ConvSettings(Settings):
    """Everything a convolutional GAMO run depends on; saved beside its results."""

    train: str = "fMnist_100_trainData.csv"
    test: str = "fMnist_100_testData.csv"
    image_shape: tuple[int, ...] | None = None
    num_features: int = sizes.NUM_FEATURES

    def positive_integers(self) -> tuple[str, ...]:
        """The dense script's, and the size of F's features."""
        return (*super().positive_integers(), "num_features")


def build_parser() -> argparse.ArgumentParser:
    """The command line of fashion_mnist_gamo_main.py."""
    parser = new_parser("Train convolutional GAMO: a feature extractor learned with the classifier, "
                        "and GAMO in its feature space; defaults are the reference's.")
    defaults = ConvSettings()
    add_game_options(parser, defaults)
    parser.add_argument("--image-shape", type=parse_image_shape, default=None,
                        help="HxW or HxWxC of the flat rows (default: square, one channel)")
    parser.add_argument("--num-features", type=int, default=defaults.num_features,
                        help="size of F's feature vectors")
    return parser


def main(argv: Sequence[str] | None = None, after_batch: Callable[[Run], object] | None = None) -> Scores:
    """Train as the command line says; the final test scores (of the first seed's run, with --seeds)."""
    settings = settings_from(build_parser().parse_args(argv), ConvSettings)
    dataset = load_dataset(settings.train, settings.test, scale=not settings.no_scale,
                           missing_hint="fMNIST_process.py")
    check_batch_size(settings.batch_size, dataset, settings.train)
    settings.image_shape = image_shape_for(dataset.x_train.shape[1], settings.image_shape, settings.train)
    from gamo.group import train_as_asked  # the backend starts here, once the inputs are checked

    return train_as_asked(settings, lambda one: new_run(one, dataset), after_batch)


def new_run(settings: ConvSettings, dataset: Dataset) -> tuple[Run, Iterator[Pass]]:
    """A run of the settings' seed in its claimed folder (resumed if asked), and its
    passes: the images for the baselines, GAMO's rounds (F+M epoch, features, game) else."""
    from gamo import nets
    from gamo.backend import jit_as_asked
    from gamo.feature_game import FeatureGamo
    from gamo.game import build_learner
    from gamo.run.loop import Pass, Run, class_counts, evaluation
    from gamo.seeding import set_random_seed

    settings.jit = jit_as_asked(settings.jit, settings.steps, settings.num_features)
    claim_output_dir(settings)
    set_random_seed(settings.seed)
    image_shape = settings.image_shape or ()
    extractor = nets.build_feature_extractor(image_shape, settings.num_features)
    # ClassifierOnly for the baselines, else FeatureGamo over build_learner's Gamo: settings.is_baseline
    # decides, which mypy cannot follow (the ignores below).
    learner: Learner
    if settings.is_baseline:
        learner = build_learner(settings, settings.num_features, dataset.imbalance, extractor=extractor)
    else:
        learner = FeatureGamo(extractor, build_learner(settings, settings.num_features, dataset.imbalance),  # type: ignore[arg-type]
                              settings.batch_size, jit=settings.jit)
    rng = np.random.default_rng(settings.seed)
    x, y = training_rows(dataset, rng, settings.method, settings.seed, settings.train)
    print_summary(settings, dataset, y, more=(
        f"images {'x'.join(map(str, image_shape))} -> {settings.num_features} features"))
    images, test_images = to_images(x, image_shape), to_images(dataset.x_test, image_shape)
    onehot, slices = one_hot(y, learner.num_classes), batch_slices(len(y), settings.batch_size)
    if settings.is_baseline:
        evaluate = evaluation(learner, dataset, lambda rows: to_images(rows, image_shape))
    else:
        evaluate = learner.evaluation(images, y, test_images, dataset.y_test)  # type: ignore[union-attr]
    run = Run(settings, learner, evaluate, rng, class_counts(dataset, y))
    if settings.resume:
        run.resume()
    if settings.is_baseline:
        return run, itertools.repeat(Pass(images, onehot, slices))
    return run, learner.rounds(images, y, onehot, slices, rng,  # type: ignore[union-attr]
                               resumed_mid_pass=(run.step // 2) % len(slices) != 0)


def cli() -> None:
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)
