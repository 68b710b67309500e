"""GAMO on feature vectors (flattened images or any features): the training loop.

Each batch runs the reference's whole update sequence in ONE compiled step:
M on the real batch, D on the real batch, a fake batch from the generator (trunk
in inference mode), M and D on the fake batch, then for every minority class one
generator update against M and one against D (trunk in training mode).
`step` grows by 2 per batch, as in the reference: 50000 steps = 25000 batches.
--classifier-only and --smote train the paper's baselines instead: the
classifier alone, one update per batch, on the imbalanced or the SMOTE-balanced set.

    python MNIST_process.py          # writes Mnist_100_trainData.csv, ...
    python dense_gamo_main.py        # trains, writes Mnist_100_Gamo/
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dense_suppli import (
    Imbalance,
    InputError,
    atomic_path,
    batch_slices,
    imbalance_of,
    import_tensorflow_quietly,
    one_hot,
    prepare_output_dir,
    read_labelled_csv,
    relabel_by_size,
    run_cli,
    sample_fake_labels,
    save_image_grid,
    save_json,
    save_learning_curve,
    save_npz,
    scale_pixels,
    scores,
    smote_balance,
    square_side,
)

tf = import_tensorflow_quietly()   # before Keras, which imports TensorFlow

import keras  # noqa: E402

import dense_net  # noqa: E402
from dense_net import (  # noqa: E402
    AdamStates,
    CallSiteStatistics,
    as_tensors,
    batch_spec,
    inputs_and_targets_spec,
    mse,
    statistics_of_call_site,
    update,
)

# ====================================================================== settings

@dataclass
class TrainingSettings:
    """What every training script here shares (GAMO, convolutional GAMO, GAMO2pix)."""

    batch_size: int = 32
    lr: float = 0.0002
    beta1: float = 0.5
    seed: int = 0
    no_scale: bool = False
    standard_adam: bool = False       # each Adam state its own step counter (not the reference's)
    jit: bool = True
    resume: bool = False


@dataclass
class Settings(TrainingSettings):
    """Everything a run depends on; saved beside its results."""

    train: str = "Mnist_100_trainData.csv"
    test: str = "Mnist_100_testData.csv"
    out_dir: str = ""                 # default: <train prefix>_Gamo, e.g. Mnist_100_Gamo
    steps: int = 50000
    latent_dim: int = dense_net.LATENT_DIM
    eval_every: int = 500
    save_every: int = 5000
    no_discriminator: bool = False
    classifier_only: bool = False     # the baseline: M alone (with F in the conv script)
    smote: bool = False               # the SMOTE baseline: M alone on a SMOTE-balanced set
    standard_batchnorm: bool = False  # Keras 3's moving average in the trunk (not the reference's)


# Settings that may differ between a checkpoint and the run that resumes it.
NOT_COMPARED_ON_RESUME = ("resume",)


def add_common_options(parser, defaults):
    """Options shared by the dense and the convolutional GAMO scripts."""
    parser.add_argument("--train", default=defaults.train,
                        help="training CSV: features, then the label as the last column")
    parser.add_argument("--test", default=defaults.test, help="test CSV, same layout")
    parser.add_argument("--out-dir", default="", help="output folder (default: the training "
                        "file's prefix + '_Gamo', e.g. Mnist_100_Gamo)")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help="max_step; step grows by 2 per batch, as in the reference")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim,
                        help="size of the generator's noise input")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help="evaluate (and draw a picture) when step %% N == 0")
    parser.add_argument("--save-every", type=int, default=defaults.save_every,
                        help="save the models when step %% N == 0")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    parser.add_argument("--beta1", type=float, default=defaults.beta1, help="Adam beta_1")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of weights, shuffling and noise (the reference sets none)")
    parser.add_argument("--no-discriminator", action="store_true",
                        help="the paper's GAMO-without-D ablation: D is neither trained nor "
                             "used in the generator's loss")
    parser.add_argument("--classifier-only", action="store_true",
                        help="the paper's baseline: no GAMO, the classifier alone on the imbalanced "
                             "set, one update per batch for steps / 2 batches")
    parser.add_argument("--smote", action="store_true",
                        help="the SMOTE baseline: the training set balanced with imbalanced-learn's "
                             "SMOTE, then the classifier alone as with --classifier-only")
    add_standard_adam_option(parser)
    parser.add_argument("--standard-batchnorm", action="store_true",
                        help="Keras 3's single moving average of the trunk's BatchNorm statistics "
                             "instead of the reference's (Keras 2.2: each composite model its own "
                             "zero-debiased average, with n / (n - 1 - epsilon) on the variance)")
    parser.add_argument("--no-jit", dest="jit", action="store_false",
                        help="compile the step with tf.function only, without XLA")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in the output folder "
                             "(the settings must be the checkpoint's)")


def add_standard_adam_option(parser):
    parser.add_argument("--standard-adam", action="store_true",
                        help="each Adam state counts its own steps (Keras 3's Adam) instead of the "
                             "reference's one step counter shared by every model (Keras 2.2)")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train GAMO (Generative Adversarial Minority Oversampling) on feature "
                    "vectors; defaults are the reference's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common_options(parser, Settings())
    parser.add_argument("--no-scale", action="store_true",
                        help="use the features as they are instead of (x - 127.5) / 127.5")
    return parser


def settings_from(args, cls=Settings):
    settings = cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__
                      if hasattr(args, name)})
    if settings.no_discriminator and is_baseline(settings):
        raise InputError("--no-discriminator: applies to GAMO, not to --classifier-only or --smote")
    if not settings.out_dir:
        settings.out_dir = default_out_dir(settings.train, method_suffix(settings))
    for name in ("steps", "batch_size", "latent_dim", "eval_every", "save_every"):
        if getattr(settings, name) < 1:
            raise InputError(f"--{name.replace('_', '-')}: must be a positive integer")
    return settings


def is_baseline(settings):
    """True when the classifier learns alone (no generator, no discriminator)."""
    return settings.classifier_only or settings.smote


def method_name(settings):
    if settings.smote:
        return "the classifier alone on the SMOTE-balanced set"
    if settings.classifier_only:
        return "the classifier alone"
    return "GAMO without D" if settings.no_discriminator else "GAMO"


def method_suffix(settings):
    return "Smote" if settings.smote else "Baseline" if settings.classifier_only else "Gamo"


def default_out_dir(train_path, suffix="Gamo"):
    stem = Path(train_path).name.removesuffix(".csv").removesuffix("_trainData")
    return f"{stem}_{suffix}"


# ====================================================================== data

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


def shuffle_once(x, y, rng):
    """The reference shuffles the training set once, before training."""
    order = rng.permutation(len(y))
    return x[order], y[order]


def training_rows(run, dataset, more_summary=None):
    """The rows the run trains on, shuffled once with the run's generator
    (SMOTE-balanced for --smote). Prints the run's summary (and `more_summary`)
    and records the class counts for settings.json."""
    settings = run.settings
    x, y = dataset.x_train, dataset.y_train
    if settings.smote:
        x, y = smote_balance(x, y, settings.seed, settings.train)
    x, y = shuffle_once(x, y, run.rng)
    print_summary(dataset, settings, y)
    if more_summary:
        print(more_summary)
    run.facts.update(class_counts=dataset.imbalance.counts.tolist(),
                     train_counts=np.bincount(y, minlength=dataset.imbalance.num_classes).tolist())
    return x, y


# ====================================================================== the game

class Learner:
    """What a run needs of whatever learns: labels predicted in chunks, update counts."""

    def predict_labels(self, x, chunk=4096):
        return np.concatenate([self._predict_fn(x[start:start + chunk]).numpy()
                               for start in range(0, len(x), chunk)])

    def classifier_updates(self):
        """How many updates the classifier's optimiser has applied."""
        return int(self.opt_classifier.iterations.numpy())


