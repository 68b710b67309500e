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
from gamo.run.base import RunBase
from gamo.run.record import save_loss_table
from gamo.run.report import progress_bar
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


class PixRun(RunBase):
    """The classes one after another, on the run machinery every script shares
    (gamo.run.base): at every save period a checkpoint of the run's Adam counter,
    the VAE of every class that has trained (weights, Adam state),
    the steps each has done, the random generator and the finished classes'
    images. A run resumed with more --steps trains every class on from where it
    stopped, class after class. after_step(run), if given, is called after
    every step (monitoring)."""

    def __init__(self, settings, dataset, models, classes, image_shape, after_step=None):
        self.dataset, self.models = dataset, models
        self.classes, self.image_shape, self.after_step = classes, image_shape, after_step
        self.rng = np.random.default_rng(settings.seed)
        # As the original: the training rows shuffled once, seeded, before each class's
        # are taken, so its fixed VAE batches are a random split of the class, whatever
        # the file's order. The first draw of the run's generator, resumed or not.
        self.row_order = self.rng.permutation(len(dataset.y_train))
        super().__init__(settings, VAE_LOSSES, [self.rng])
        self.adam = AdamStates(settings.lr, settings.beta1, shared_counter=not settings.standard_adam)
        self.done = {k: 0 for k in classes}   # steps each class's VAE has trained
        self.vaes = {}                        # class -> its VAE, once it has trained
        self.finished = {}                    # class -> (generated images, real images)
        self.current = None                   # the class in training
        self.loss_rows = np.zeros((0, 2 + len(VAE_LOSSES)))   # class, step, then the means since the last row

    @property
    def step(self):
        """The step of the class in training."""
        return self.done.get(self.current, 0)

    def batches_done(self):
        return sum(self.done.values())

    def named_state(self, vaes=None, prefix=True):
        """The run's Adam counter and every VAE that has trained, each under its class."""
        vaes = self.vaes if vaes is None else vaes
        return merged_names(self.adam.named_variables(), *(
            named_vae_state(vae, f"class_{k}/" if prefix else "") for k, vae in vaes.items()))

    def save_checkpoint(self):
        arrays = {f"{kind}_{k}": images for k, pair in self.finished.items()
                  for kind, images in zip(("generated", "real"), pair)}
        done = {str(k): n for k, n in self.done.items()}
        self.write_state(self.batches_done(), self.named_state(), {"done": done},
                         {**arrays, "loss_rows": self.loss_rows})

    def stored_generators(self, state):
        return state["generators"] if "generators" in state else [state["rng"]]    # first format: "rng"

    def resume(self):
        """Continue from the newest usable checkpoint: between two classes, or
        inside one, whose VAE it restores with every other that has trained."""
        built = {}

        def variables_for(state):
            done, in_training = self.stored_progress(state)
            built.clear()
            if "done" in state:
                built.update({k: self.new_vae(k) for k in self.classes if done[k] > 0})
                return self.named_state(built)
            # The first format keeps the VAE in training only, under names without a class.
            built.update({k: self.new_vae(k) for k in in_training})
            return self.named_state(built, prefix=False)

        folder, state, arrays = self.read_state(variables_for, self.check_checkpoint)
        self.done, _ = self.stored_progress(state)
        self.vaes = built
        self.finished = {k: (arrays[f"generated_{k}"], arrays[f"real_{k}"]) for k in self.classes
                         if f"generated_{k}" in arrays}
        if "loss_rows" in arrays:       # a checkpoint written before losses were recorded has none
            self.loss_rows = arrays["loss_rows"]
        print(f"resumed from {folder}: " + ", ".join(f"class {k} {n} steps" for k, n in self.done.items()))

    def stored_progress(self, state):
        """({class: steps done}, classes whose VAE only the first format keeps) of a checkpoint."""
        if "done" in state:
            return {k: int(state["done"][str(k)]) for k in self.classes}, ()
        position, step, steps = state["position"], state["step"], state["settings"]["steps"]
        if not (isinstance(position, int) and 0 <= position <= len(self.classes) and isinstance(step, int)
                and 0 <= step <= steps and (step == 0 or position < len(self.classes))):
            raise ValueError(f"class {position!r}, step {step!r} are not a place in this run")
        done = {k: steps if index < position else step if index == position else 0
                for index, k in enumerate(self.classes)}
        if self.settings.steps != steps:
            raise InputError(f"{self.checkpoint_root}: written before GAMO2pix kept every class's VAE; it "
                             f"resumes with --steps {steps} only")
        return done, tuple(k for k in self.classes[position:position + 1] if step > 0)

    def check_checkpoint(self, state, arrays):
        """Raise ValueError, KeyError or TypeError if a checkpoint does not fit this run."""
        done, _ = self.stored_progress(state)
        for k, n in done.items():
            if isinstance(n, bool) or not 0 <= n:
                raise ValueError(f"class {k}: {n!r} steps are not a place in this run")
            if n > self.settings.steps:
                raise InputError(f"{self.checkpoint_root}: class {k} has trained {n} steps, past --steps "
                                 f"{self.settings.steps}; give --steps {n} or more to continue it")
            stored = [arrays[f"{kind}_{k}"] for kind in ("generated", "real") if f"generated_{k}" in arrays]
            if any(images.ndim != 4 for images in stored):
                raise ValueError(f"the images of class {k} are not images")

    def new_vae(self, k):
        """Class k's VAE, with the same initial weights whether resumed or not."""
        set_random_seed(self.settings.seed + k)
        return ClassVae(self.models.extractor.output.shape[-1], self.image_shape, self.settings,
                        seed=self.settings.seed + k, adam=self.adam)

    def stopped(self):
        self.close_board()
        return (f"stopped in class {self.current} at step {self.step}: checkpoint in "
                f"{self.checkpoint_root}/; continue with the same command and --resume")

    def to_train(self):
        """The classes with steps to go or images to make, in order."""
        return [k for k in self.classes if self.done[k] < self.settings.steps or k not in self.finished]

    def play(self):
        """Every class not finished yet; then the overview picture."""
        s = self.settings
        progress = progress_bar(s.steps * len(self.classes), done=self.batches_done())
        with checkpointed_stop(self.stopped) as stop:
            for k in self.to_train():
                images = self.class_images(k)
                features = self.models.extractor.predict(images, batch_size=1024, verbose=0)  # F frozen
                progress.set_description(f"class {k}")
                self.current = k
                self.train_class(k, images, features, stop, progress)
        progress.close()
        self.close_board()
        save_overview(self.out_dir / "overview.png", [self.finished[k][0] for k in self.classes],
                      [self.finished[k][1] for k in self.classes],
                      class_titles(self.dataset, self.classes, parse_names(s.names)),
                      self.image_shape, s.as_stored)

    def class_images(self, k):
        """Class k's training images, in the run's seeded order of the training rows."""
        x, y = self.dataset.x_train[self.row_order], self.dataset.y_train[self.row_order]
        return to_images(x[y == k], self.image_shape)

    def train_class(self, k, images, features, stop, progress):
        """Train class k's VAE on to --steps; write its pictures, models and generated images."""
        s = self.settings
        vae = self.vaes.get(k) or self.new_vae(k)
        self.vaes[k] = vae
        pictures, model_dir = self.out_dir / f"Pictures_{k}", self.out_dir / f"models_{k}"
        slices = batch_slices(len(images), s.batch_size)
        drawn = self.done[k] if k in self.finished else None    # trained longer: that step is drawn
        while self.done[k] < s.steps:
            for rows in slices[self.done[k] % len(slices):]:
                noise = vae.noise(self.rng, len(images[rows]))
                losses = numpy_losses(vae.compiled_step(features[rows], images[rows], noise))
                self.add_losses(losses, self.done[k], progress, where=f"class {k}, ")
                progress.update(1)
                step = self.done[k]
                if step % s.picture_every == 0 and step != drawn:
                    save_class_pictures(vae, k, images, features, self.models, pictures, step, self.rng)
                    self.record_losses(k)
                save_now = self.done[k] % s.save_every == 0 and self.done[k] != 0
                if save_now:
                    save_vae(vae, model_dir, self.done[k])
                self.done[k] += 1
                if self.after_step is not None:
                    self.after_step(self)
                if save_now or stop.signum:
                    self.save_checkpoint()
                stop.raise_if_asked()
                if self.done[k] >= s.steps:
                    break
        save_class_pictures(vae, k, images, features, self.models, pictures, self.done[k], self.rng)
        self.record_losses(k)
        save_vae(vae, model_dir, self.done[k])
        generated = vae.images_from(gamo_features(self.models, k, s.num_images, self.rng), self.rng)
        write_pngs(self.out_dir / f"generated_{k}", generated)
        self.finished[k] = (generated, images[self.rng.permutation(len(images))])
        self.current = None
        self.save_checkpoint()

    def record_losses(self, k):
        """A row of losses.csv: the means of the VAE's losses since the previous row."""
        means = self.losses.take()
        self.loss_rows = np.vstack([self.loss_rows, [k, self.done[k], *means.values()]])
        save_loss_table(self.out_dir / "losses.csv", ["class", "step"], VAE_LOSSES, self.loss_rows)
        self.write_scalars(self.batches_done(), {f"class_{k}/{name}": mean for name, mean in means.items()})


def save_class_pictures(vae, k, images, features, models, folder, step, rng):
    """Train_<step>: 3 real images beside their reconstructions; Test_<step>: 9 GAMO samples."""
    chosen = rng.choice(len(images), size=3, replace=len(images) < 3)
    shape = images.shape[1:3]
    pairs = np.stack([images[chosen], vae.images_from(features[chosen], rng)], axis=1)
    save_image_grid(folder / f"Train_{step}.png", pairs.reshape(3, 2, -1), shape)
    samples = vae.images_from(gamo_features(models, k, 9, rng), rng)
    save_image_grid(folder / f"Test_{step}.png", samples.reshape(3, 3, -1), shape)


def save_vae(vae, folder, step):
    for name, model in (("encoder", vae.encoder), ("decoder", vae.decoder)):
        with atomic_path(folder / f"{name}_{step}.keras") as tmp:
            model.save(tmp)
