"""Many runs in one compiled step (gamo.group) on JAX: ms per step and per
run-batch for groups of K runs of the dense game, against one run alone.

The game is the dense one on data shaped like Fashion-MNIST IR-100 (784
features, 10 classes, 4000 ... 40 rows; random pixels: the time does not depend
on their values). A group of K runs is K copies of one learner's state
stacked, each run with its own random draws and batch, so that building the
learners does not dominate; the step is the same function for K learners
built with their own seeds (tests/test_group.py).

    KERAS_BACKEND=jax python bench/vmap.py [--groups 1,8,32,128] [--batches 50]

Prints a line per K and, last, a JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gamo.environment import keras_backend_name  # noqa: E402

if keras_backend_name() != "jax":
    sys.exit("bench/vmap.py: run it with KERAS_BACKEND=jax (a group of runs is a JAX program)")

import jax  # noqa: E402

from gamo.data import imbalance_of, one_hot, relabel_by_size, scale_pixels  # noqa: E402
from gamo.game import Gamo  # noqa: E402
from gamo.group import LearnerGroup, available_memory_bytes, memory_per_state  # noqa: E402
from gamo.prepare import NUM_PIXELS, REFERENCE_TRAIN_COUNTS  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402
from gamo.seeding import set_random_seed  # noqa: E402

BATCH = 32


def fashion_shaped(features=NUM_PIXELS, seed=0):
    """Random rows with Fashion-MNIST IR-100's class counts, relabelled by size: pixels
    (784), or as many values as the convolutional script's F gives (512)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(REFERENCE_TRAIN_COUNTS)), REFERENCE_TRAIN_COUNTS)
    labels, _, _ = relabel_by_size(labels, labels)
    return scale_pixels(rng.integers(0, 256, (labels.size, features))), labels


def ms_per_call(call, batches, warmup):
    """Median and first-call milliseconds of call(index) over `batches` calls after `warmup`."""
    times = []
    for index in range(warmup + batches):
        began = time.perf_counter()
        call(index)
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times[warmup:]), 1000 * times[0]


def time_group(learner, x, onehot, runs, batches, warmup):
    group = LearnerGroup([learner] * runs)          # K copies of one state: the same step
    rngs = [np.random.default_rng(k) for k in range(runs)]
    starts = [np.random.default_rng(100 + k).integers(0, len(x) - BATCH, warmup + batches)
              for k in range(runs)]

    def step(index):
        group.train_on_batches([(x[s[index]:s[index] + BATCH], onehot[s[index]:s[index] + BATCH])
                                for s in starts], rngs)     # returns the losses as NumPy: waits for the step
    median, first = ms_per_call(step, batches, warmup)
    return median, first, group.state_bytes()


def time_single(learner, x, onehot, batches, warmup):
    rng = np.random.default_rng(0)

    def step(index):
        start = (index * BATCH) % (len(x) - BATCH)
        losses = learner.train_on_batch(x[start:start + BATCH], onehot[start:start + BATCH], rng)
        jax.block_until_ready(list(losses.values()))
    return ms_per_call(step, batches, warmup)


def main(argv=None):
    parser = new_parser("ms per step of K dense GAMO runs vmapped in one compiled JAX step")
    parser.add_argument("--groups", default="1,8,32,128", help="comma-separated group sizes K")
    parser.add_argument("--batches", type=int, default=50, help="timed batches per K")
    parser.add_argument("--features", type=int, default=NUM_PIXELS,
                        help="784: the dense script's game; 512: the convolutional script's game "
                             "on F's features")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (the first compiles)")
    args = parser.parse_args(argv)
    x, labels = fashion_shaped(args.features)
    imbalance = imbalance_of(labels)
    onehot = one_hot(labels, imbalance.num_classes)
    set_random_seed(0)
    learner = Gamo(x.shape[1], imbalance)
    learner.players.set_class_points(x, labels)
    device = jax.devices()[0]
    print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind}); game on {args.features} "
          f"features, {len(labels)} rows, 10 classes; {os.cpu_count()} CPU cores")
    single, single_first = time_single(learner, x, onehot, args.batches, args.warmup)
    print(f"one run, its own compiled step: {single:.2f} ms per batch "
          f"(first call {single_first / 1000:.1f} s)")
    figures = {"platform": device.platform, "device": device.device_kind, "single_ms": single, "groups": {}}
    state = LearnerGroup([learner]).state_bytes()
    for runs in [int(k) for k in args.groups.split(",")]:
        if runs * state * memory_per_state() > available_memory_bytes():
            print(f"K={runs}: more than this device's memory holds by gamo.group's estimate; stopping")
            break
        median, first, _ = time_group(learner, x, onehot, runs, args.batches, args.warmup)
        figures["groups"][runs] = {"ms_per_step": median, "ms_per_run_batch": median / runs,
                                   "first_call_s": first / 1000,
                                   "throughput_vs_single": single * runs / median}
        print(f"K={runs:4d}: {median:8.2f} ms per step, {median / runs:7.3f} ms per run-batch, "
              f"{single * runs / median:6.1f}x one run's throughput (first call {first / 1000:.1f} s)")
    figures["state_mib_per_run"] = state / 2**20
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        figures["peak_device_gib"] = stats.get("peak_bytes_in_use", 0) / 2**30
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
