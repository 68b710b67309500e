"""Convolutional GAMO: oversampling in a feature space learned end to end.

Each round of the outer loop (GAMO_REFERENCE.md section 5):
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

import argparse
from dataclasses import dataclass

import numpy as np

import dense_gamo_main as dense
import fashion_mnist_net as nets
from dense_net import inputs_and_targets_spec, mse, update
from dense_suppli import batch_slices, one_hot, run_cli, scores
from fashion_mnist_suppli import image_shape_for, parse_image_shape, to_images

keras, tf = dense.keras, dense.tf


@dataclass
class ConvSettings(dense.Settings):
    train: str = "fMnist_100_trainData.csv"
    test: str = "fMnist_100_testData.csv"
    image_shape: tuple | None = None
    num_features: int = nets.NUM_FEATURES


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train convolutional GAMO: a feature extractor learned with the classifier, "
                    "and GAMO in its feature space; defaults are the reference's.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = ConvSettings()
    dense.add_common_options(parser, defaults)
    parser.add_argument("--image-shape", type=parse_image_shape, default=None,
                        help="HxW or HxWxC of the flat rows (default: square, one channel)")
    parser.add_argument("--num-features", type=int, default=defaults.num_features,
                        help="size of F's feature vectors")
    return parser


class FeatureLearner:
    """F trained through the fixed classifier M (the reference's F+M model)."""

    def __init__(self, extractor, classifier, adam, batch_size, jit=True):
        self.extractor = extractor
        self.classifier = classifier
        self.batch_size = batch_size
        # The reference compiles F+M with the same Adam object as the game's models:
        # with its shared step counter (the default), F+M's updates advance it too.
        self.optimizer = adam.new(extractor.trainable_variables)
        self._step = tf.function(self._train_step, jit_compile=jit, input_signature=(
            inputs_and_targets_spec(extractor, classifier.output.shape[-1])))
        self._features = tf.function(lambda images: extractor(images, training=False),
                                     jit_compile=jit, reduce_retracing=True)

    def _train_step(self, images, targets):
        return update(self.optimizer, self.extractor.trainable_variables, lambda: mse(
            targets, self.classifier(self.extractor(images, training=True), training=False)))

    def epoch(self, images, onehot, rng):
        """One pass in a fresh random order, as Keras' fit(shuffle=True) does."""
        order = rng.permutation(len(images))
        for rows in batch_slices(len(images), self.batch_size):
            chosen = order[rows]
            self._step(images[chosen], onehot[chosen])

    def features(self, images, chunk=1024):
        return np.concatenate([self._features(images[start:start + chunk]).numpy()
                               for start in range(0, len(images), chunk)])

    def predict_labels(self, gamo, images):
        return gamo.predict_labels(self.features(images))


def main(argv=None):
    settings = dense.settings_from(build_parser().parse_args(argv), ConvSettings)
    dataset = dense.load_dataset(settings.train, settings.test, scale=not settings.no_scale,
                                 missing_hint="fMNIST_process.py")
    image_shape = image_shape_for(dataset.x_train.shape[1], settings.image_shape, settings.train)
    settings.image_shape = image_shape
    dense.claim_output_dir(settings)
    keras.utils.set_random_seed(settings.seed)
    extractor = nets.build_feature_extractor(image_shape, settings.num_features)
    if dense.is_baseline(settings):
        return train_baseline(settings, dataset, extractor, image_shape)
    gamo = dense.build_learner(settings, settings.num_features, dataset.imbalance)
    learner = FeatureLearner(extractor, gamo.classifier, gamo.adam, settings.batch_size, jit=settings.jit)
    run = dense.Run(settings, gamo, evaluate=None, extra_models={"Conv": extractor},
                    extra_optimizers=[learner.optimizer])
    x_train, y_train = dense.training_rows(run, dataset, images_summary(settings, image_shape))
    train_images = to_images(x_train, image_shape)
    test_images = to_images(dataset.x_test, image_shape)
    onehot = one_hot(y_train, gamo.num_classes)

    def evaluate():
        # F does not change during a pass: the round's training features are current.
        c = gamo.num_classes
        return (scores(y_train, gamo.predict_labels(run.train_features), c),
                scores(dataset.y_test, learner.predict_labels(gamo, test_images), c))

    run.evaluate = evaluate
    if settings.resume:
        run.resume()
    slices = batch_slices(len(y_train), settings.batch_size)
    return run.play_to_the_end(
        lambda: play_round(run, learner, train_images, y_train, onehot, slices))


def train_baseline(settings, dataset, extractor, image_shape):
    """The baselines: F and M trained together, one update per batch, steps / 2
    batches over the (SMOTE-balanced, for --smote) training images."""
    classifier_alone = dense.build_learner(settings, settings.num_features, dataset.imbalance,
                                           extractor=extractor)
    run = dense.Run(settings, classifier_alone,
                    dense.evaluation(classifier_alone, dataset, lambda x: to_images(x, image_shape)),
                    extra_models={"Conv": extractor})
    x_train, y_train = dense.training_rows(run, dataset, images_summary(settings, image_shape))
    images, onehot = to_images(x_train, image_shape), one_hot(y_train, classifier_alone.num_classes)
    if settings.resume:
        run.resume()
    slices = batch_slices(len(y_train), settings.batch_size)
    return run.play_to_the_end(lambda: run.play(images, onehot, slices, until=settings.steps))


def images_summary(settings, image_shape):
    return f"images {'x'.join(map(str, image_shape))} -> {settings.num_features} features"


def play_round(run, learner, images, labels, onehot, slices):
    """(a) F+M epoch, (b) features with the new F, (c) one pass of the game on them.

    A run resumed in the middle of a pass skips (a): its F is already trained.
    """
    if run.batches_into_pass(slices) == 0:
        learner.epoch(images, onehot, run.rng)
    features = learner.features(images)
    run.train_features = features
    run.learner.set_class_points(features, labels)
    run.play(features, onehot, slices, until=run.settings.steps)
    return features


if __name__ == "__main__":
    run_cli(main)
