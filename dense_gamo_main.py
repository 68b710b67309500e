"""GAMO on feature vectors (flattened images or any features): the game and the training loop.

Each batch runs the reference's whole update sequence (see Gamo) in ONE
compiled step. `step` grows by 2 per batch, as in the reference: 50000 steps =
25000 batches. --classifier-only and --smote train the paper's baselines
instead: the classifier alone, one update per batch, on the imbalanced or the
SMOTE-balanced set.

    python MNIST_process.py          # writes Mnist_100_trainData.csv, ...
    python dense_gamo_main.py        # trains, writes Mnist_100_Gamo/
"""

from __future__ import annotations

import abc
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dense_suppli import (
    InputError,
    Run,
    TrainingSettings,
    add_training_options,
    batch_slices,
    checkpointed_stop,
    claim_output_dir,
    class_counts,
    evaluation,
    import_backend_quietly,
    load_dataset,
    new_parser,
    one_hot,
    print_summary,
    progress_bar,
    run_cli,
    sample_fake_labels,
    settings_from,
    square_side,
    training_rows,
)

import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402

import dense_net  # noqa: E402
from dense_net import (  # noqa: E402
    AdamStates,
    CallSiteStatistics,
    as_tensors,
    batch_spec,
    compile_function,
    inputs_and_targets_spec,
    labels_of,
    mse,
    numpy_losses,
    signature,
    statistics_of_call_site,
    tensor_spec,
    to_numpy,
    update,
    xla_cluster,
)

# ====================================================================== settings

# Method -> (what it trains, the default output folder's suffix).
METHODS = {
    "gamo": ("GAMO", "Gamo"),
    "gamo-nodis": ("GAMO without D", "GamoNoDis"),
    "baseline": ("the classifier alone", "Baseline"),
    "smote": ("the classifier alone on the SMOTE-balanced set", "Smote"),
}


@dataclass
class Settings(TrainingSettings):
    """Everything a GAMO run depends on; saved beside its results."""

    train: str = "Mnist_100_trainData.csv"
    test: str = "Mnist_100_testData.csv"
    latent_dim: int = dense_net.LATENT_DIM
    eval_every: int = 500
    no_discriminator: bool = False
    classifier_only: bool = False     # the baseline: M alone (with F in the conv script)
    smote: bool = False               # the SMOTE baseline: M alone on a SMOTE-balanced set
    standard_batchnorm: bool = False  # Keras 3's moving average in the trunk (not the reference's)

    @property
    def method(self):
        """gamo, gamo-nodis, baseline or smote."""
        if self.smote or self.classifier_only:
            return "smote" if self.smote else "baseline"
        return "gamo-nodis" if self.no_discriminator else "gamo"

    @property
    def is_baseline(self):
        return self.method in ("baseline", "smote")

    def positive_integers(self):
        return (*super().positive_integers(), "latent_dim", "eval_every")

    def data_files(self):
        return ("train", "test")

    def uncompared(self):
        """--steps too: a finished run continues to more steps with --resume."""
        return (*super().uncompared(), "steps")

    def validate(self):
        super().validate()
        for name in ("steps", "eval_every", "save_every"):    # step grows by 2 per batch
            if getattr(self, name) % 2:
                raise InputError(f"--{name.replace('_', '-')}: must be even (step grows by 2 per batch, as "
                                 f"in the reference), got {getattr(self, name)}")
        if self.no_discriminator and self.is_baseline:
            raise InputError("--no-discriminator: applies to GAMO, not to --classifier-only or --smote")
        if not self.out_dir:
            stem = Path(self.train).name.removesuffix(".csv").removesuffix("_trainData")
            self.out_dir = f"{stem}_{METHODS[self.method][1]}"


