"""Time GAMO's compiled step against the reference's call pattern, in one process.

Dense case: the same networks on the Fashion-MNIST IR-100 set flattened to 784
features (built in memory from the Debian package dataset-fashion-mnist if it
is installed, else random data of the same shape and class counts).

  (a) compiled: Gamo.train_on_batch, one compiled call per batch;
  (b) reference: one train_on_batch per network update and one predict per
      generator or IGU call, in the original code's order.

Convolutional case (--case conv or all): seconds per F+M epoch (our compiled
step against Keras' fit() on the reference's F+M model) and ms per game batch
on 512-d features, compiled against the reference call pattern.

GAMO2pix case (--case pix or all): ms per VAE step with each class's features
computed once (what fashion_mnist_gamo2pix_main.py does) against recomputing
F on every batch, both compiled.

Memory case (--case memory): a real dense run of 10000 steps (evaluations,
pictures and saves included) with the peak resident memory at 10% and at 100%
of it (and at 50%); the growth between 10% and 100% must stay below 5%.

The dense case also times the default step (the reference's Keras 2.2
numerics) against --standard-adam --standard-batchnorm, interleaved in one
process.

Prints ms per batch (median) for each, their ratio and the peak resident
memory; the last line is a JSON object with those figures.

    python bench/speed.py [--case dense|conv|pix|memory|all] [--batches 300] [--reference-batches 200]
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.environment import import_backend_quietly, prefer_onednn, prefer_sleeping_threads

prefer_onednn()            # as the convolutional script does
prefer_sleeping_threads()
import_backend_quietly()   # before Keras, which imports its backend

import keras  # noqa: E402

from gamo import game, prepare, seeding  # noqa: E402
from gamo.backend import BACKEND, compile_function  # noqa: E402
from gamo.cli import dense  # noqa: E402
from gamo.data import imbalance_of, one_hot, relabel_by_size, sample_fake_labels, scale_pixels  # noqa: E402
from gamo.optim import AdamStates  # noqa: E402
from gamo.prepare import DEBIAN_FASHION_DIR  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402

if BACKEND == "tensorflow":
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")   # the reference pattern's predict() retraces noisily


def fashion_ir100(seed=0):
    """(features, labels, description): the flattened IR-100 training set."""
    rng = np.random.default_rng(seed)
    counts = prepare.REFERENCE_TRAIN_COUNTS
    if Path(DEBIAN_FASHION_DIR).is_dir():
        split = prepare.read_idx_split(DEBIAN_FASHION_DIR, "train")
        rows = np.concatenate(prepare.draw_per_class(split, counts, 0, prepare.TRAIN_POOL, rng, replace=True))
        images, labels = prepare.transpose_images(split.images[rows]), split.labels[rows]
        source = f"Fashion-MNIST IR-100 from {DEBIAN_FASHION_DIR}"
    else:
        labels = np.repeat(np.arange(10), counts)
        images = rng.integers(0, 256, (labels.size, prepare.NUM_PIXELS))
        source = "random data shaped like Fashion-MNIST IR-100 (Debian package not installed)"
    labels, _, _ = relabel_by_size(labels, labels)
    order = rng.permutation(labels.size)
    return scale_pixels(images)[order], labels[order], source


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_ms(times):
    return 1000 * statistics.median(times)


def finished(results):
    """Wait for a step's results, a loss or a dict of them (JAX dispatches asynchronously)."""
    keras.ops.convert_to_numpy(next(iter(results.values())) if isinstance(results, dict) else results)


CPU_MS: dict[str, float] = {}     # CPU time (all threads) per batch or epoch, by what was timed


def time_batches(train_batch, x, onehot, batches, warmup, batch_size=32):
    """Median seconds per call of train_batch over `batches` full batches after warm-up."""
    starts = range(0, len(x) - batch_size + 1, batch_size)
    order = [starts[i % len(starts)] for i in range(warmup + batches)]
    times = []
    for index, start in enumerate(order):
        began = time.perf_counter()
        train_batch(x[start:start + batch_size], onehot[start:start + batch_size])
        if index >= warmup:
            times.append(time.perf_counter() - began)
    return times


