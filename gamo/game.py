"""GAMO's three-player game on feature vectors: the players, the random draws
of a batch, and the whole update sequence of a batch in one compiled step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from gamo import nets
from gamo.backend import (
    as_tensors,
    batch_spec,
    compile_function,
    route_rows,
    signature,
    step_network,
    tensor_spec,
    without_gradient_tracking,
    xla_cluster,
)
from gamo.data import one_hot, sample_fake_labels
from gamo.layers import CallSiteStatistics, statistics_of_call_site
from gamo.learner import ClassifierOnly, Learner
from gamo.optim import AdamStates, labels_of, mse, update
from gamo.state import merged_names, named_model_variables, named_optimizer_variables

# isort: split
import keras

if TYPE_CHECKING:
    from gamo.backend import Tensor
    from gamo.data import Imbalance


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
    gamo.layers.CallSiteStatistics) unless reference_batchnorm is False."""

    def __init__(self, num_features: int, imbalance: Imbalance, latent_dim: int, reference_batchnorm: bool,
                 use_discriminator: bool) -> None:
        self.num_classes = c = imbalance.num_classes
        self.num_features, self.latent_dim = num_features, latent_dim
        self.use_discriminator = use_discriminator
        self.minority = [int(k) for k in imbalance.minority]
        self.classifier = nets.build_classifier(num_features, c, name="MLP")
        self.discriminator = nets.build_discriminator(num_features, c, name="DIS")
        self.trunk = nets.build_generator_trunk(latent_dim, c, name="GEN")
        code_dim = self.trunk.output.shape[-1]
        self.igus = {k: nets.build_igu(code_dim, int(imbalance.counts[k]), num_features,
                                            name=f"GenP_{k}") for k in self.minority}
        opponents = ("M", "D") if use_discriminator else ("M",)
        self.trunk_sites = {(opponent, k): CallSiteStatistics(self.trunk, f"G_{opponent}_{k}")
                            for k in self.minority for opponent in opponents} if reference_batchnorm else {}
        # How the steps apply each network: the model, or on PyTorch a plain function of its variables.
        self.M, self.D, self.G = (step_network(m) for m in (self.classifier, self.discriminator, self.trunk))
        self.units = {k: step_network(igu) for k, igu in self.igus.items()}
        # What each update trains (Keras lists a model's variables anew on every ask).
        self.trains: dict[str | int, list[keras.Variable]] = {
            "M": self.classifier.trainable_variables, "D": self.discriminator.trainable_variables,
            **{k: self.trunk.trainable_variables + self.igus[k].trainable_variables for k in self.minority}}

    def generator_variables(self, k: int) -> list[keras.Variable]:
        """What the generator of class k trains: the trunk's and IGU_k's weights."""
        return self.trains[k]

    def generated(self, k: int, noise: Tensor, labels: Tensor, training: bool) -> Tensor:
        """Samples of class k from noise: the trunk, then IGU_k's convex combination."""
        return self.units[k](self.G([noise, labels], training=training), training=training)

    def set_class_points(self, features: np.ndarray, labels: np.ndarray) -> None:
        """Give every IGU its class's points, in the order of the training set."""
        for k, igu in self.igus.items():
            nets.set_class_points(igu, features[labels == k])

    def fake_batch(self, noise: np.ndarray, labels: np.ndarray) -> Tensor:
        """Each row through the IGU of its label only; trunk in inference mode."""
        noise, labels = as_tensors(noise, labels)
        code = self.G([noise, labels], training=False)
        units = {k: (lambda codes, igu=igu: igu(codes, training=False)) for k, igu in self.units.items()}
        return route_rows(code, labels, units, self.num_classes, self.num_features)

    def sample_grid(self, rng: np.random.Generator, per_class: int = 3) -> np.ndarray:
        """per_class samples of every minority class (trunk in inference mode), one row each."""
        return np.stack([keras.ops.convert_to_numpy(self.generated(
            k, rng.standard_normal((per_class, self.latent_dim)).astype(np.float32),
            one_hot(np.full(per_class, k), self.num_classes), training=False)) for k in self.minority])

    def models(self) -> dict[str, keras.Model]:
        """Name prefix -> model, as the reference saves them (no D when it is not used)."""
        named = {"GEN": self.trunk, "MLP": self.classifier}
        if self.use_discriminator:
            named["DIS"] = self.discriminator
        return {**named, **{f"GenP_{k}": igu for k, igu in self.igus.items()}}

    def named_state(self) -> dict[str, keras.Variable]:
        """Every network's variables (D's even if unused) and the trunk's call-site statistics."""
        models = {"GEN": self.trunk, "MLP": self.classifier, "DIS": self.discriminator,   # D even if unused
                  **{f"GenP_{k}": igu for k, igu in self.igus.items()}}
        return merged_names(
            *(named_model_variables(prefix, model) for prefix, model in models.items()),
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

    def __init__(self, num_features: int, imbalance: Imbalance, latent_dim: int = nets.LATENT_DIM,
                 batch_size: int = 32, adam: AdamStates | None = None, reference_batchnorm: bool = True,
                 use_discriminator: bool = True, jit: bool = True) -> None:
        self.imbalance, self.num_classes, self.latent_dim = imbalance, imbalance.num_classes, latent_dim
        self.use_discriminator = use_discriminator
        self.rows_per_class = math.ceil(batch_size / self.num_classes)   # 4 for 32 and 10
        p = self.players = Players(num_features, imbalance, latent_dim, reference_batchnorm,
                                   use_discriminator)
        self.minority = p.minority
        # One Adam state per compiled model of the reference: M, D, and for every
        # minority class G+IGU_k+M and G+IGU_k+D (flat: many small variables).
        self.adam = adam or AdamStates(0.0002, 0.5)
        self.opt_classifier = self.adam.new(p.trains["M"])
        self.opt_discriminator = self.adam.new(p.trains["D"])
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

    def draw(self, rng: np.random.Generator, rows: int) -> BatchDraws:
        """The batch's random draws, from the run's seeded NumPy generator."""
        c, g = self.num_classes, self.rows_per_class
        return BatchDraws(
            real_targets=(1 - rng.uniform(0, 0.1, (rows, 1))).astype(np.float32),
            fake_labels=sample_fake_labels(rng, self.imbalance, rows),
            fake_noise=rng.standard_normal((rows, self.latent_dim)).astype(np.float32),
            fake_targets=rng.uniform(0, 0.1, (rows, 1)).astype(np.float32),
            class_noise=rng.standard_normal((len(self.minority), g, self.latent_dim)).astype(np.float32),
            class_labels=np.stack([one_hot(np.full(g, k), c) for k in self.minority]))

    def step_inputs(self, x: np.ndarray, y_onehot: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """The batch and its draws from `rng`: what the compiled step takes."""
        return (x, y_onehot, *self.draw(rng, len(x)))

    def loss_names(self) -> tuple[str, ...]:
        """M and D on the real batch, then on the fake batch, then each class's generator."""
        with_d = self.use_discriminator
        return ("M_real", *("D_real",) * with_d, "M_fake", *("D_fake",) * with_d,
                *(f"G_{opponent}_{k}" for k in self.minority for opponent in ("M", "D")[:1 + with_d]))

    def step(self, x: Tensor, y: Tensor, real_targets: Tensor, fake_labels: Tensor, fake_noise: Tensor,
             fake_targets: Tensor, class_noise: Tensor, class_labels: Tensor) -> dict[str, Tensor]:
        """A batch's whole update sequence (steps 1-6); every update's loss."""
        losses = self.compiled_real_updates(x, y, real_targets)
        # 3. Oversample: a fake batch of convex combinations of minority points (data
        # for M and D, as the reference's predict() gives it: no gradient recorded).
        with without_gradient_tracking():
            fake = self.players.fake_batch(fake_noise, fake_labels)
        return {**losses, **self.compiled_fake_updates(fake, fake_labels, fake_targets, class_noise,
                                                       class_labels)}

    def real_updates(self, x: Tensor, y: Tensor, real_targets: Tensor) -> dict[str, Tensor]:
        """Steps 1 and 2: M, then D, on the real batch."""
        # 1. Classifier: learn the real batch's labels.
        losses = {"M_real": self.classifier_update(x, y)}
        # 2. Discriminator: call the real batch real.
        if self.use_discriminator:
            losses["D_real"] = self.discriminator_update(x, y, real_targets)
        return losses

    def fake_and_generator_updates(self, fake: Tensor, fake_labels: Tensor, fake_targets: Tensor,
                                   class_noise: Tensor, class_labels: Tensor) -> dict[str, Tensor]:
        """Steps 4 to 6: M, then D, on the fake batch, then each class's generator."""
        # 4. Classifier: learn the generated samples as their minority classes.
        losses = {"M_fake": self.classifier_update(fake, fake_labels)}
        # 5. Discriminator: call the generated samples fake.
        if self.use_discriminator:
            losses["D_fake"] = self.discriminator_update(fake, fake_labels, fake_targets)
        # 6. Generator, class by class: samples M misclassifies, and D takes for real.
        for index, k in enumerate(self.minority):
            losses.update(self.generator_updates(k, class_noise[index], class_labels[index]))
        return losses

    def classifier_update(self, x: Tensor, targets: Tensor) -> Tensor:
        """One update of M towards `targets`; its loss."""
        x, targets, M = *as_tensors(x, targets), self.players.M
        return update(self.opt_classifier, self.players.trains["M"],
                      lambda: mse(targets, M(x, training=True)))

    def discriminator_update(self, x: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
        """One update of D towards `targets`; its loss."""
        x, labels, targets, D = *as_tensors(x, labels, targets), self.players.D
        return update(self.opt_discriminator, self.players.trains["D"],
                      lambda: mse(targets, D([x, labels], training=True)))

    def generator_updates(self, k: int, noise: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Train the trunk and IGU_k, M and D fixed: make M misclassify, then D accept."""
        noise, labels = as_tensors(noise, labels)
        losses: dict[str, Tensor]
        p, losses = self.players, {}
        objectives = {"M": lambda: mse(1 - labels, p.M(p.generated(k, noise, labels, True), training=False)),
                      "D": lambda: mse(1.0, p.D([p.generated(k, noise, labels, True), labels],
                                                training=False))}
        for opponent in ("M", "D") if self.use_discriminator else ("M",):
            with statistics_of_call_site(p.trunk, p.trunk_sites.get((opponent, k))):
                losses[f"G_{opponent}_{k}"] = update(self.opt_against[opponent, k],
                                                     p.generator_variables(k), objectives[opponent])
        return losses

    # ------------------------------------------------------------ the Learner interface
    def predict_batch(self, x: np.ndarray) -> Tensor:
        """M's labels for a batch."""
        return self.compiled_predict(x)

    def classifier_updates(self) -> int:
        """How many updates M's Adam state has applied."""
        return int(self.opt_classifier.iterations.numpy())

    def models(self) -> dict[str, keras.Model]:
        """The players' models, by the reference's names."""
        return self.players.models()

    def named_state(self) -> dict[str, keras.Variable]:
        """The players' variables and every Adam state, by stable name."""
        states = {"adam_M": self.opt_classifier, "adam_D": self.opt_discriminator,
                  **{f"adam_G_{o}_{k}": state for (o, k), state in self.opt_against.items()}}
        return merged_names(
            self.players.named_state(),
            *(named_optimizer_variables(name, state) for name, state in states.items()),
            self.adam.named_variables())


class LearnerSettings(Protocol):
    """What build_learner reads of a run's settings (the scripts' Settings, the estimators' parameters)."""

    @property
    def lr(self) -> float: ...

    @property
    def beta1(self) -> float: ...

    @property
    def standard_adam(self) -> bool: ...

    @property
    def standard_batchnorm(self) -> bool: ...

    @property
    def is_baseline(self) -> bool: ...

    @property
    def latent_dim(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def no_discriminator(self) -> bool: ...

    @property
    def jit(self) -> bool | None: ...     # None until the command line's choice is resolved (jit_as_asked)


def build_learner(settings: LearnerSettings, num_features: int, imbalance: Imbalance,
                  extractor: keras.Model | None = None) -> Gamo | ClassifierOnly:
    """GAMO, or the classifier alone for the baselines (--classifier-only, --smote)."""
    if settings.jit is None:
        raise ValueError("settings.jit: resolve it first (gamo.backend.jit_as_asked)")
    jit = settings.jit
    adam = AdamStates(settings.lr, settings.beta1, shared_counter=not settings.standard_adam)
    if settings.is_baseline:
        classifier = nets.build_classifier(num_features, imbalance.num_classes, name="MLP")
        return ClassifierOnly(classifier, extractor, adam, jit)
    return Gamo(num_features, imbalance, settings.latent_dim, settings.batch_size, adam,
                reference_batchnorm=not settings.standard_batchnorm,
                use_discriminator=not settings.no_discriminator, jit=jit)