def add_game_options(parser, defaults):
    """Options of the dense and the convolutional GAMO scripts."""
    add_training_options(
        parser, defaults, train_help="training CSV: features, then the label as the last column",
        out_dir_help="output folder (default: the training file's prefix + '_Gamo', e.g. Mnist_100_Gamo; "
                     "'_GamoNoDis', '_Baseline', '_Smote' for those)",
        steps_help="max_step; step grows by 2 per batch, as in the reference",
        save_help="save the models (and a checkpoint) when step %% N == 0")
    parser.add_argument("--test", default=defaults.test, help="test CSV, same layout")
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim,
                        help="size of the generator's noise input")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every,
                        help="evaluate (and draw a picture) when step %% N == 0")
    parser.add_argument("--no-discriminator", action="store_true",
                        help="the paper's GAMO-without-D ablation: D is neither trained nor "
                             "used in the generator's loss")
    parser.add_argument("--classifier-only", action="store_true",
                        help="the paper's baseline: no GAMO, the classifier alone on the imbalanced "
                             "set, one update per batch for steps / 2 batches")
    parser.add_argument("--smote", action="store_true",
                        help="the SMOTE baseline: the training set balanced with imbalanced-learn's "
                             "SMOTE, then the classifier alone as with --classifier-only")
    parser.add_argument("--standard-batchnorm", action="store_true",
                        help="Keras 3's single moving average of the trunk's BatchNorm statistics "
                             "instead of the reference's (Keras 2.2: each composite model its own "
                             "zero-debiased average, with n / (n - 1 - epsilon) on the variance)")


def build_parser():
    parser = new_parser("Train GAMO (Generative Adversarial Minority Oversampling) on feature "
                        "vectors; defaults are the reference's.")
    add_game_options(parser, Settings())
    return parser


# ====================================================================== the learners

class Learner(abc.ABC):
    """What the training loop and Run need of whatever learns."""

    num_classes: int

    @abc.abstractmethod
    def train_on_batch(self, x, y_onehot, rng):
        """One batch's updates; random draws come from `rng`. Returns the
        batch's {loss name: value} (tensors) for the names of loss_names()."""

    @abc.abstractmethod
    def loss_names(self):
        """The names of the losses train_on_batch returns, in the record's order."""

    @abc.abstractmethod
    def predict_batch(self, x):
        """The classifier's labels for a batch (a compiled function)."""

    @abc.abstractmethod
    def classifier_updates(self):
        """How many updates the classifier's optimiser has applied."""

    @abc.abstractmethod
    def models(self):
        """Name prefix -> model, as the reference saves them."""

    @abc.abstractmethod
    def named_state(self):
        """{stable name: variable} of everything a checkpoint keeps: weights,
        optimiser and other states; the names are the checkpoint's keys."""

    def state_variables(self):
        return list(self.named_state().values())

    def predict_labels(self, x, chunk=4096):
        return np.concatenate([to_numpy(self.predict_batch(x[start:start + chunk]))
                               for start in range(0, len(x), chunk)])


class BatchDraws(NamedTuple):
    """The random draws of one batch (rows b, minority classes m, g rows each)."""

    real_targets: np.ndarray    # (b, 1): D's targets for the real batch, 1 - U(0, 0.1)
    fake_labels: np.ndarray     # (b, c): one-hot, drawn in proportion to to_balance
    fake_noise: np.ndarray      # (b, latent): N(0, 1)
    fake_targets: np.ndarray    # (b, 1): D's targets for the fake batch, U(0, 0.1)
    class_noise: np.ndarray     # (m, g, latent): one draw per class, used by both its updates
    class_labels: np.ndarray    # (m, g, c): one-hot k