# ---------------------------------------------------------------- reference call pattern

class ReferencePattern:
    """The reference's per-network framework calls, on the same networks.

    M and D are compiled on their own; for every minority class k, G+IGU_k+M
    and G+IGU_k+D are compiled with M and D frozen in them (their train
    functions are traced while M and D are trainable, then frozen: Keras 3
    reads trainable flags when it traces).
    """

    def __init__(self, gamo):
        self.g, self.p = gamo, gamo.players
        p, c = self.p, gamo.num_classes
        p.classifier.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), "mse")
        p.discriminator.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), "mse")
        noise = keras.Input((gamo.latent_dim,))
        label = keras.Input((c,))
        self.against_m, self.against_d = {}, {}
        for k, igu in p.igus.items():
            sample = igu(p.trunk([noise, label]))
            self.against_m[k] = keras.Model([noise, label], p.classifier(sample))
            self.against_d[k] = keras.Model([noise, label], p.discriminator([sample, label]))

    def warm_up_and_freeze(self, x, onehot):
        p = self.p
        p.classifier.train_on_batch(x, onehot)
        p.discriminator.train_on_batch([x, onehot], np.ones((len(x), 1)))
        p.classifier.trainable = False
        p.discriminator.trainable = False
        for k in p.minority:
            self.against_m[k].compile(keras.optimizers.Adam(2e-4, beta_1=0.5), "mse")
            self.against_d[k].compile(keras.optimizers.Adam(2e-4, beta_1=0.5), "mse")

    def train_batch(self, x, onehot, rng):
        g, p, rows, c = self.g, self.p, len(x), self.g.num_classes
        p.classifier.train_on_batch(x, onehot)
        p.discriminator.train_on_batch([x, onehot], 1 - rng.uniform(0, 0.1, (rows, 1)))
        fake_labels = sample_fake_labels(rng, g.imbalance, rows)
        code = p.trunk.predict([rng.standard_normal((rows, g.latent_dim)), fake_labels], verbose=0)
        fake = np.zeros_like(x)
        label_ids = fake_labels.argmax(axis=1)
        for k in p.minority:
            mine = label_ids == k
            if mine.any():
                fake[mine] = p.igus[k].predict(code[mine], verbose=0)
        p.classifier.train_on_batch(fake, fake_labels)
        p.discriminator.train_on_batch([fake, fake_labels], rng.uniform(0, 0.1, (rows, 1)))
        for k in p.minority:
            noise = rng.standard_normal((g.rows_per_class, g.latent_dim))
            labels = one_hot(np.full(g.rows_per_class, k), c)
            self.against_m[k].train_on_batch([noise, labels], 1 - labels)
            self.against_d[k].train_on_batch([noise, labels], np.ones((g.rows_per_class, 1)))


JIT = True          # False with --smoke: everything compiled without XLA


def new_gamo(x, labels, standard=False):
    """GAMO with the reference's numerics, or with --standard-adam --standard-batchnorm."""
    seeding.set_random_seed(0)
    adam = AdamStates(2e-4, 0.5, shared_counter=not standard)
    gamo = game.Gamo(x.shape[1], imbalance_of(labels), adam=adam, reference_batchnorm=not standard, jit=JIT)
    gamo.players.set_class_points(x, labels)
    return gamo