class BatchDraws(NamedTuple):
    """The random draws of one batch (rows b, minority classes m, g rows each)."""

    real_targets: np.ndarray    # (b, 1): D's targets for the real batch, 1 - U(0, 0.1)
    fake_labels: np.ndarray     # (b, c): one-hot, drawn in proportion to to_balance
    fake_noise: np.ndarray      # (b, latent): N(0, 1)
    fake_targets: np.ndarray    # (b, 1): D's targets for the fake batch, U(0, 0.1)
    class_noise: np.ndarray     # (m, g, latent): one draw per class, used by both its updates
    class_labels: np.ndarray    # (m, g, c): one-hot k


class Gamo(Learner):
    """The three players, their optimisers and one compiled step per batch."""

    def __init__(self, num_features, imbalance, latent_dim=dense_net.LATENT_DIM, batch_size=32,
                 adam=None, reference_batchnorm=True, use_discriminator=True, jit=True):
        self.imbalance = imbalance
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.num_classes = c = imbalance.num_classes
        self.num_features = num_features
        self.minority = [int(k) for k in imbalance.minority]
        self.latent_dim = latent_dim
        self.use_discriminator = use_discriminator
        # Rows per class in each generator update: ceil(batch / c), 4 for 32 and 10.
        self.rows_per_class = math.ceil(batch_size / c)
        self.classifier = dense_net.build_classifier(num_features, c, name="MLP")
        self.discriminator = dense_net.build_discriminator(num_features, c, name="DIS")
        self.trunk = dense_net.build_generator_trunk(latent_dim, c, name="GEN")
        code_dim = self.trunk.output.shape[-1]
        self.igus = {k: dense_net.build_igu(code_dim, int(imbalance.counts[k]), num_features,
                                            name=f"GenP_{k}") for k in self.minority}

        # One Adam state per compiled model of the reference: M, D, and for every
        # minority class G+IGU_k+M and G+IGU_k+D. The generator's many small
        # variables get flat states; for M's and D's larger weights the flat
        # buffer's copying would cost more than it saves.
        self.opt_classifier = self.adam.new(self.classifier.trainable_variables)
        self.opt_discriminator = self.adam.new(self.discriminator.trainable_variables)
        self.opt_against_classifier = {
            k: self.adam.new(self.generator_variables(k), flat=True) for k in self.minority}
        self.opt_against_discriminator = {
            k: self.adam.new(self.generator_variables(k), flat=True) for k in self.minority}
        # The trunk's moving statistics: one call site per composite of the
        # reference (QUIRK, see dense_net.CallSiteStatistics), or Keras 3's average.
        opponents = ("M", "D") if use_discriminator else ("M",)
        self.trunk_sites = {(opponent, k): CallSiteStatistics(self.trunk, f"G_{opponent}_{k}")
                            for k in self.minority for opponent in opponents} if reference_batchnorm else {}
        # One compiled step per batch: the fixed-shape updates are XLA clusters
        # inside it; the fake batch between them has shapes that vary per batch.
        self._real_updates = tf.function(self._real_updates, jit_compile=jit)
        self._fake_and_generator_updates = tf.function(self._fake_and_generator_updates,
                                                       jit_compile=jit)
        # One trace for every batch size (see batch_spec); the class draws are fixed.
        class_draws = (len(self.minority), self.rows_per_class)
        self.step_fn = tf.function(self._train_step, input_signature=[
            batch_spec(num_features), batch_spec(c), batch_spec(1),    # x, y, real targets
            batch_spec(c), batch_spec(latent_dim), batch_spec(1),      # fake labels, noise, targets
            tf.TensorSpec((*class_draws, latent_dim)), tf.TensorSpec((*class_draws, c))])
        self._predict_fn = tf.function(self._predict, jit_compile=jit, reduce_retracing=True)

    def generator_variables(self, k):
        return self.trunk.trainable_variables + self.igus[k].trainable_variables

    def set_class_points(self, features, labels):
        """Give every IGU its class's points, in the order of the training set."""
        for k, igu in self.igus.items():
            dense_net.set_class_points(igu, features[labels == k])

    # ------------------------------------------------------------ one batch
    def draw_noise(self, rng, rows):
        """The batch's random draws, from the run's seeded NumPy generator."""
        c, g = self.num_classes, self.rows_per_class
        return BatchDraws(
            real_targets=(1 - rng.uniform(0, 0.1, (rows, 1))).astype(np.float32),
            fake_labels=sample_fake_labels(rng, self.imbalance, rows),
            fake_noise=rng.standard_normal((rows, self.latent_dim)).astype(np.float32),
            fake_targets=rng.uniform(0, 0.1, (rows, 1)).astype(np.float32),
            class_noise=rng.standard_normal((len(self.minority), g, self.latent_dim)).astype(np.float32),
            class_labels=np.stack([one_hot(np.full(g, k), c) for k in self.minority]),
        )

    def train_on_batch(self, x, y_onehot, rng):
        return self.step_fn(x, y_onehot, *self.draw_noise(rng, len(x)))

    def _fake_batch(self, noise, labels):
        """Each row goes through the IGU of its label; trunk in inference mode.

        Rows are grouped by label (dynamic shapes, so this part runs outside
        XLA): each row costs its own class's points only, not every class's.
        """
        noise, labels = as_tensors(noise, labels)
        code = self.trunk([noise, labels], training=False)
        label_ids = tf.argmax(labels, axis=-1, output_type=tf.int32)
        rows = tf.dynamic_partition(tf.range(tf.shape(code)[0]), label_ids, self.num_classes)
        codes = tf.dynamic_partition(code, label_ids, self.num_classes)
        samples = [self.igus[k](codes[k], training=False) if k in self.igus else
                   tf.zeros((tf.shape(codes[k])[0], self.num_features)) for k in range(self.num_classes)]
        return tf.dynamic_stitch(rows, samples)

    def _train_step(self, x, y, real_targets, fake_labels, fake_noise, fake_targets,
                    class_noise, class_labels):
        real_losses = self._real_updates(x, y, real_targets)
        # 3. A fake batch of minority samples, labels drawn in proportion to to_balance.
        fake = self._fake_batch(fake_noise, fake_labels)
        fake_losses = self._fake_and_generator_updates(fake, fake_labels, fake_targets,
                                                       class_noise, class_labels)
        return {**real_losses, **fake_losses}

    def _real_updates(self, x, y, real_targets):
        # 1-2. Classifier and discriminator on the real batch.
        losses = {"M_real": self.classifier_update(x, y)}
        if self.use_discriminator:
            losses["D_real"] = self.discriminator_update(x, y, real_targets)
        return losses

    def _fake_and_generator_updates(self, fake, fake_labels, fake_targets, class_noise,
                                    class_labels):
        # 4-5. Classifier learns the fake samples' labels; D learns to call them fake.
        losses = {"M_fake": self.classifier_update(fake, fake_labels)}
        if self.use_discriminator:
            losses["D_fake"] = self.discriminator_update(fake, fake_labels, fake_targets)
        # 6. Generator, class by class, with one noise draw per class.
        for index, k in enumerate(self.minority):
            losses.update(self.generator_updates(k, class_noise[index], class_labels[index]))
        return losses

    def classifier_update(self, x, targets):
        x, targets = as_tensors(x, targets)
        M = self.classifier
        return update(self.opt_classifier, M.trainable_variables,
                      lambda: mse(targets, M(x, training=True)))

    def discriminator_update(self, x, labels, targets):
        x, labels, targets = as_tensors(x, labels, targets)
        D = self.discriminator
        return update(self.opt_discriminator, D.trainable_variables,
                      lambda: mse(targets, D([x, labels], training=True)))

    def generator_updates(self, k, noise, labels):
        """Train the trunk and IGU_k; M and D stay fixed. First make M misclassify
        (target: every class but k), then make D call the samples real."""
        noise, labels = as_tensors(noise, labels)
        variables = self.generator_variables(k)

        def generated():
            code = self.trunk([noise, labels], training=True)   # batch statistics
            return self.igus[k](code, training=True)

        with statistics_of_call_site(self.trunk, self.trunk_sites.get(("M", k))):
            losses = {f"G_M_{k}": update(
                self.opt_against_classifier[k], variables,
                lambda: mse(1 - labels, self.classifier(generated(), training=False)))}
        if self.use_discriminator:
            with statistics_of_call_site(self.trunk, self.trunk_sites.get(("D", k))):
                losses[f"G_D_{k}"] = update(
                    self.opt_against_discriminator[k], variables,
                    lambda: mse(1.0, self.discriminator([generated(), labels], training=False)))
        return losses

    # ------------------------------------------------------------ inference
    def _predict(self, x):
        return tf.argmax(self.classifier(x, training=False), axis=-1)

    def generate(self, k, noise):
        """Samples of minority class k from noise, trunk in inference mode."""
        labels = one_hot(np.full(len(noise), k), self.num_classes)
        code = self.trunk([noise, labels], training=False)
        return keras.ops.convert_to_numpy(self.igus[k](code, training=False))

    def state_models(self):
        """Every model whose variables a checkpoint keeps (D too, even if unused)."""
        return [self.trunk, self.classifier, self.discriminator, *self.igus.values()]

    def optimizers(self):
        return [self.opt_classifier, self.opt_discriminator,
                *self.opt_against_classifier.values(), *self.opt_against_discriminator.values()]

    def other_state(self):
        """Variables a checkpoint keeps besides models and optimiser states."""
        return [*self.adam.variables, *(v for site in self.trunk_sites.values() for v in site.variables)]

    def models(self):
        """Name prefix -> model, as the reference saves them."""
        named = {"GEN": self.trunk, "MLP": self.classifier}
        if self.use_discriminator:
            named["DIS"] = self.discriminator
        named.update({f"GenP_{k}": igu for k, igu in self.igus.items()})
        return named


