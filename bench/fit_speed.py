"""How long the estimators take on small data, compilation included.

On scikit-learn's breast cancer (569 x 30, 2 classes), each figure from a new
process (so the first fit compiles from nothing):
  first fit     GamoSampler(steps=600, random_state=0).fit_resample(X, y)
  second fit    the same again in that process (seed 1): the shapes are the same
  5-fold CV     cross_validate of the README's pipeline (StandardScaler,
                GamoSampler(steps=600), LogisticRegression), 5 stratified folds
Two arms, interleaved round by round:
  now           the defaults: jit="auto" (a plain graph on TensorFlow for fits
                under 5000 batches) and compiled learners kept between fits
  before        jit=True and nothing kept (each fit compiles its own step),
                what the estimators did before gamo.reuse
Then the dense game's step on Fashion-MNIST IR-100's shapes (784 features, 10
classes; random pixels) under XLA, ms per batch (median of --batches): the
scripts' learner against the same learner trained through gamo.reuse, the
estimators' path, interleaved.

    python bench/fit_speed.py [--rounds 2] [--batches 200]
    KERAS_BACKEND=jax python bench/fit_speed.py

Prints a table and, last, a JSON line of the figures (seconds, medians over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("now", "before")


def child(arm: str, task: str) -> dict[str, float]:
    """Run one task of one arm in this process; its timings."""
    sys.path.insert(0, str(ROOT))
    from imblearn.pipeline import Pipeline
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_validate
    from sklearn.preprocessing import StandardScaler

    from gamo import GamoSampler, reuse

    if arm == "before":
        reuse.KEPT_LEARNERS = 0
    jit = "auto" if arm == "now" else True
    X, y = load_breast_cancer(return_X_y=True)
    times = {}
    if task == "sampler":
        for name, seed in (("first fit", 0), ("second fit", 1)):
            start, cpu_start = time.perf_counter(), time.process_time()
            GamoSampler(steps=600, random_state=seed, jit=jit).fit_resample(X, y)
            times[name] = time.perf_counter() - start
            times[f"{name} CPU"] = time.process_time() - cpu_start
    else:
        pipeline = Pipeline([("scale", StandardScaler()),
                             ("sampler", GamoSampler(steps=600, random_state=0, jit=jit)),
                             ("classifier", LogisticRegression())])
        start = time.perf_counter()
        cross_validate(pipeline, X, y, cv=5, scoring="balanced_accuracy")
        times["5-fold CV"] = time.perf_counter() - start
    return times


def timed_in_new_process(arm: str, task: str) -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, "--child", arm, task], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def dense_step_ms(batches: int) -> dict[str, float]:
    """ms per dense batch: the scripts' learner, then the estimators' (through gamo.reuse), alternated."""
    sys.path.insert(0, str(ROOT))
    from types import SimpleNamespace

    import numpy as np

    from gamo.data import Imbalance, one_hot
    from gamo.game import build_learner
    from gamo.reuse import trained_in_kept_learner

    counts = np.array([40, 60, 100, 200, 350, 500, 750, 1000, 2000, 4000])
    imbalance, rng = Imbalance(counts), np.random.default_rng(0)
    labels = np.repeat(np.arange(10), counts)
    x = rng.uniform(-1, 1, (len(labels), 784)).astype(np.float32)
    settings = SimpleNamespace(lr=0.0002, beta1=0.5, standard_adam=False, standard_batchnorm=False,
                               is_baseline=False, latent_dim=100, batch_size=32, no_discriminator=False,
                               jit=True)
    scripts = build_learner(settings, 784, imbalance)
    fresh = build_learner(settings, 784, imbalance)
    for learner in (scripts, fresh):
        learner.players.set_class_points(x, labels)

    def median_ms(learner):
        times = []
        for _ in range(batches):
            rows = rng.integers(0, len(labels), 32)
            start = time.perf_counter()
            learner.train_on_batch(x[rows], one_hot(labels[rows], 10), rng)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times[batches // 10:])

    with trained_in_kept_learner(fresh, settings, lambda: build_learner(settings, 784, imbalance)) as kept:
        median_ms(scripts), median_ms(kept)                   # compile both
        rounds = [(median_ms(scripts), median_ms(kept)) for _ in range(2)]
    return {"dense step, scripts (ms)": statistics.median(r[0] for r in rounds),
            "dense step, estimators (ms)": statistics.median(r[1] for r in rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of every arm (default: 2)")
    parser.add_argument("--batches", type=int, default=200, help="dense batches timed per arm and round "
                        "(default: 200)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    results: dict[str, dict[str, list[float]]] = {arm: {} for arm in ARMS}
    for round_ in range(args.rounds):
        for arm in ARMS:
            for task in ("sampler", "cv"):
                for name, seconds in timed_in_new_process(arm, task).items():
                    results[arm].setdefault(name, []).append(seconds)
                    print(f"round {round_ + 1} {arm:6s} {name:10s} {seconds:6.2f} s", flush=True)
    figures = {arm: {name: statistics.median(values) for name, values in timings.items()}
               for arm, timings in results.items()}
    print(f"\n{backend}, breast cancer, GamoSampler(steps=600): seconds, median of {args.rounds} rounds")
    print(f"{'':12s}" + "".join(f"{arm:>10s}" for arm in ARMS))
    for name in figures["now"]:
        print(f"{name:12s}" + "".join(f"{figures[arm][name]:10.2f}" for arm in ARMS))
    step = dense_step_ms(args.batches)
    for name, ms in step.items():
        print(f"{name}: {ms:.2f}")
    print(json.dumps({"backend": backend, **figures, **step}))


if __name__ == "__main__":
    main()