def compare_numerics(x, labels, batches, block=20):
    """Median ms per dense batch, the reference's numerics (the default) against
    --standard-adam --standard-batchnorm: both in this process, timed in
    alternating blocks of `block` batches so that both see the same machine."""
    onehot = one_hot(labels, labels.max() + 1)
    rng = np.random.default_rng(0)
    players = {"reference numerics": new_gamo(x, labels),
               "standard numerics": new_gamo(x, labels, standard=True)}
    for gamo in players.values():          # compile both batch shapes first
        time_batches(lambda xb, yb, g=gamo: g.train_on_batch(xb, yb, rng), x, onehot, 0, 2)
        gamo.train_on_batch(x[:8], onehot[:8], rng)
    times = {name: [] for name in players}
    for index in range(math.ceil(batches / block)):
        order = list(players.items()) if index % 2 == 0 else list(players.items())[::-1]
        for name, gamo in order:
            times[name] += time_batches(lambda xb, yb, g=gamo: finished(g.train_on_batch(xb, yb, rng)),
                                        x, onehot, block, 0)
    medians = {name: median_ms(values) for name, values in times.items()}
    ratio = medians["reference numerics"] / medians["standard numerics"]
    print("dense step, interleaved: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items())
          + f" (median of {len(times['standard numerics'])} each); ratio {ratio:.3f}")
    return medians["reference numerics"], medians["standard numerics"]


def compare_game(x, labels, args, name):
    """Median ms per game batch: compiled step, then the reference call pattern."""
    onehot = one_hot(labels, labels.max() + 1)
    rng = np.random.default_rng(0)
    gamo = new_gamo(x, labels)
    began = time.perf_counter()
    gamo.train_on_batch(x[:32], onehot[:32], rng)
    print(f"{name} compiled step: first call (tracing + XLA compilation) "
          f"{time.perf_counter() - began:.1f} s")
    cpu_began = time.process_time()
    compiled = time_batches(lambda xb, yb: finished(gamo.train_on_batch(xb, yb, rng)), x, onehot,
                            args.batches, args.warmup)
    CPU_MS[name] = 1000 * (time.process_time() - cpu_began) / (args.batches + args.warmup)
    print(f"{name} compiled step: median {median_ms(compiled):.1f} ms per batch over {len(compiled)} batches "
          f"(p90 {1000 * np.percentile(compiled, 90):.1f} ms; CPU {CPU_MS[name]:.1f} ms per batch, mean)")
    if args.skip_reference or BACKEND != "tensorflow":
        print(f"{name} reference call pattern: not timed (it is timed on TensorFlow, the original's backend)")
        return median_ms(compiled), None
    reference = ReferencePattern(new_gamo(x, labels))
    reference.warm_up_and_freeze(x[:32], onehot[:32])
    reference_times = time_batches(lambda xb, yb: reference.train_batch(xb, yb, rng), x, onehot,
                                   args.reference_batches, min(args.warmup, 5))
    print(f"{name} reference call pattern: median {median_ms(reference_times):.1f} ms per batch over "
          f"{len(reference_times)} batches")
    return median_ms(compiled), median_ms(reference_times)


def compare_feature_epoch(images, labels, epochs):
    """Seconds per F+M epoch of our compiled step and per pass of features over
    the training images; the learner, for the game's timing."""
    from gamo import feature_game, nets

    onehot = one_hot(labels, labels.max() + 1)
    rng = np.random.default_rng(0)
    seeding.set_random_seed(0)
    extractor = nets.build_feature_extractor()
    learner = feature_game.FeatureGamo(extractor, game.Gamo(nets.NUM_FEATURES, imbalance_of(labels), jit=JIT),
                               batch_size=32, jit=JIT)
    learner.epoch(images[:64], onehot[:64], rng)                  # compile
    learner.features(images[:2048])
    ours, features, cpu = [], [], []
    for _ in range(epochs):
        began, cpu_began = time.perf_counter(), time.process_time()
        learner.epoch(images, onehot, rng)
        finished(extractor.trainable_variables[0].value)
        ours.append(time.perf_counter() - began)
        cpu.append(time.process_time() - cpu_began)
        began = time.perf_counter()
        learner.features(images)
        features.append(time.perf_counter() - began)
    CPU_MS["conv epoch"] = 1000 * statistics.median(cpu)
    print(f"conv F+M epoch: compiled {statistics.median(ours):.2f} s (CPU {statistics.median(cpu):.2f} s); "
          f"features of {len(images)} images {statistics.median(features):.2f} s (medians of {epochs})")
    return statistics.median(ours), statistics.median(features), learner


