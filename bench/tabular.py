"""GAMO against classical over-samplers on real tabular data, cross-validated.

Data that ships with the installed packages (no download):
  digits          scikit-learn's 8x8 digits (64 features, 10 classes), made
                  imbalanced with imbalanced-learn's make_imbalance at the
                  paper's ratios (4000, 2000, ..., 40) scaled to the size of
                  the smallest digit class (174), at least 10 rows per class
                  (IR 17.4)
  breast-cancer   scikit-learn's breast cancer (30 features), its malignant
                  class cut to a tenth of the benign one (IR 10)

Arms, all with GAMO's classifier M and the same number S of M's updates:
  M                   M alone (GamoClassifier(classifier_only=True), 2 S steps)
  ROS + M, SMOTE + M, ADASYN + M, GamoSampler + M
                      the sampler, then M on the resampled rows (2 S steps)
  GamoClassifier      the game itself (S steps: 2 updates of M a batch)
Stratified 5-fold cross-validation, repeated with each seed; balanced accuracy
(= ACSA) and imbalanced-learn's geometric mean (= GM), mean ± sd over all
folds, and the mean fit time. Writes results/tabular.json, results/tabular.md
and results/tabular.png.

Each (data set, arm, seed) is a child process, --jobs of them at a time; each
fold is saved in results/runs/tabular/ as it ends, and the same command run
again plays only what is missing (a killed run loses at most the folds in
progress), then writes the table of everything saved.

    python bench/tabular.py --updates 2000 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imblearn.datasets import make_imbalance  # noqa: E402
from imblearn.metrics import geometric_mean_score  # noqa: E402
from imblearn.over_sampling import ADASYN, SMOTE, RandomOverSampler  # noqa: E402
from imblearn.pipeline import Pipeline  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from gamo import GamoClassifier, GamoSampler  # noqa: E402
from gamo.compare.jobs import STOPPED, default_jobs, play_locally, threads_per_job  # noqa: E402
from gamo.errors import InputError, run_cli
from gamo.files import atomic_path, save_json
from gamo.pictures import new_figure, save_figure
from gamo.run.settings import new_parser

PAPER_COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)
ARMS = ("M", "ROS + M", "SMOTE + M", "ADASYN + M", "GamoSampler + M", "GamoClassifier")


def digits():
    X, y = load_digits(return_X_y=True)
    largest = np.bincount(y).min()      # every digit has at least this many: the largest new class
    counts = {label: max(10, round(largest * count / PAPER_COUNTS[0]))
              for label, count in enumerate(PAPER_COUNTS)}
    return make_imbalance(X, y, sampling_strategy=counts, random_state=0)


def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)    # 0 malignant (212), 1 benign (357)
    benign = int(np.sum(y == 1))
    return make_imbalance(X, y, sampling_strategy={0: benign // 10, 1: benign}, random_state=0)


DATASETS = {"digits": digits, "breast-cancer": breast_cancer}


def arm(name, updates, seed, jit):
    """The estimator of one arm: every M gets `updates` updates."""
    common = dict(random_state=seed, jit=jit)
    classifier_alone = GamoClassifier(classifier_only=True, steps=2 * updates, **common)
    samplers = {"ROS + M": RandomOverSampler(random_state=seed), "SMOTE + M": SMOTE(random_state=seed),
                "ADASYN + M": ADASYN(random_state=seed),
                "GamoSampler + M": GamoSampler(steps=updates, **common)}
    if name == "M":
        return classifier_alone
    if name == "GamoClassifier":
        return GamoClassifier(steps=updates, **common)
    return Pipeline([("sampler", samplers[name]), ("classifier", classifier_alone)])


# ADASYN refuses a class none of whose rows has a neighbour of another class (imbalanced-learn:
# "ADASYN is not suited for this specific dataset"); its arm is scored on the folds it accepts.
MAY_REFUSE = {"ADASYN + M"}


def finite_or_none(value):
    return float(value) if np.isfinite(value) else None


def scored(result, key):
    """The scores of the folds a sampler accepted."""
    return np.array([fold[key] for fold in result["folds"] if fold[key] is not None])


# ---------------------------------------------------------------- one unit: an arm, a seed, its folds

def slug(name):
    """An arm's name as a folder name: 'SMOTE + M' -> 'smote-m'."""
    return "-".join(part for part in name.lower().replace("+", " ").split())