class Players:
    """GAMO's networks: classifier M, discriminator D, the generator's trunk (the
    paper's cTMU) and an IGU per minority class, with the trunk's moving
    statistics kept per call site as the reference does (QUIRK, see
    dense_net.CallSiteStatistics) unless reference_batchnorm is False."""

    def __init__(self, num_features, imbalance, latent_dim, reference_batchnorm, use_discriminator):
        self.num_classes = c = imbalance.num_classes
        self.num_features, self.latent_dim = num_features, latent_dim
        self.use_discriminator = use_discriminator
        self.minority = [int(k) for k in imbalance.minority]
        self.classifier = dense_net.build_classifier(num_features, c, name="MLP")
        self.discriminator = dense_net.build_discriminator(num_features, c, name="DIS")
        self.trunk = dense_net.build_generator_trunk(latent_dim, c, name="GEN")
        code_dim = self.trunk.output.shape[-1]
        self.igus = {k: dense_net.build_igu(code_dim, int(imbalance.counts[k]), num_features,
                                            name=f"GenP_{k}") for k in self.minority}
        opponents = ("M", "D") if use_discriminator else ("M",)
        self.trunk_sites = {(opponent, k): CallSiteStatistics(self.trunk, f"G_{opponent}_{k}")
                            for k in self.minority for opponent in opponents} if reference_batchnorm else {}

    def generator_variables(self, k):
        return self.trunk.trainable_variables + self.igus[k].trainable_variables

    def generated(self, k, noise, labels, training):
        """Samples of class k from noise: the trunk, then IGU_k's convex combination."""
        return self.igus[k](self.trunk([noise, labels], training=training), training=training)

    def set_class_points(self, features, labels):
        """Give every IGU its class's points, in the order of the training set."""
        for k, igu in self.igus.items():
            dense_net.set_class_points(igu, features[labels == k])

    def fake_batch(self, noise, labels):
        """Each row through the IGU of its label only; trunk in inference mode."""
        noise, labels = as_tensors(noise, labels)
        code = self.trunk([noise, labels], training=False)
        units = {k: (lambda codes, igu=igu: igu(codes, training=False)) for k, igu in self.igus.items()}
        return dense_net.route_rows(code, labels, units, self.num_classes, self.num_features)

    def sample_grid(self, rng, per_class=3):
        """per_class samples of every minority class (trunk in inference mode), one row each."""
        return np.stack([keras.ops.convert_to_numpy(self.generated(
            k, rng.standard_normal((per_class, self.latent_dim)).astype(np.float32),
            one_hot(np.full(per_class, k), self.num_classes), training=False)) for k in self.minority])

    def models(self):
        """Name prefix -> model, as the reference saves them (no D when it is not used)."""
        named = {"GEN": self.trunk, "MLP": self.classifier}
        if self.use_discriminator:
            named["DIS"] = self.discriminator
        return {**named, **{f"GenP_{k}": igu for k, igu in self.igus.items()}}

    def named_state(self):
        models = {"GEN": self.trunk, "MLP": self.classifier, "DIS": self.discriminator,   # D even if unused
                  **{f"GenP_{k}": igu for k, igu in self.igus.items()}}
        return dense_net.merged_names(
            *(dense_net.named_model_variables(prefix, model) for prefix, model in models.items()),
            {f"trunk_sites/{v.name}": v for site in self.trunk_sites.values() for v in site.variables})