def time_keras_fit(learner, images, labels, epochs):
    """Seconds per epoch of Keras 3's fit() on the reference's F+M model."""
    onehot = one_hot(labels, labels.max() + 1)
    extractor, classifier = learner.extractor, learner.gamo.players.classifier
    classifier.trainable = False
    joined = keras.Model(extractor.input, classifier(extractor.output))
    joined.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), "mse")
    joined.fit(images[:64], onehot[:64], batch_size=32, epochs=1, verbose=0)
    theirs = []
    for _ in range(epochs):
        began = time.perf_counter()
        joined.fit(images, onehot, batch_size=32, epochs=1, shuffle=True, verbose=0)
        theirs.append(time.perf_counter() - began)
    print(f"conv F+M epoch: Keras 3 fit() {statistics.median(theirs):.2f} s (median of {epochs})")
    return statistics.median(theirs)


def compare_pix_step(images, batches=200, warmup=10):
    """Median ms per GAMO2pix VAE step: cached features against F on every batch."""
    from gamo import nets, vae
    from gamo.cli import gamo2pix

    seeding.set_random_seed(0)
    extractor = nets.build_feature_extractor()
    adam = AdamStates(2e-4, 0.5)
    class_vae = vae.ClassVae(nets.NUM_FEATURES, images.shape[1:], gamo2pix.PixSettings(jit=JIT), seed=0,
                             adam=adam)
    features = extractor.predict(images, batch_size=1024, verbose=0)
    noise = class_vae.noise(np.random.default_rng(0), 32)
    state = [*vae.vae_state_variables(class_vae), *extractor.variables, *adam.variables]
    recompute = compile_function(lambda batch: class_vae.step(extractor(batch, training=False), batch, noise),
                                 state, JIT)
    cached = time_batches(lambda xb, fb: finished(class_vae.compiled_step(fb, xb, noise)), images, features,
                          batches, warmup)
    fresh = time_batches(lambda xb, _: finished(recompute(xb)), images, features, batches, warmup)
    print(f"gamo2pix VAE step: cached features {median_ms(cached):.2f} ms, recomputing F "
          f"{median_ms(fresh):.2f} ms per batch (median of {batches})")
    return median_ms(cached), median_ms(fresh)


def memory_over_a_run(steps=10000):
    """Peak RSS (MB) at 10%, 50% and 100% of a dense run on the Fashion-MNIST IR-100 files.

    10000 steps, so that the 10% mark (step 1000) comes after the first
    epoch: by then both batch shapes (full and the shorter last batch) are
    compiled, and what grows later would be a leak, not a one-off compilation.
    """
    import tempfile

    from gamo.cli import prepare

    marks = {}

    def after_batch(run):
        for fraction in (0.1, 0.5, 1.0):
            if fraction not in marks and run.step >= fraction * steps:
                marks[fraction] = peak_rss_mb()

    with tempfile.TemporaryDirectory() as folder:
        if Path(DEBIAN_FASHION_DIR).is_dir():
            prepare.fashion_mnist_main(["--idx-dir", DEBIAN_FASHION_DIR, "--out-dir", folder])
        else:
            x, labels, _ = fashion_ir100()
            for part in ("train", "test"):
                np.savetxt(f"{folder}/fMnist_100_{part}Data.csv",
                           np.column_stack([np.round((x + 1) * 127.5), labels]), fmt="%d", delimiter=",")
        dense.main(["--train", f"{folder}/fMnist_100_trainData.csv", "--test",
                 f"{folder}/fMnist_100_testData.csv", "--out-dir", f"{folder}/run",
                 "--steps", str(steps), *([] if JIT else ["--no-jit"])], after_batch=after_batch)
    growth = 100 * (marks[1.0] - marks[0.1]) / marks[0.1]
    print(f"memory over a {steps}-step dense run: peak RSS {marks[0.1]:.0f} MB at 10%, "
          f"{marks[0.5]:.0f} MB at 50%, {marks[1.0]:.0f} MB at 100% (growth 10% -> 100%: {growth:.1f}%)")
    return marks[0.1], marks[1.0], growth