def unit_dir(args, dataset, name):
    """Where an arm's folds are kept, by the settings that change their results."""
    settings = f"updates{args.updates}_folds{args.folds}"
    return Path(args.out_dir) / "runs" / "tabular" / settings / dataset / slug(name)


def fold_path(args, dataset, name, seed, fold):
    return unit_dir(args, dataset, name) / f"seed{seed}_fold{fold}.json"


def read_fold(path):
    """A finished fold's scores, or None if it is missing or unreadable (then it is played again)."""
    try:
        fold = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return fold if isinstance(fold, dict) and {"acsa", "gm", "fit_time_s"} <= fold.keys() else None


def play_unit(dataset, name, seed, args):
    """Every fold of one seed for one arm on one data set, each saved as it ends;
    folds saved by an earlier, interrupted run are kept."""
    X, y = DATASETS[dataset]()
    splits = StratifiedKFold(args.folds, shuffle=True, random_state=seed).split(X, y)
    for fold, (train, test) in enumerate(splits):
        path = fold_path(args, dataset, name, seed, fold)
        if read_fold(path) is not None:
            continue
        estimator, started = arm(name, args.updates, seed, args.jit), time.time()
        try:
            estimator.fit(X[train], y[train])
        except (ValueError, RuntimeError):
            if name not in MAY_REFUSE:
                raise
            estimator = None          # a refused fold is counted in the table instead
        fit_time = time.time() - started
        predicted = estimator.predict(X[test]) if estimator is not None else None
        scores = {"acsa": None if predicted is None else float(balanced_accuracy_score(y[test], predicted)),
                  "gm": None if predicted is None else float(geometric_mean_score(y[test], predicted))}
        save_json(path, {"seed": seed, "fold": fold, **scores, "fit_time_s": fit_time})
        print(f"{dataset} {name} seed {seed} fold {fold}: {scores} in {fit_time:.1f} s", flush=True)


def collected(dataset, name, args):
    """An arm's saved folds (of every seed), as the table reads them."""
    folds = [fold for seed in args.seeds for index in range(args.folds)
             if (fold := read_fold(fold_path(args, dataset, name, seed, index))) is not None]
    _, y = DATASETS[dataset]()
    return {"dataset": dataset, "arm": name, "rows": int(len(y)), "class_counts": np.bincount(y).tolist(),
            "folds": folds}


# ---------------------------------------------------------------- the comparison

@dataclass(frozen=True)
class Launch:
    """One unit to play in a child process (gamo.compare.jobs)."""

    dataset: str
    name: str
    seed: int
    label: str
    log: Path
    command: tuple
    threads: int

    @property
    def start_line(self):
        return f"{self.label}: started, log {self.log}"


def unit_command(args, dataset, name, seed):
    return (sys.executable, str(Path(__file__).resolve()), "--unit", dataset, name, str(seed),
            "--updates", str(args.updates), "--folds", str(args.folds), "--out-dir", args.out_dir,
            *(() if args.jit else ("--no-jit",)))


def unfinished_units(args, datasets, arms):
    """A Launch for every (data set, arm, seed) with a fold still to play."""
    threads = threads_per_job(args.jobs, args.threads)
    units = [(dataset, name, seed) for dataset in datasets for name in arms for seed in args.seeds]
    launches = []
    for index, (dataset, name, seed) in enumerate(units, start=1):
        if all(read_fold(fold_path(args, dataset, name, seed, fold)) for fold in range(args.folds)):
            continue
        log = unit_dir(args, dataset, name) / f"seed{seed}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        label = f"[{index}/{len(units)}] {dataset} {name} seed {seed}"
        command = unit_command(args, dataset, name, seed)
        launches.append(Launch(dataset, name, seed, label, log, command, threads))
    return launches


def play_units(launches, jobs):
    """Play the units, `jobs` at a time; a unit that fails is reported and the others go on."""
    failures = []
    for launch, status in play_locally(launches, jobs):
        if status == 0:
            print(f"{launch.label}: done", flush=True)
        elif status not in STOPPED:
            failures.append(f"{launch.log}: {launch.dataset} {launch.name} seed {launch.seed} failed with "
                            f"exit status {status}")
            print(f"{launch.label}: failed, see {launch.log}", file=sys.stderr, flush=True)
    return failures


