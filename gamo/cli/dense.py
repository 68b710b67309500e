"""GAMO on feature vectors (flattened images or any features): the command line
of dense_gamo_main.py (the installed command gamo-dense).

Each batch runs the reference's whole update sequence (gamo.game.Gamo) in ONE
compiled step. `step` grows by 2 per batch, as in the reference: 50000 steps =
25000 batches. --method chooses what to train (gamo.methods): GAMO, GAMO
without D, or the classifier alone, one update per batch, on the imbalanced
set or on one balanced by an imbalanced-learn over-sampler (SMOTE, random
over-sampling, ADASYN, Borderline-SMOTE).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.data import batch_slices, check_batch_size, load_dataset, one_hot, training_rows
from gamo.errors import InputError, run_cli
from gamo.images import square_side
from gamo.methods import method_named, methods
from gamo.run.folder import claim_output_dir
from gamo.run.report import print_summary
from gamo.run.settings import TrainingSettings, add_training_options, new_parser, parse_seeds, settings_from
from gamo.sizes import LATENT_DIM

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from gamo.data import Dataset
    from gamo.metrics import Scores
    from gamo.run.loop import Pass, Run

# The flags the methods had before --method, kept as its aliases: flag -> method.
METHOD_FLAGS = {"classifier_only": "baseline", "smote": "smote", "no_discriminator": "gamo-nodis"}


@dataclass
class Settings(TrainingSettings):
    """Everything a GAMO run depends on; saved beside its results."""

    train: str = "Mnist_100_trainData.csv"
    test: str = "Mnist_100_testData.csv"
    latent_dim: int = LATENT_DIM
    eval_every: int = 500
    method: str = "gamo"              # a name of gamo.methods.METHODS
    no_discriminator: bool = False    # aliases of --method (gamo-nodis, baseline, smote), kept in the
    classifier_only: bool = False     # settings as before --method: what they say, --method says too
    smote: bool = False
    standard_batchnorm: bool = False  # Keras 3's moving average in the trunk (not the reference's)
    seeds: list[int] | None = None    # several runs in one process (JAX), one per seed

    @property
    def is_baseline(self) -> bool:
        """True for the methods that train the classifier alone (on whatever rows)."""
        return not method_named(self.method).game

    def positive_integers(self) -> tuple[str, ...]:
        """The shared ones, the latent size and the evaluation period."""
        return (*super().positive_integers(), "latent_dim", "eval_every")

    def data_files(self) -> tuple[str, ...]:
        """The training and the test file."""
        return ("train", "test")

    def uncompared(self) -> tuple[str, ...]:
        """--steps too: a finished run continues to more steps with --resume; and --seeds
        (each run of a group is a run of one seed, with its own settings)."""
        return (*super().uncompared(), "steps", "seeds")

    def recorded(self, name: str, record: Mapping[str, Any]) -> Any:
        """A record written before --method says it with the flags that are now its aliases."""
        if name == "method" and name not in record:
            return next((method for flag, method in METHOD_FLAGS.items() if record.get(flag)), "gamo")
        return super().recorded(name, record)

    def for_seed(self, seed: int) -> Settings:
        """The settings of one run of a group: its seed, its folder (--out-dir with
        {seed} filled in, or _seed<k> appended)."""
        folder = self.out_dir.format(seed=seed) if "{seed}" in self.out_dir else f"{self.out_dir}_seed{seed}"
        return replace(self, seed=seed, out_dir=folder, seeds=None)

    def validate(self) -> None:
        """InputError for a setting out of range; the default output folder, if none is given."""
        super().validate()
        for name in ("steps", "eval_every", "save_every"):    # step grows by 2 per batch
            if getattr(self, name) % 2:
                raise InputError(f"--{name.replace('_', '-')}: must be even (step grows by 2 per batch, as "
                                 f"in the reference), got {getattr(self, name)}")
        self.resolve_method()
        if not self.out_dir:
            stem = Path(self.train).name.removesuffix(".csv").removesuffix("_trainData")
            self.out_dir = f"{stem}_{method_named(self.method).folder_suffix}"

    def resolve_method(self) -> None:
        """--method from its aliases (--classifier-only, --smote, --no-discriminator),
        and the aliases' settings from --method; InputError where they disagree."""
        game = method_named(self.method).game
        if self.no_discriminator and (self.classifier_only or self.smote or not game):
            raise InputError("--no-discriminator: applies to GAMO, not to a method that trains the "
                             "classifier alone")
        given = [flag for flag in METHOD_FLAGS if getattr(self, flag)]
        named = {METHOD_FLAGS[flag] for flag in given}
        if len(named) > 1 or (named and self.method not in ("gamo", *named)):
            flags = ", ".join("--" + flag.replace("_", "-") for flag in given)
            raise InputError(f"--method {self.method}: contradicts {flags}")
        if named:
            self.method = named.pop()
        for flag, name in METHOD_FLAGS.items():
            setattr(self, flag, self.method == name)