def main(argv=None):
    parser = new_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("dense", "conv", "pix", "memory", "all"), default="dense")
    parser.add_argument("--batches", type=int, default=300, help="timed batches, compiled step")
    parser.add_argument("--reference-batches", type=int, default=200,
                        help="timed batches, reference call pattern")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--skip-reference", action="store_true",
                        help="time only our steps (not the reference call pattern, Keras' fit() or the "
                             "standard numerics)")
    parser.add_argument("--epochs", type=int, default=3, help="timed F+M epochs (conv case)")
    parser.add_argument("--memory-steps", type=int, default=10000, help="steps of the memory case's run")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check that the benchmark runs: the 3 smallest classes, two "
                             "timed batches, no XLA; the figures mean nothing")
    args = parser.parse_args(argv)
    global JIT
    x, labels, source = fashion_ir100()
    if args.smoke:
        JIT = False
        args.batches, args.reference_batches, args.warmup, args.epochs, args.memory_steps = 2, 1, 1, 1, 20
        x, labels = x[labels < 3], labels[labels < 3]          # the 3 smallest classes: 200 rows
    print(f"data: {source}: {x.shape[0]} rows x {x.shape[1]} features")
    print(f"Keras {keras.__version__} on {BACKEND} {sys.modules[BACKEND].__version__}")
    figures = {}
    if args.case in ("dense", "all"):
        compiled, reference = compare_game(x, labels, args, "dense")
        figures.update(compiled_ms=round(compiled, 2), compiled_cpu_ms=round(CPU_MS["dense"], 2))
        if reference:
            figures.update(reference_ms=round(reference, 2), speedup=round(reference / compiled, 1))
        if not args.skip_reference:
            default, standard = compare_numerics(x, labels, args.batches)
            figures.update(reference_numerics_ms=round(default, 2), standard_numerics_ms=round(standard, 2),
                           numerics_ratio=round(default / standard, 3))
    if args.case in ("conv", "all"):
        images = x.reshape(-1, 28, 28, 1)
        ours, features_s, learner = compare_feature_epoch(images, labels, args.epochs)
        features = learner.features(images)
        figures.update(conv_epoch_s=round(ours, 2), conv_epoch_cpu_s=round(CPU_MS["conv epoch"] / 1000, 2),
                       conv_features_s=round(features_s, 2))
        if not args.skip_reference:
            fit_s = time_keras_fit(learner, images, labels, args.epochs)
            figures.update(conv_reference_epoch_s=round(fit_s, 2))
        compiled, reference = compare_game(features, labels, args, "conv")
        figures.update(conv_compiled_ms=round(compiled, 2), conv_compiled_cpu_ms=round(CPU_MS["conv"], 2))
        if reference:
            figures.update(conv_reference_ms=round(reference, 2), conv_speedup=round(reference / compiled, 1))
    if args.case in ("pix", "all"):
        second_largest = x[labels == labels.max() - 1].reshape(-1, 28, 28, 1)
        cached, fresh = compare_pix_step(second_largest, args.batches, args.warmup)
        figures.update(pix_cached_ms=round(cached, 2), pix_recompute_ms=round(fresh, 2))
    if args.case == "memory":        # a run of its own: not mixed with the timings' models
        at_10, at_100, growth = memory_over_a_run(args.memory_steps)
        figures.update(rss_10pct_mb=round(at_10, 1), rss_100pct_mb=round(at_100, 1),
                       rss_growth_pct=round(growth, 2))
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    figures["backend"] = BACKEND
    if "speedup" in figures:
        print(f"dense speedup {figures['speedup']}x")
    print(f"peak RSS {figures['peak_rss_mb']} MB")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
