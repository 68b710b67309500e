"""Time the same benchmarks on each Keras backend, side by side in one run.

Runs `bench/speed.py --case dense|conv --skip-reference` (one game step per
batch, the F+M epoch) and, for --case sampler, `bench/fit_speed.py`'s
GamoSampler(steps=600) on breast cancer (a first fit, compilation included, and
a second) under KERAS_BACKEND=tensorflow, jax and torch in turn, for several
rounds (the machine's speed drifts: each round sees every backend). Prints each
figure's median over the rounds per backend, wall time beside CPU time (all of
a process's threads: what a shared machine's load changes least), and each
backend's wall time over TensorFlow's; the last line is a JSON object of them.

    python bench/backends.py [--case dense|conv|sampler|all] [--rounds 2] [--backends tensorflow,jax,torch]

(--backends may add torch-keras-calls: PyTorch through Keras' own layer calls.)
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

MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "torch-keras-calls": "torch"}
# torch-keras-calls: PyTorch through Keras' own layer calls (GAMO_TORCH_KERAS_CALLS=1), the path
# gamo/backend_torch.py replaces: the same arithmetic, for the before-and-after ratio.
ENVIRONMENTS = {"torch-keras-calls": {"KERAS_BACKEND": "torch", "GAMO_TORCH_KERAS_CALLS": "1"}}
# figure -> (label, its CPU-time figure)
FIGURES = {"compiled_ms": ("dense GAMO, ms per batch (median)", "compiled_cpu_ms"),
           "conv_epoch_s": ("conv F+M epoch over the training images, s", "conv_epoch_cpu_s"),
           "conv_features_s": ("conv features of the training images, s", None),
           "conv_compiled_ms": ("conv GAMO, ms per game batch on the features", "conv_compiled_cpu_ms"),
           "first fit": ("GamoSampler(steps=600), breast cancer: first fit, s", "first fit CPU"),
           "second fit": ("GamoSampler(steps=600), breast cancer: second fit, s", "second fit CPU")}


def build_parser():
    parser = new_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("dense", "conv", "sampler", "all"), default="dense")
    parser.add_argument("--rounds", type=int, default=2, help="times each backend is timed, interleaved")
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated")
    parser.add_argument("--batches", type=int, default=300, help="timed batches of each game step")
    parser.add_argument("--smoke", action="store_true",
                        help="passed on to speed.py: a quick check that it runs")
    return parser


def figures_of(command, backend):
    """The JSON object a benchmark prints last, run under `backend`."""
    environment = ENVIRONMENTS.get(backend, {"KERAS_BACKEND": backend})
    result = subprocess.run(command, env={**os.environ, **environment},
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:]
        raise InputError(f"{backend}: {Path(command[1]).name} failed: {last}")
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def time_backend(backend, args):
    figures = {}
    cases = ("dense", "conv", "sampler") if args.case == "all" else (args.case,)
    for case in cases:
        if case == "sampler":
            _, timed = figures_of([sys.executable, str(ROOT / "bench" / "fit_speed.py"), "--child", "now",
                                   "sampler"], backend)
        else:
            result, timed = figures_of([sys.executable, str(ROOT / "bench" / "speed.py"), "--case", case,
                                        "--skip-reference", "--batches", str(args.batches),
                                        *(["--smoke"] if args.smoke else [])], backend)
            print(f"{backend}: " + "; ".join(line for line in result.stdout.splitlines()
                                              if ("median" in line or "epoch" in line)
                                              and not line.startswith("{")), flush=True)
        figures.update(timed)
    return figures


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
                         for name in results[0] if isinstance(results[0][name], (int, float))}
               for backend, results in runs.items()}
    print(f"\nmedians over {args.rounds} rounds, interleaved: wall (CPU), and wall over {backends[0]}'s")
    print("| | " + " | ".join(backends) + " |\n|---|" + "---|" * len(backends))
    for name, (label, cpu) in FIGURES.items():
        if name in medians[backends[0]]:
            cells = [cell(medians, b, backends[0], name, cpu) for b in backends]
            print(f"| {label} | " + " | ".join(cells) + " |")
    print(json.dumps(medians))
    return medians


def cell(medians, backend, first, name, cpu):
    """'wall (CPU) ratio': a figure of one backend, its CPU time and its ratio to the first backend's."""
    wall = medians[backend][name]
    text = f"{wall:.2f}" + (f" ({medians[backend][cpu]:.2f})" if cpu in medians[backend] else "")
    return text + ("" if backend == first else f", {wall / medians[first][name]:.2f}x")


if __name__ == "__main__":
    run_cli(main)