class Gamo(Learner):
    """The three players, their Adam states and one compiled step per batch.

    The step, in the original code's order, on a batch
    of b real rows:
      1. M learns the real batch (targets: one-hot labels).
      2. D learns to call the real batch real (targets 1 - U(0, 0.1)).
      3. A fake batch: b labels drawn among the minority classes in proportion to
         what each lacks; each row from the trunk (inference mode) and its IGU.
      4. M learns the fake batch's labels.
      5. D learns to call the fake batch fake (targets U(0, 0.1)).
      6. For each minority class k, ceil(b / c) rows of one noise draw: the trunk
         and IGU_k learn to make M misclassify them (target: every class but
         k), then to make D call them real (target 1); M and D stay fixed, the
         trunk runs in training mode.
    On TensorFlow, steps 1-2 and 4-6 are XLA clusters and step 3, whose shapes
    vary per batch, runs between them; on JAX the whole step is one XLA program.
    """

    def __init__(self, num_features, imbalance, latent_dim=dense_net.LATENT_DIM, batch_size=32,
                 adam=None, reference_batchnorm=True, use_discriminator=True, jit=True):
        self.imbalance, self.num_classes, self.latent_dim = imbalance, imbalance.num_classes, latent_dim
        self.use_discriminator = use_discriminator
        self.rows_per_class = math.ceil(batch_size / self.num_classes)   # 4 for 32 and 10
        p = self.players = Players(num_features, imbalance, latent_dim, reference_batchnorm,
                                   use_discriminator)
        self.minority = p.minority
        # One Adam state per compiled model of the reference: M, D, and for every
        # minority class G+IGU_k+M and G+IGU_k+D (flat: many small variables).
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.opt_classifier = self.adam.new(p.classifier.trainable_variables)
        self.opt_discriminator = self.adam.new(p.discriminator.trainable_variables)
        self.opt_against = {(o, k): self.adam.new(p.generator_variables(k), flat=True)
                            for k in self.minority for o in ("M", "D")}
        c, draws = self.num_classes, (len(self.minority), self.rows_per_class)
        self.compiled_real_updates = xla_cluster(self.real_updates, jit)
        self.compiled_fake_updates = xla_cluster(self.fake_and_generator_updates, jit)
        step_signature = signature(   # one trace for any batch size (TensorFlow)
            batch_spec(num_features), batch_spec(c), batch_spec(1), batch_spec(c), batch_spec(latent_dim),
            batch_spec(1), tensor_spec(*draws, latent_dim), tensor_spec(*draws, c))
        self.compiled_step = compile_function(self.step, self.state_variables(), jit, step_signature,
                                              whole=False)
        self.compiled_predict = compile_function(labels_of(p.classifier), p.classifier.variables, jit)

    def draw(self, rng, rows):
        """The batch's random draws, from the run's seeded NumPy generator."""
        c, g = self.num_classes, self.rows_per_class
        return BatchDraws(
            real_targets=(1 - rng.uniform(0, 0.1, (rows, 1))).astype(np.float32),
            fake_labels=sample_fake_labels(rng, self.imbalance, rows),
            fake_noise=rng.standard_normal((rows, self.latent_dim)).astype(np.float32),
            fake_targets=rng.uniform(0, 0.1, (rows, 1)).astype(np.float32),
            class_noise=rng.standard_normal((len(self.minority), g, self.latent_dim)).astype(np.float32),
            class_labels=np.stack([one_hot(np.full(g, k), c) for k in self.minority]))

    def train_on_batch(self, x, y_onehot, rng):
        return self.compiled_step(x, y_onehot, *self.draw(rng, len(x)))

    def loss_names(self):
        """M and D on the real batch, then on the fake batch, then each class's generator."""
        with_d = self.use_discriminator
        return ("M_real", *("D_real",) * with_d, "M_fake", *("D_fake",) * with_d,
                *(f"G_{opponent}_{k}" for k in self.minority for opponent in ("M", "D")[:1 + with_d]))

    def step(self, x, y, real_targets, fake_labels, fake_noise, fake_targets, class_noise, class_labels):
        losses = self.compiled_real_updates(x, y, real_targets)
        # 3. Oversample: a fake batch of convex combinations of minority points.
        fake = self.players.fake_batch(fake_noise, fake_labels)
        return {**losses, **self.compiled_fake_updates(fake, fake_labels, fake_targets, class_noise,
                                                       class_labels)}

    def real_updates(self, x, y, real_targets):
        # 1. Classifier: learn the real batch's labels.
        losses = {"M_real": self.classifier_update(x, y)}
        # 2. Discriminator: call the real batch real.
        if self.use_discriminator:
            losses["D_real"] = self.discriminator_update(x, y, real_targets)
        return losses

    def fake_and_generator_updates(self, fake, fake_labels, fake_targets, class_noise, class_labels):
        # 4. Classifier: learn the generated samples as their minority classes.
        losses = {"M_fake": self.classifier_update(fake, fake_labels)}
        # 5. Discriminator: call the generated samples fake.
        if self.use_discriminator:
            losses["D_fake"] = self.discriminator_update(fake, fake_labels, fake_targets)
        # 6. Generator, class by class: samples M misclassifies, and D takes for real.
        for index, k in enumerate(self.minority):
            losses.update(self.generator_updates(k, class_noise[index], class_labels[index]))
        return losses

    def classifier_update(self, x, targets):
        x, targets, M = *as_tensors(x, targets), self.players.classifier
        return update(self.opt_classifier, M.trainable_variables, lambda: mse(targets, M(x, training=True)))

    def discriminator_update(self, x, labels, targets):
        x, labels, targets, D = *as_tensors(x, labels, targets), self.players.discriminator
        return update(self.opt_discriminator, D.trainable_variables,
                      lambda: mse(targets, D([x, labels], training=True)))

    def generator_updates(self, k, noise, labels):
        """Train the trunk and IGU_k, M and D fixed: make M misclassify, then D accept."""
        noise, labels = as_tensors(noise, labels)
        p, losses = self.players, {}
        objectives = {"M": lambda: mse(1 - labels, p.classifier(p.generated(k, noise, labels, True),
                                                                training=False)),
                      "D": lambda: mse(1.0, p.discriminator([p.generated(k, noise, labels, True), labels],
                                                            training=False))}
        for opponent in ("M", "D") if self.use_discriminator else ("M",):
            with statistics_of_call_site(p.trunk, p.trunk_sites.get((opponent, k))):
                losses[f"G_{opponent}_{k}"] = update(self.opt_against[opponent, k],
                                                     p.generator_variables(k), objectives[opponent])
        return losses

    # ------------------------------------------------------------ the Learner interface
    def predict_batch(self, x):
        return self.compiled_predict(x)

    def classifier_updates(self):
        return int(self.opt_classifier.iterations.numpy())

    def models(self):
        return self.players.models()

    def named_state(self):
        states = {"adam_M": self.opt_classifier, "adam_D": self.opt_discriminator,
                  **{f"adam_G_{o}_{k}": state for (o, k), state in self.opt_against.items()}}
        return dense_net.merged_names(
            self.players.named_state(),
            *(dense_net.named_optimizer_variables(name, state) for name, state in states.items()),
            self.adam.named_variables())


