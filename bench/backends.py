"""Time the same benchmark on each Keras backend, side by side in one run.

Runs `bench/speed.py --case CASE --skip-reference` under KERAS_BACKEND=tensorflow,
jax and torch in turn, for several rounds (the machine's speed drifts: each
round sees every backend), and prints each figure's median over the rounds per
backend; the last line is a JSON object of them.

    python bench/backends.py [--case dense|conv] [--rounds 2] [--backends tensorflow,jax,torch]
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gamo.errors import InputError, run_cli  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402

MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
FIGURES = {"compiled_ms": "dense GAMO, ms per batch (median)",
           "conv_epoch_s": "conv F+M epoch over the training images, s",
           "conv_features_s": "conv features of the training images, s",
           "conv_compiled_ms": "conv GAMO, ms per game batch on the features"}


def build_parser():
    parser = new_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("dense", "conv"), default="dense")
    parser.add_argument("--rounds", type=int, default=2, help="times each backend is timed, interleaved")
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated")
    parser.add_argument("--batches", type=int, default=300, help="timed batches of each game step")
    parser.add_argument("--smoke", action="store_true",
                        help="passed on to speed.py: a quick check that it runs")
    return parser


def time_backend(backend, args):
    command = [sys.executable, str(ROOT / "bench" / "speed.py"), "--case", args.case, "--skip-reference",
               "--batches", str(args.batches), *(["--smoke"] if args.smoke else [])]
    result = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend},
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise InputError(f"{backend}: speed.py failed: {result.stderr.strip().splitlines()[-1:]}")
    print(f"{backend}: " + "; ".join(line for line in result.stdout.splitlines()
                                      if ("median" in line or "epoch" in line) and not line.startswith("{")),
          flush=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = build_parser().parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in backends if b not in MODULES]
    if unknown or args.rounds < 1:
        raise InputError(f"--backends: one of {sorted(MODULES)} each ({unknown}); --rounds: 1 or more")
    backends = [b for b in backends if importlib.util.find_spec(MODULES[b]) is not None]
    runs = {backend: [] for backend in backends}
    for _ in range(args.rounds):
        for backend in backends:
            runs[backend].append(time_backend(backend, args))
    medians = {backend: {name: statistics.median(run[name] for run in results)
                         for name in FIGURES if name in results[0]} for backend, results in runs.items()}
    print(f"\nmedians over {args.rounds} rounds, interleaved:")
    print("| | " + " | ".join(backends) + " |\n|---|" + "---|" * len(backends))
    for name, label in FIGURES.items():
        if name in medians[backends[0]]:
            print(f"| {label} | " + " | ".join(f"{medians[b][name]:.2f}" for b in backends) + " |")
    print(json.dumps(medians))
    return medians


if __name__ == "__main__":
    run_cli(main)