def summary(results, args):
    lines = [f"# Tabular data: {args.folds}-fold cross-validation, seeds {', '.join(map(str, args.seeds))}, "
             f"{args.updates} updates of M in every arm", "",
             "| data set | arm | balanced accuracy (ACSA) | geometric mean (GM) | fit time per fold |",
             "|---|---|---|---|---|"]
    for result in results:
        acsa, gm = scored(result, "acsa"), scored(result, "gm")
        fit = np.mean([fold["fit_time_s"] for fold in result["folds"]])
        refused = len(result["folds"]) - len(acsa)
        note = f" ({refused} of {len(result['folds'])} folds refused by the sampler)" if refused else ""
        played, expected = len(result["folds"]), args.folds * len(args.seeds)
        note += f" ({played} of {expected} folds so far)" if played < expected else ""
        lines.append(f"| {result['dataset']} | {result['arm']}{note} | {mean_sd(acsa)} | {mean_sd(gm)} | "
                     f"{fit:.1f} s |")
    counts = {r["dataset"]: r["class_counts"] for r in results}
    lines += ["", "Class sizes: " + "; ".join(f"{name} {sizes}" for name, sizes in counts.items()) + ".",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores. Standard deviation over all "
              f"folds and seeds (ddof 1).", ""]
    return "\n".join(lines)


def mean_sd(values):
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else "n/a"


def save_plot(path, results):
    """Balanced accuracy per arm and data set, mean ± sd over folds."""
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    figure = new_figure(1, len(datasets), cell=5)
    for axis, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        mine = [r for r in results if r["dataset"] == dataset]
        means = [scored(r, "acsa").mean() for r in mine]
        sds = [scored(r, "acsa").std(ddof=1) for r in mine]
        axis.barh([r["arm"] for r in mine], means, xerr=sds, color="tab:blue", alpha=0.7)
        axis.set(xlabel="balanced accuracy (ACSA)", title=dataset, xlim=(min(means) - 0.1, 1))
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def build_parser():
    parser = new_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help="comma-separated: " + ", ".join(DATASETS))
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated, of: " + ", ".join(ARMS))
    parser.add_argument("--updates", type=int, default=2000, help="updates of M in every arm")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated; each repeats the folds")
    parser.add_argument("--folds", type=int, default=5, help="stratified folds of each seed")
    parser.add_argument("--no-jit", dest="jit", action="store_false",
                        help="no XLA (faster start, slower steps)")
    parser.add_argument("--out-dir", default="results",
                        help="where tabular.json, .md and .png go; each fold is kept in "
                             "<out-dir>/runs/tabular/ as it ends, and reused when run again")
    parser.add_argument("--jobs", type=int, default=0,
                        help="units (an arm, a seed) at a time, each with its share of the cores' threads "
                             "(default: one per core, as memory allows)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of each unit (default: the cores divided by --jobs)")
    parser.add_argument("--unit", nargs=3, metavar=("DATASET", "ARM", "SEED"),
                        help=argparse.SUPPRESS)     # one unit, in a child process
    return parser


def write_outputs(results, args):
    out = Path(args.out_dir)
    save_json(out / "tabular.json", {"updates": args.updates, "seeds": args.seeds, "folds": args.folds,
                                     "results": results})
    text = summary(results, args)
    with atomic_path(out / "tabular.md") as tmp:
        Path(tmp).write_text(text)
    save_plot(out / "tabular.png", results)
    return text


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.unit:
        dataset, name, seed = args.unit
        return play_unit(dataset, name, int(seed), args)
    datasets, arms = args.datasets.split(","), args.arms.split(",")
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(arms) - set(ARMS))
    if unknown:
        raise InputError(f"unknown data set or arm: {', '.join(unknown)}")
    args.jobs = args.jobs or default_jobs()
    started = time.time()
    failures = play_units(unfinished_units(args, datasets, arms), args.jobs)
    results = [collected(dataset, name, args) for dataset in datasets for name in arms]
    results = [result for result in results if result["folds"]]
    if results:
        print(write_outputs(results, args))
        print(f"{time.time() - started:.0f} s")
    if failures:
        raise InputError("; ".join(failures))
    return results


if __name__ == "__main__":
    run_cli(main)