class ClassifierOnly(Learner):
    """The paper's baseline: the classifier alone, one update per batch on the real
    batch (GAMO's classifier without the game). With an `extractor` (the
    convolutional case) F and M learn together, F feeding M."""

    def __init__(self, classifier, extractor=None, adam=None, jit=True):
        self.classifier, self.extractor = classifier, extractor
        self.num_classes = classifier.output.shape[-1]
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.networks = [m for m in (extractor, classifier) if m is not None]
        self.trainable = [v for m in self.networks for v in m.trainable_variables]
        self.opt_classifier = self.adam.new(self.trainable)
        jit = jit if extractor is None else dense_net.jit_for_convolutions(jit)
        self.compiled_step = compile_function(self.step, self.state_variables(), jit, signature=(
            inputs_and_targets_spec(extractor or classifier, self.num_classes)))
        self.compiled_predict = compile_function(
            lambda x: keras.ops.argmax(self.outputs(x, training=False), axis=-1),
            [v for m in self.networks for v in m.variables], jit)

    def outputs(self, x, training):
        features = self.extractor(x, training=training) if self.extractor is not None else x
        return self.classifier(features, training=training)

    def step(self, x, targets):
        return {"M_real": update(self.opt_classifier, self.trainable,
                                 lambda: mse(targets, self.outputs(x, training=True)))}

    def train_on_batch(self, x, y_onehot, rng):
        return self.compiled_step(x, y_onehot)

    def loss_names(self):
        return ("M_real",)

    def predict_batch(self, x):
        return self.compiled_predict(x)

    def classifier_updates(self):
        return int(self.opt_classifier.iterations.numpy())

    def models(self):
        return {**({"Conv": self.extractor} if self.extractor is not None else {}), "MLP": self.classifier}

    def named_state(self):
        return dense_net.merged_names(
            *(dense_net.named_model_variables(name, model) for name, model in self.models().items()),
            dense_net.named_optimizer_variables("adam_M", self.opt_classifier), self.adam.named_variables())