class ClassifierOnly(Learner):
    """The paper's baseline: the classifier alone, one update per batch on the real
    batch (GAMO's classifier without the game). With an `extractor` (the
    convolutional case) F and M learn together, F feeding M."""

    def __init__(self, classifier, extractor=None, adam=None, jit=True):
        self.classifier = classifier
        self.extractor = extractor
        self.num_classes = classifier.output.shape[-1]
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.opt_classifier = self.adam.new(self.trainable_variables())
        self.step_fn = tf.function(self._train_step, jit_compile=jit, input_signature=(
            inputs_and_targets_spec(extractor or classifier, self.num_classes)))
        self._predict_fn = tf.function(self._predict, jit_compile=jit, reduce_retracing=True)

    def trainable_variables(self):
        learned_features = self.extractor.trainable_variables if self.extractor is not None else []
        return learned_features + self.classifier.trainable_variables

    def _outputs(self, x, training):
        features = self.extractor(x, training=training) if self.extractor is not None else x
        return self.classifier(features, training=training)

    def _train_step(self, x, targets):
        x, targets = as_tensors(x, targets)
        return {"M_real": update(self.opt_classifier, self.trainable_variables(),
                                 lambda: mse(targets, self._outputs(x, training=True)))}

    def train_on_batch(self, x, y_onehot, rng):
        return self.step_fn(x, y_onehot)

    def _predict(self, x):
        return tf.argmax(self._outputs(x, training=False), axis=-1)

    def state_models(self):
        return [self.classifier]

    def optimizers(self):
        return [self.opt_classifier]

    def other_state(self):
        return self.adam.variables

    def models(self):
        return {"MLP": self.classifier}


