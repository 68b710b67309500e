"""GAMO2pix: images from GAMO's generated feature vectors, one class at a time.

For each minority class k, a variational autoencoder (gamo.vae) is trained on
the class's real training images on top of the frozen feature extractor F
saved by convolutional GAMO; its decoder then turns GAMO samples (noise with
label k -> trunk G -> IGU_k's convex weights over the class's F-features) into
images. F is frozen, so each class's features are computed once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamo.backend import numpy_losses
from gamo.data import batch_slices, one_hot
from gamo.errors import InputError
from gamo.files import atomic_path
from gamo.images import class_titles, parse_names, to_images
from gamo.layers import ConvexCombination
from gamo.optim import AdamStates
from gamo.pictures import save_image_grid, save_overview, write_pngs
from gamo.run.checkpoint import read_checkpoint, write_checkpoint
from gamo.run.record import LossMeans, latest_losses, save_loss_table
from gamo.run.report import ScalarWriter, progress_bar
from gamo.run.settings import comparable
from gamo.run.stop import checkpointed_stop
from gamo.seeding import set_random_seed
from gamo.state import merged_names
from gamo.vae import VAE_LOSSES, ClassVae, named_vae_state

# isort: split
import keras

MODELS_FOLDER = re.compile(r"gamo_models_(\d+)$")


def newest_models_folder(gamo_dir):
    folders = [(int(m.group(1)), p) for p in Path(gamo_dir).glob("gamo_models_*")
               if p.is_dir() and (m := MODELS_FOLDER.search(p.name))]
    if not folders:
        raise InputError(f"{gamo_dir}: no gamo_models_<step> folder; run "
                         "fashion_mnist_gamo_main.py first, or pass --models DIR")
    return max(folders)[1]


@dataclass
class GamoModels:
    extractor: keras.Model
    trunk: keras.Model
    igus: dict


def load_gamo_models(folder, classes):
    """F, the trunk and IGU_k for each class, from one gamo_models_<step> folder."""
    folder = Path(folder)
    match = MODELS_FOLDER.search(folder.name)
    if not folder.is_dir() or not match:
        raise InputError(f"{folder}: not a gamo_models_<step> folder")
    step = match.group(1)
    needed = {"Conv": f"Conv_{step}.keras", "GEN": f"GEN_{step}.keras",
              **{k: f"GenP_{k}_{step}.keras" for k in classes}}
    missing = [name for name in needed.values() if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder}: missing {', '.join(missing)}")
    loaded = {}
    for key, name in needed.items():
        try:
            loaded[key] = keras.models.load_model(folder / name, compile=False, safe_mode=True)
        except Exception as error:  # a truncated or foreign file: say which
            raise InputError(f"{folder / name}: cannot load ({type(error).__name__})") from None
    models = GamoModels(loaded.pop("Conv"), loaded.pop("GEN"), loaded)
    for key, problem in model_problems(models):
        raise InputError(f"{folder / needed[key]}: {problem}")
    return models


def model_problems(models):
    """(key, problem) for each loaded model that is not what GAMO2pix needs."""
    F, G = models.extractor, models.trunk
    if len(F.inputs) != 1 or len(F.inputs[0].shape) != 4 or len(F.outputs) != 1:
        yield "Conv", "not a feature extractor (one image input, one feature output)"
    elif len(G.inputs) != 2 or len(G.outputs) != 1:
        yield "GEN", "not a generator trunk (inputs noise and label)"
    else:
        for k, igu in models.igus.items():
            layers = [layer for layer in igu.layers if isinstance(layer, ConvexCombination)]
            if len(layers) != 1 or igu.input.shape[-1] != G.output.shape[-1] \
                    or igu.output.shape[-1] != F.output.shape[-1]:
                yield k, "not an IGU of this trunk and feature extractor"


def gamo_features(models, k, count, rng):
    """GAMO samples of class k in feature space: IGU_k's convex combination of
    the class's F-features (the IGU holds them as its points)."""
    c = models.trunk.input[1].shape[-1]
    noise = rng.standard_normal((count, models.trunk.input[0].shape[-1])).astype(np.float32)
    code = models.trunk([noise, one_hot(np.full(count, k), c)], training=False)
    return keras.ops.convert_to_numpy(models.igus[k](code, training=False))


