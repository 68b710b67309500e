"""Convolutional GAMO: oversampling in a feature space learned end to end.

Each round of the original's outer loop:
  (a) one epoch of F+M over the training set (batch 32, reshuffled every epoch)
      that updates the feature extractor F only (M stays fixed);
  (b) the features of the whole training set, computed with the updated F;
  (c) one pass of the dense game over the batches on those features, with the
      IGUs combining them (dense_gamo_main's compiled step, unchanged).
As in the reference, the run stops inside the pass as soon as step reaches
--steps: a default run ends at exactly step 50000, in its 89th round.
The baselines (--classifier-only, --smote) train F and M together instead, one
update per batch, and stop after steps / 2 batches.

    python fMNIST_process.py             # writes fMnist_100_trainData.csv, ...
    python fashion_mnist_gamo_main.py    # trains, writes fMnist_100_Gamo/
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import numpy as np

from dense_suppli import (
    Run,
    batch_slices,
    claim_output_dir,
    class_counts,
    evaluation,
    import_backend_quietly,
    load_dataset,
    new_parser,
    one_hot,
    print_summary,
    run_cli,
    running_our_script,
    scores,
    settings_from,
    training_rows,
)

# TensorFlow's oneDNN kernels run F fastest (dense_net.jit_for_convolutions); TensorFlow
# turns them on by itself only on some CPUs. Read when TensorFlow is imported; set
# TF_ENABLE_ONEDNN_OPTS=0 to keep them off.
if running_our_script():
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import_backend_quietly()   # before Keras, which imports its backend

import dense_net  # noqa: E402
import fashion_mnist_net as nets  # noqa: E402
from dense_gamo_main import METHODS, Learner, Pass, Settings, add_game_options, build_learner, train  # noqa: E402
from dense_net import (  # noqa: E402
    compile_function,
    inputs_and_targets_spec,
    jit_for_convolutions,
    mse,
    to_numpy,
    update,
)
from fashion_mnist_suppli import image_shape_for, parse_image_shape, to_images  # noqa: E402


@dataclass
class ConvSettings(Settings):
    train: str = "fMnist_100_trainData.csv"
    test: str = "fMnist_100_testData.csv"
    image_shape: tuple | None = None
    num_features: int = nets.NUM_FEATURES

    def positive_integers(self):
        return (*super().positive_integers(), "num_features")


def build_parser():
    parser = new_parser("Train convolutional GAMO: a feature extractor learned with the classifier, "
                        "and GAMO in its feature space; defaults are the reference's.")
    defaults = ConvSettings()
    add_game_options(parser, defaults)
    parser.add_argument("--image-shape", type=parse_image_shape, default=None,
                        help="HxW or HxWxC of the flat rows (default: square, one channel)")
    parser.add_argument("--num-features", type=int, default=defaults.num_features,
                        help="size of F's feature vectors")
    return parser


class FeatureGamo(Learner):
    """GAMO in the feature space of an extractor F that learns through the fixed
    classifier M (the reference's F+M model), round after round."""

    def __init__(self, extractor, gamo, batch_size, jit=True):
        self.extractor, self.gamo, self.batch_size = extractor, gamo, batch_size
        self.num_classes = gamo.num_classes
        classifier = gamo.players.classifier
        # The reference compiles F+M with the same Adam object as the game's models:
        # with its shared step counter (the default), F+M's updates advance it too.
        self.optimizer = gamo.adam.new(extractor.trainable_variables)
        self.compiled_feature_step = compile_function(
            lambda images, targets: update(self.optimizer, extractor.trainable_variables, lambda: mse(
                targets, classifier(extractor(images, training=True), training=False))),
            self.state_variables(), jit_for_convolutions(jit),
            signature=inputs_and_targets_spec(extractor, self.num_classes))
        self.compiled_features = compile_function(lambda images: extractor(images, training=False),
                                                  extractor.variables, jit_for_convolutions(jit))
        self.train_features = None
        self.epoch_losses = []      # F+M's losses of the last epoch, reported with the next batch

    def epoch(self, images, onehot, rng):
        """(a) One F+M pass in a fresh random order, as Keras' fit(shuffle=True) does."""
        order = rng.permutation(len(images))
        for rows in batch_slices(len(images), self.batch_size):
            chosen = order[rows]
            self.epoch_losses.append(self.compiled_feature_step(images[chosen], onehot[chosen]))

    def features(self, images, chunk=1024):
        return np.concatenate([to_numpy(self.compiled_features(images[start:start + chunk]))
                               for start in range(0, len(images), chunk)])

    def rounds(self, images, labels, onehot, slices, rng, resumed_mid_pass=False):
        """Passes for the training loop: each round's F+M epoch (skipped by a run
        resumed inside a pass, whose F is already trained), (b) the training
        features with the new F for the IGUs, then (c) the game's pass on them."""
        for round_number in itertools.count():
            if round_number > 0 or not resumed_mid_pass:
                self.epoch(images, onehot, rng)
            self.train_features = self.features(images)
            self.gamo.players.set_class_points(self.train_features, labels)
            yield Pass(self.train_features, onehot, slices)

    def evaluation(self, train_images, train_labels, test_images, test_labels):
        """F does not change during a pass: the round's training features are current."""
        def evaluate():
            if self.train_features is None:       # resumed at the very end: no pass played
                self.train_features = self.features(train_images)
            c = self.num_classes
            return (scores(train_labels, self.gamo.predict_labels(self.train_features), c),
                    scores(test_labels, self.gamo.predict_labels(self.features(test_images)), c))
        return evaluate

    # ------------------------------------------------------------ the Learner interface
    def train_on_batch(self, x, y_onehot, rng):
        """The game's batch; the first batch of a pass also reports its epoch's F+M losses."""
        losses = self.gamo.train_on_batch(x, y_onehot, rng)
        if self.epoch_losses:
            losses = {"FM": np.array([to_numpy(loss) for loss in self.epoch_losses]), **losses}
            self.epoch_losses = []
        return losses

    def loss_names(self):
        return ("FM", *self.gamo.loss_names())

    def predict_batch(self, images):
        return self.gamo.predict_batch(self.compiled_features(images))

    def classifier_updates(self):
        return self.gamo.classifier_updates()

    def models(self):
        return {"Conv": self.extractor, **self.gamo.models()}

    def named_state(self):
        return dense_net.merged_names(
            dense_net.named_model_variables("Conv", self.extractor),
            dense_net.named_optimizer_variables("adam_Conv", self.optimizer), self.gamo.named_state())


def main(argv=None):
    settings = settings_from(build_parser().parse_args(argv), ConvSettings)
    dataset = load_dataset(settings.train, settings.test, scale=not settings.no_scale,
                           missing_hint="fMNIST_process.py")
    settings.image_shape = image_shape_for(dataset.x_train.shape[1], settings.image_shape, settings.train)
    claim_output_dir(settings)
    dense_net.set_random_seed(settings.seed)
    extractor = nets.build_feature_extractor(settings.image_shape, settings.num_features)
    if settings.is_baseline:
        learner = build_learner(settings, settings.num_features, dataset.imbalance, extractor=extractor)
    else:
        learner = FeatureGamo(extractor, build_learner(settings, settings.num_features, dataset.imbalance),
                              settings.batch_size, jit=settings.jit)
    rng = np.random.default_rng(settings.seed)
    x, y = training_rows(dataset, rng, settings.seed if settings.smote else None, settings.train)
    print_summary(settings, dataset, y, METHODS[settings.method][0], more=(
        f"images {'x'.join(map(str, settings.image_shape))} -> {settings.num_features} features"))
    images, test_images = to_images(x, settings.image_shape), to_images(dataset.x_test, settings.image_shape)
    onehot, slices = one_hot(y, learner.num_classes), batch_slices(len(y), settings.batch_size)
    if settings.is_baseline:
        evaluate = evaluation(learner, dataset, lambda rows: to_images(rows, settings.image_shape))
    else:
        evaluate = learner.evaluation(images, y, test_images, dataset.y_test)
    run = Run(settings, learner, evaluate, rng, class_counts(dataset, y))
    if settings.resume:
        run.resume()
    if settings.is_baseline:
        return train(run, itertools.repeat(Pass(images, onehot, slices)))
    return train(run, learner.rounds(images, y, onehot, slices, rng,
                                     resumed_mid_pass=(run.step // 2) % len(slices) != 0))


def cli():
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)


if __name__ == "__main__":
    cli()