def build_learner(settings, num_features, imbalance, extractor=None):
    """GAMO, or the classifier alone for the baselines (--classifier-only, --smote)."""
    if is_baseline(settings):
        classifier = dense_net.build_classifier(num_features, imbalance.num_classes, name="MLP")
        return ClassifierOnly(classifier, extractor, adam_states(settings), settings.jit)
    return Gamo(num_features, imbalance, settings.latent_dim, settings.batch_size, adam_states(settings),
                reference_batchnorm=not settings.standard_batchnorm,
                use_discriminator=not settings.no_discriminator, jit=settings.jit)


def adam_states(settings):
    """The run's Adam: the reference's shared step counter unless --standard-adam."""
    return AdamStates(settings.lr, settings.beta1, shared_counter=not settings.standard_adam)


# ====================================================================== the run

RECORD_KEYS = ("acsaSaveTr", "gmSaveTr", "accSaveTr", "acsaSaveTs", "gmSaveTs", "accSaveTs",
               "confMatSaveTr", "confMatSaveTs", "tprSaveTr", "tprSaveTs")


class Record:
    """Scores at every evaluation: index step / eval_every, the final one last."""

    def __init__(self, steps, eval_every, num_classes):
        self.length = math.ceil(steps / eval_every) + 1
        c = num_classes
        self.arrays = {key: np.zeros((self.length, c, c) if "confMat" in key else
                                     (self.length, c) if "tpr" in key else self.length)
                       for key in RECORD_KEYS}
        self.steps_seen = np.full(self.length, -1)

    def store(self, index, step, train, test):
        if index >= self.length:
            return
        self.steps_seen[index] = step
        for suffix, result in (("Tr", train), ("Ts", test)):
            self.arrays[f"acsaSave{suffix}"][index] = result.acsa
            self.arrays[f"gmSave{suffix}"][index] = result.gm
            self.arrays[f"accSave{suffix}"][index] = result.acc
            self.arrays[f"tprSave{suffix}"][index] = result.tpr
            self.arrays[f"confMatSave{suffix}"][index] = result.conf_mat