def add_game_options(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    """Options of the dense and the convolutional GAMO scripts."""
    add_training_options(
        parser, defaults, train_help="training CSV: features, then the label as the last column",
        out_dir_help="output folder (default: the training file's prefix + the method's suffix: "
                     "Mnist_100_Gamo for GAMO, _GamoNoDis, _Baseline, _Smote, ... for the others)",
        steps_help="max_step; step grows by 2 per batch, as in the reference",
        save_help="save the models (and a checkpoint) when step %% N == 0")
    parser.add_argument("--test", default=defaults.test, help="test CSV, same layout")
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim,
                        help="size of the generator's noise input")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help="evaluate (and draw a picture) when step %% N == 0")
    parser.add_argument("--method", choices=list(methods()), default=defaults.method,
                        help="what to train: " + "; ".join(f"{name}: {method.description}"
                                                            for name, method in methods().items())
                             + " (the baselines: the same classifier, optimiser and batches as GAMO's, "
                               "one update per batch)")
    parser.add_argument("--no-discriminator", action="store_true",
                        help="the paper's GAMO-without-D ablation, --method gamo-nodis: D is neither "
                             "trained nor used in the generator's loss")
    parser.add_argument("--classifier-only", action="store_true",
                        help="the paper's baseline, --method baseline: no GAMO, the classifier alone on "
                             "the imbalanced set, one update per batch for steps / 2 batches")
    parser.add_argument("--smote", action="store_true",
                        help="the SMOTE baseline, --method smote: the training set balanced with "
                             "imbalanced-learn's SMOTE, then the classifier alone")
    parser.add_argument("--seeds", type=parse_seeds, default=None, metavar="SEEDS",
                        help="several runs in one process, one per seed (e.g. 0-31 or 0,1,5), every batch "
                             "of all of them one compiled step (KERAS_BACKEND=jax; for accelerators); each "
                             "run writes its usual outputs into --out-dir with {seed} filled in, or _seed<k> "
                             "appended")
    parser.add_argument("--standard-batchnorm", action="store_true",
                        help="Keras 3's single moving average of the trunk's BatchNorm statistics "
                             "instead of the reference's (Keras 2.2: each composite model its own "
                             "zero-debiased average, with n / (n - 1 - epsilon) on the variance)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of dense_gamo_main.py."""
    parser = new_parser("Train GAMO (Generative Adversarial Minority Oversampling) on feature "
                        "vectors; defaults are the reference's.")
    add_game_options(parser, Settings())
    return parser


def main(argv: Sequence[str] | None = None, after_batch: Callable[[Run], object] | None = None) -> Scores:
    """Train as the command line says; the final test scores (of the first seed's run, with --seeds)."""
    settings = settings_from(build_parser().parse_args(argv), Settings)
    dataset = load_dataset(settings.train, settings.test, scale=not settings.no_scale)
    check_batch_size(settings.batch_size, dataset, settings.train)
    from gamo.group import train_as_asked  # the backend starts here, once the inputs are checked

    return train_as_asked(settings, lambda one: new_run(one, dataset), after_batch)


def new_run(settings: Settings, dataset: Dataset) -> tuple[Run, Iterator[Pass]]:
    """A run of the settings' seed in its claimed folder (resumed if asked), and its passes."""
    from gamo.backend import jit_as_asked
    from gamo.game import build_learner
    from gamo.run.loop import Pass, Run, class_counts, evaluation
    from gamo.seeding import set_random_seed

    settings.jit = jit_as_asked(settings.jit, settings.steps, dataset.x_train.shape[1])
    claim_output_dir(settings)
    set_random_seed(settings.seed)
    learner = build_learner(settings, dataset.x_train.shape[1], dataset.imbalance)
    rng = np.random.default_rng(settings.seed)
    x, y = training_rows(dataset, rng, settings.method, settings.seed, settings.train)
    print_summary(settings, dataset, y)
    # GAMO's Players where not settings.is_baseline, which mypy cannot see (build_learner's result).
    if not settings.is_baseline:
        learner.players.set_class_points(x, y)  # type: ignore[union-attr]
    run = Run(settings, learner, evaluation(learner, dataset), rng, class_counts(dataset, y),
              pictures=None if settings.is_baseline else learner.players.sample_grid,  # type: ignore[union-attr]
              image_side=square_side(dataset.x_train.shape[1]))
    if settings.resume:
        run.resume()
    one_pass = Pass(x, one_hot(y, learner.num_classes), batch_slices(len(y), settings.batch_size))
    return run, itertools.repeat(one_pass)


def cli() -> None:
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)