class PixRun:
    """The classes one after another, with checkpoints: at every save period
    the VAE in training (weights, Adam state, sampling seed), the step, the
    random generator, the run's Adam counter and the finished classes' images.
    after_step(run), if given, is called after every step (monitoring)."""

    def __init__(self, settings, dataset, models, classes, image_shape, after_step=None):
        self.settings, self.dataset, self.models = settings, dataset, models
        self.classes, self.image_shape, self.after_step = classes, image_shape, after_step
        self.out_dir = Path(settings.out_dir)
        self.rng = np.random.default_rng(settings.seed)
        self.adam = AdamStates(settings.lr, settings.beta1, shared_counter=not settings.standard_adam)
        self.position, self.step = 0, 0       # where the run stands: class index, its step
        self.finished = {}                    # class -> (generated images, real images)
        self.resumed_vae = None
        self.losses = LossMeans(VAE_LOSSES)
        self.loss_rows = np.zeros((0, 2 + len(VAE_LOSSES)))   # class, step, then the means since the last row
        self.board = ScalarWriter(settings.tensorboard) if settings.tensorboard else None

    def named_state(self, vae=None):
        """The run's Adam counter, and the VAE in training if any."""
        return merged_names(self.adam.named_variables(),
                                      named_vae_state(vae) if vae is not None else {})

    def checkpoint_root(self):
        return self.out_dir / "checkpoints"

    def save_checkpoint(self, vae=None):
        state = {"settings": comparable(self.settings), "position": self.position,
                 "step": self.step, "rng": self.rng.bit_generator.state}
        arrays = {f"{kind}_{k}": images for k, pair in self.finished.items()
                  for kind, images in zip(("generated", "real"), pair)}
        arrays.update(loss_rows=self.loss_rows, **self.losses.state())
        number = self.position * self.settings.steps + self.step
        write_checkpoint(self.checkpoint_root(), number, self.named_state(vae), state, arrays)

    def resume(self):
        """Continue from the newest usable checkpoint: between two classes, or
        inside one, whose VAE it restores."""
        built = {}

        def variables_for(state):
            position, step = state["position"], state["step"]
            if step == 0:
                return self.named_state()
            built[position] = self.new_vae(self.classes[position])
            return self.named_state(built[position])

        folder, state, arrays = read_checkpoint(self.checkpoint_root(), self.settings, variables_for,
                                                self.check_checkpoint)
        self.position, self.step = state["position"], state["step"]
        self.rng.bit_generator.state = state["rng"]
        self.finished = {k: (arrays[f"generated_{k}"], arrays[f"real_{k}"])
                         for k in self.classes[:self.position]}
        self.resumed_vae = built.get(self.position) if self.step else None
        if "loss_rows" in arrays:       # a checkpoint written before losses were recorded has none
            self.loss_rows = arrays["loss_rows"]
            self.losses.restore(arrays)
        print(f"resumed from {folder}: {self.position} of {len(self.classes)} classes done, "
              f"{self.step} steps into the next")

    def check_checkpoint(self, state, arrays):
        """Raise ValueError, KeyError or TypeError if a checkpoint does not fit this run."""
        position, step = state["position"], state["step"]
        if not (isinstance(position, int) and 0 <= position <= len(self.classes) and isinstance(step, int)
                and 0 <= step <= self.settings.steps and (step == 0 or position < len(self.classes))):
            raise ValueError(f"class {position!r}, step {step!r} are not a place in this run")
        np.random.default_rng().bit_generator.state = state["rng"]
        for k in self.classes[:position]:
            if arrays[f"generated_{k}"].ndim != 4 or arrays[f"real_{k}"].ndim != 4:
                raise ValueError(f"the images of class {k} are not images")

    def new_vae(self, k):
        """Class k's VAE, with the same initial weights whether resumed or not."""
        set_random_seed(self.settings.seed + k)
        return ClassVae(self.models.extractor.output.shape[-1], self.image_shape, self.settings,
                        seed=self.settings.seed + k, adam=self.adam)

    def stopped(self):
        if self.board is not None:
            self.board.close()
        return (f"stopped in class {self.classes[self.position]} at step {self.step}: checkpoint in "
                f"{self.checkpoint_root()}/; continue with the same command and --resume")

    def play(self):
        """Every class not finished yet; then the overview picture."""
        s = self.settings
        progress = progress_bar(s.steps * len(self.classes), done=self.position * s.steps + self.step)
        with checkpointed_stop(self.stopped) as stop:
            for k in self.classes[self.position:]:
                images = to_images(self.dataset.x_train[self.dataset.y_train == k], self.image_shape)
                features = self.models.extractor.predict(images, batch_size=1024, verbose=0)  # F frozen
                progress.set_description(f"class {k}")
                self.train_class(k, images, features, stop, progress)
        progress.close()
        if self.board is not None:
            self.board.close()
        save_overview(self.out_dir / "overview.png", [self.finished[k][0] for k in self.classes],
                      [self.finished[k][1] for k in self.classes],
                      class_titles(self.dataset, self.classes, parse_names(s.names)),
                      self.image_shape, s.as_stored)

    def train_class(self, k, images, features, stop, progress):
        """Train class k's VAE; write its pictures, models and generated images."""
        s = self.settings
        vae = self.resumed_vae or self.new_vae(k)
        self.resumed_vae = None
        pictures, model_dir = self.out_dir / f"Pictures_{k}", self.out_dir / f"models_{k}"
        slices = batch_slices(len(images), s.batch_size)
        while self.step < s.steps:
            for rows in slices[self.step % len(slices):]:
                self.add_losses(k, numpy_losses(vae.compiled_step(features[rows], images[rows])), progress)
                progress.update(1)
                if self.step % s.picture_every == 0:
                    save_class_pictures(vae, k, images, features, self.models, pictures, self.step, self.rng)
                    self.record_losses(k)
                save_now = self.step % s.save_every == 0 and self.step != 0
                if save_now:
                    save_vae(vae, model_dir, self.step)
                self.step += 1
                if self.after_step is not None:
                    self.after_step(self)
                if save_now or stop.signum:
                    self.save_checkpoint(vae)
                stop.raise_if_asked()
                if self.step >= s.steps:
                    break
        save_class_pictures(vae, k, images, features, self.models, pictures, self.step, self.rng)
        self.record_losses(k)
        save_vae(vae, model_dir, self.step)
        generated = vae.images_from(gamo_features(self.models, k, s.num_images, self.rng))
        write_pngs(self.out_dir / f"generated_{k}", generated)
        self.finished[k] = (generated, images[self.rng.permutation(len(images))])
        self.position, self.step = self.position + 1, 0
        self.save_checkpoint()


    def add_losses(self, k, losses, progress):
        self.losses.add(losses, self.step, self.checkpoint_root(), where=f"class {k}, ")
        progress.set_postfix(latest_losses(self.losses.latest), refresh=False)

    def record_losses(self, k):
        """A row of losses.csv: the means of the VAE's losses since the previous row."""
        means = self.losses.take()
        self.loss_rows = np.vstack([self.loss_rows, [k, self.step, *means.values()]])
        save_loss_table(self.out_dir / "losses.csv", ["class", "step"], VAE_LOSSES, self.loss_rows)
        if self.board is not None:
            self.board.write(self.position * self.settings.steps + self.step,
                             {f"class_{k}/{name}": mean for name, mean in means.items()})


def save_class_pictures(vae, k, images, features, models, folder, step, rng):
    """Train_<step>: 3 real images beside their reconstructions; Test_<step>: 9 GAMO samples."""
    chosen = rng.choice(len(images), size=3, replace=len(images) < 3)
    shape = images.shape[1:3]
    pairs = np.stack([images[chosen], vae.images_from(features[chosen])], axis=1)
    save_image_grid(folder / f"Train_{step}.png", pairs.reshape(3, 2, -1), shape)
    samples = vae.images_from(gamo_features(models, k, 9, rng))
    save_image_grid(folder / f"Test_{step}.png", samples.reshape(3, 3, -1), shape)


def save_vae(vae, folder, step):
    for name, model in (("encoder", vae.encoder), ("decoder", vae.decoder)):
        with atomic_path(folder / f"{name}_{step}.keras") as tmp:
            model.save(tmp)