class Run:
    """Step counting, evaluations, pictures and saving around the compiled step.

    `learner` is a Gamo or, for the baselines, a ClassifierOnly; `evaluate`
    returns (train Scores, test Scores); `extra_models` adds models to every
    save (the convolutional script's feature extractor); `facts` are written
    into settings.json at the end.
    """

    def __init__(self, settings, learner, evaluate, image_side=None, extra_models=None,
                 extra_optimizers=()):
        self.settings = settings
        self.learner = learner
        self.facts = {}
        self.evaluate = evaluate
        self.image_side = image_side
        self.extra_models = extra_models or {}
        self.out_dir = Path(settings.out_dir)
        self.prefix = self.out_dir.name
        self.step = 0
        self.rng = np.random.default_rng(settings.seed)
        self.picture_rng = np.random.default_rng([settings.seed, 1])
        self.record = Record(settings.steps, settings.eval_every, learner.num_classes)
        self.latest = None
        self.progress = None
        self.extra_optimizers = list(extra_optimizers)
        self.checkpoint_due = False
        self.stop_request = StopRequest()

    def play(self, features, onehot, slices, until=None):
        """The rest of the current pass over the batches (or until step reaches `until`).

        Where a pass stands follows from the step (2 per batch), so a resumed
        run continues with the batch after its checkpoint.
        """
        for rows in slices[self.batches_into_pass(slices):]:
            if until is not None and self.step >= until:
                return
            self.learner.train_on_batch(features[rows], onehot[rows], self.rng)
            self.after_batch()
            self.step += 2
            if self.checkpoint_due or self.stop_request.signum:
                self.save_checkpoint()
            self.stop_request.raise_if_asked()

    def batches_into_pass(self, slices):
        return (self.step // 2) % len(slices)

    def after_batch(self):
        s = self.settings
        if self.progress is not None:
            self.progress.update(1)
        if self.step % s.eval_every == 0:
            self.evaluate_and_report(self.step // s.eval_every)
            if self.image_side:
                self.save_picture()
        if self.step % s.save_every == 0 and self.step != 0:
            self.save_models()
            self.checkpoint_due = True

    def evaluate_and_report(self, index):
        train, test = self.evaluate()
        self.record.store(index, self.step, train, test)
        self.latest = test
        write = self.progress.write if self.progress is not None else print
        for name, result in (("train", train), ("test", test)):
            write(f"step {self.step} {name}: ACSA {result.acsa:.4f} GM {result.gm:.4f} "
                  f"TPR {np.array2string(result.tpr, precision=4, max_line_width=200)}")
        if self.progress is not None:
            self.progress.set_postfix(test_acsa=f"{test.acsa:.4f}", test_gm=f"{test.gm:.4f}")

    def save_picture(self):
        """Three generated samples per minority class, one row each."""
        g = self.learner
        samples = [g.generate(k, self.picture_rng.standard_normal((3, g.latent_dim)).astype(np.float32))
                   for k in g.minority]
        path = self.out_dir / "Pictures" / f"{self.prefix}_{self.step}.png"
        save_image_grid(path, np.stack(samples), self.image_side)

    def save_models(self):
        step = self.step
        folder = self.out_dir / f"gamo_models_{step}"
        for name, model in {**self.extra_models, **self.learner.models()}.items():
            with atomic_path(folder / f"{name}_{step}.keras") as tmp:
                model.save(tmp)

    def play_to_the_end(self, play_round):
        """Call play_round() until the step count is reached; then write the results.

        Ctrl-C (SIGINT) or SIGTERM: the current batch ends, a checkpoint and the
        results so far are written, and the process exits with 130 (143).
        """
        started = time.time()
        self.progress = progress_bar(math.ceil(self.settings.steps / 2))
        self.progress.update(self.step // 2)
        try:
            with stop_requests() as stop:
                self.stop_request = stop
                while self.step < self.settings.steps:
                    play_round()
        except Interrupted as stop:
            self.progress.close()
            self.write_partial_results()
            print(f"stopped at step {self.step}: checkpoint in {self.checkpoint_root()}/, results so far "
                  f"in {self.out_dir}/; continue with the same command and --resume", file=sys.stderr)
            raise SystemExit(128 + stop.signum) from None
        self.progress.close()
        self.progress = None
        test = self.finish(started)
        out = self.settings.out_dir
        print(f"final test ACSA {test.acsa:.4f} GM {test.gm:.4f} acc {test.acc:.4f} after "
              f"{self.step} steps in {time.time() - started:.0f} s; outputs in {out}/ "
              f"(learning curve: {out}/learning_curve.png)")
        return test

    # ------------------------------------------------------------ checkpoints
    def state_variables(self):
        models = [*self.extra_models.values(), *self.learner.state_models()]
        optimizers = [*self.extra_optimizers, *self.learner.optimizers()]
        return ([v for m in models for v in m.variables] + [v for o in optimizers for v in o.variables]
                + self.learner.other_state())

    def checkpoint_root(self):
        return self.out_dir / "checkpoints"

    def save_checkpoint(self):
        """Weights, optimiser states, BatchNorm statistics, step, record and the
        random generators' states (see write_checkpoint)."""
        self.checkpoint_due = False
        state = {"step": self.step, "settings": comparable(self.settings),
                 "rng": self.rng.bit_generator.state,
                 "picture_rng": self.picture_rng.bit_generator.state}
        arrays = {"steps_seen": self.record.steps_seen, **self.record.arrays}
        write_checkpoint(self.checkpoint_root(), self.step, self.state_variables(), state, arrays)

    def resume(self):
        """Continue from the newest complete checkpoint in the output folder."""
        folder, state, arrays = read_checkpoint(self.checkpoint_root(), self.settings,
                                                self.state_variables())
        self.record.steps_seen = arrays["steps_seen"]
        self.record.arrays = {key: arrays[key] for key in RECORD_KEYS}
        self.rng.bit_generator.state = state["rng"]
        self.picture_rng.bit_generator.state = state["picture_rng"]
        self.step = state["step"]
        print(f"resumed from {folder} at step {self.step}")

    def write_partial_results(self):
        save_npz(self.out_dir / "Record.npz", **self.record.arrays)
        if self.latest is not None:
            self.save_results(self.latest)

    def save_results(self, test):
        save_npz(self.out_dir / "Results.npz", acsa=test.acsa, gm=test.gm, tpr=test.tpr,
                 confMat=test.conf_mat, acc=test.acc)

    def finish(self, started):
        """Final evaluation at the last index, picture, final models and the result files."""
        self.evaluate_and_report(self.record.length - 1)
        if self.image_side:
            self.save_picture()
        self.save_models()
        self.save_checkpoint()
        test = self.latest
        self.save_results(test)
        save_npz(self.out_dir / "Record.npz", **self.record.arrays)
        save_learning_curve(self.out_dir / "learning_curve.png", self.record)
        save_json(self.out_dir / "settings.json",
                  {**comparable(self.settings), "status": "finished", "final_step": self.step,
                   "batches": self.step // 2,
                   "classifier_updates": self.learner.classifier_updates(), **self.facts,
                   "wall_time_s": round(time.time() - started, 1),
                   "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                                "numpy": np.__version__}})
        return test


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


def write_checkpoint(root, number, variables, state, arrays, keep=2):
    """Write <root>/step_<number>/ (variables.npz, arrays.npz, state.json) into a
    temporary folder, then rename it; keep the newest `keep` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{number}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step_{number}-", dir=root))
    try:
        np.savez(tmp / "variables.npz", *[np.asarray(v) for v in variables])
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for _, old in sorted(checkpoints_in(root))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(root, settings, variables):
    """Load the newest complete checkpoint into `variables`; return (folder, state, arrays).

    Refuses, in one line, a checkpoint written with other settings.
    """
    found = sorted(checkpoints_in(root))
    if not found:
        raise InputError(f"{root}: no checkpoint to resume from")
    folder = found[-1][1]
    state = json.loads((folder / "state.json").read_text())
    mine = comparable(settings)
    for name, value in state["settings"].items():
        if name not in NOT_COMPARED_ON_RESUME and mine.get(name) != value:
            raise InputError(f"{folder}: the checkpoint has {name} = {value!r}, this run "
                             f"{mine.get(name)!r}; use the checkpoint's settings to resume")
    with np.load(folder / "variables.npz") as stored:
        values = [stored[f"arr_{index}"] for index in range(len(stored.files))]
    # Checked before anything is assigned: a refused resume leaves the networks as they were.
    if [value.shape for value in values] != [tuple(variable.shape) for variable in variables]:
        raise InputError(f"{folder}: does not match these networks (written by another version?)")
    for variable, value in zip(variables, values):
        variable.assign(value)
    with np.load(folder / "arrays.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    return folder, state, arrays


def comparable(settings):
    """Settings as JSON values, for checkpoints and for comparing with them."""
    return json.loads(json.dumps(asdict(settings), default=str))


def claim_output_dir(settings):
    """Create the output folder; refuse one that holds another run's outputs.

    A run with the same settings may write there again (or resume); a run with
    other settings (say the convolutional script where the dense one wrote)
    would mix its files with the other run's.
    """
    out_dir = prepare_output_dir(settings.out_dir)
    path = out_dir / "settings.json"
    mine = comparable(settings)
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
        except ValueError:
            theirs = {}
        for name, value in mine.items():
            if name not in NOT_COMPARED_ON_RESUME and theirs.get(name, "(not set)") != value:
                raise InputError(f"{out_dir}: holds the outputs of another run ({name} = "
                                 f"{theirs.get(name, '(not set)')!r} there, {value!r} here); "
                                 "pass another --out-dir or remove that folder")
    save_json(path, {**mine, "status": "running"})
    return out_dir


def checkpoints_in(root):
    """(step, folder) of every complete checkpoint (temporary folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [(int(p.name.split("_")[1]), p) for p in root.iterdir()
            if p.is_dir() and p.name.startswith("step_") and p.name.split("_")[1].isdigit()]


def progress_bar(total_batches):
    from tqdm.auto import tqdm
    return tqdm(total=total_batches, unit="batch", dynamic_ncols=True, mininterval=1.0)


def print_summary(dataset, settings, train_labels):
    counts = dataset.imbalance.counts
    print(f"seed {settings.seed}; {len(dataset.y_train)} training rows, {len(dataset.y_test)} test "
          f"rows, {dataset.x_train.shape[1]} features, {counts.size} classes")
    print("classes by size (new label: original label x count): "
          + ", ".join(f"{k}: {o} x {n}" for k, (o, n) in enumerate(zip(dataset.original_labels, counts))))
    if settings.smote:
        print(f"SMOTE: {len(train_labels)} training rows, "
              f"{np.bincount(train_labels).tolist()} per class")
    print(f"method: {method_name(settings)}; minority classes: {dataset.imbalance.minority.tolist()}; "
          f"output folder {settings.out_dir}")


def evaluation(learner, dataset, as_inputs=lambda x: x):
    """(train Scores, test Scores) of the learner's classifier on the dataset's
    own (imbalanced) training set and on its test set."""
    c = dataset.imbalance.num_classes

    def evaluate():
        return (scores(dataset.y_train, learner.predict_labels(as_inputs(dataset.x_train)), c),
                scores(dataset.y_test, learner.predict_labels(as_inputs(dataset.x_test)), c))
    return evaluate


def main(argv=None):
    settings = settings_from(build_parser().parse_args(argv))
    dataset = load_dataset(settings.train, settings.test, scale=not settings.no_scale)
    claim_output_dir(settings)
    keras.utils.set_random_seed(settings.seed)
    learner = build_learner(settings, dataset.x_train.shape[1], dataset.imbalance)
    pictures = not is_baseline(settings)
    run = Run(settings, learner, evaluation(learner, dataset),
              image_side=square_side(dataset.x_train.shape[1]) if pictures else None)
    x_train, y_train = training_rows(run, dataset)
    if isinstance(learner, Gamo):
        learner.set_class_points(x_train, y_train)
    onehot = one_hot(y_train, learner.num_classes)
    if settings.resume:
        run.resume()
    slices = batch_slices(len(y_train), settings.batch_size)
    return run.play_to_the_end(lambda: run.play(x_train, onehot, slices, until=settings.steps))


if __name__ == "__main__":
    run_cli(main)