def build_learner(settings, num_features, imbalance, extractor=None):
    """GAMO, or the classifier alone for the baselines (--classifier-only, --smote)."""
    adam = AdamStates(settings.lr, settings.beta1, shared_counter=not settings.standard_adam)
    if settings.is_baseline:
        classifier = dense_net.build_classifier(num_features, imbalance.num_classes, name="MLP")
        return ClassifierOnly(classifier, extractor, adam, settings.jit)
    return Gamo(num_features, imbalance, settings.latent_dim, settings.batch_size, adam,
                reference_batchnorm=not settings.standard_batchnorm,
                use_discriminator=not settings.no_discriminator, jit=settings.jit)


# ====================================================================== the run

class Pass(NamedTuple):
    """One pass over the training batches: the rows, their one-hot labels and the batches."""

    rows: np.ndarray
    onehot: np.ndarray
    slices: list


def batches(passes, step, steps):
    """(rows, one-hot labels) of every batch from `step` to `steps` (2 per batch),
    pass after pass from `passes` (an iterator of Pass); a run resumed at `step`
    continues with the batch after its checkpoint. A pass is asked for only
    when one more batch is due."""
    while step < steps:
        rows, onehot, slices = next(passes)
        for batch in slices[(step // 2) % len(slices):]:
            yield rows[batch], onehot[batch]
            step += 2
            if step >= steps:
                return


def train(run, passes, after_batch=None):
    """The whole schedule of a run: the batches of `passes` until step reaches
    --steps; an evaluation at every eval_every steps, the models and a
    checkpoint at every save_every; then the final outputs.

    Ctrl-C (SIGINT) or SIGTERM: the current batch ends, a checkpoint and the
    results so far are written, and the process exits with 130 (143). A NaN or
    infinite loss raises NotFinite at once, before that batch's evaluation
    or checkpoint (run_cli: exit status 3).
    after_batch(run), if given, is called after every batch (monitoring).
    """
    s = run.settings
    progress = progress_bar(math.ceil(s.steps / 2), done=run.step // 2)
    with checkpointed_stop(run.stopped) as stop, progress:
        for rows, onehot in batches(passes, run.step, s.steps):
            run.add_losses(numpy_losses(run.learner.train_on_batch(rows, onehot, run.rng)), progress)
            progress.update(1)
            if run.step % s.eval_every == 0:
                run.evaluate_and_report(run.step // s.eval_every, progress)
            save_now = run.step % s.save_every == 0 and run.step != 0
            if save_now:
                run.save_models()
            run.step += 2
            if after_batch is not None:
                after_batch(run)
            if save_now or stop.signum:
                run.save_checkpoint()
            stop.raise_if_asked()
    return run.finish()


def main(argv=None, after_batch=None):
    settings = settings_from(build_parser().parse_args(argv), Settings)
    dataset = load_dataset(settings.train, settings.test, scale=not settings.no_scale)
    claim_output_dir(settings)
    dense_net.set_random_seed(settings.seed)
    learner = build_learner(settings, dataset.x_train.shape[1], dataset.imbalance)
    rng = np.random.default_rng(settings.seed)
    x, y = training_rows(dataset, rng, settings.seed if settings.smote else None, settings.train)
    print_summary(settings, dataset, y, METHODS[settings.method][0])
    if not settings.is_baseline:
        learner.players.set_class_points(x, y)
    run = Run(settings, learner, evaluation(learner, dataset), rng, class_counts(dataset, y),
              pictures=None if settings.is_baseline else learner.players.sample_grid,
              image_side=square_side(dataset.x_train.shape[1]))
    if settings.resume:
        run.resume()
    return train(run, itertools.repeat(Pass(x, one_hot(y, learner.num_classes),
                                            batch_slices(len(y), settings.batch_size))), after_batch)


def cli():
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)


if __name__ == "__main__":
    cli()
