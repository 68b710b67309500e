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

    python bench/tabular.py --updates 2000 --seeds 0,1,2
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imblearn.datasets import make_imbalance  # noqa: E402
from imblearn.metrics import geometric_mean_score  # noqa: E402
from imblearn.over_sampling import ADASYN, SMOTE, RandomOverSampler  # noqa: E402
from imblearn.pipeline import Pipeline  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.metrics import balanced_accuracy_score, make_scorer  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_validate  # noqa: E402

from dense_suppli import atomic_path, new_figure, new_parser, run_cli, save_figure, save_json  # noqa: E402
from gamo import GamoClassifier, GamoSampler  # noqa: E402

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


def evaluate(dataset, name, args):
    """Every fold of every seed for one arm on one dataset."""
    X, y = DATASETS[dataset]()
    scoring = {"acsa": make_scorer(balanced_accuracy_score), "gm": make_scorer(geometric_mean_score)}
    folds = []
    for seed in args.seeds:
        splits = StratifiedKFold(args.folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():        # a refused fold is counted in the table instead
            warnings.simplefilter("ignore", FitFailedWarning)
            result = cross_validate(arm(name, args.updates, seed, args.jit), X, y, cv=splits, scoring=scoring,
                                    error_score=np.nan if name in MAY_REFUSE else "raise")
        folds += [{"seed": seed, "fold": i, "acsa": finite_or_none(result["test_acsa"][i]),
                   "gm": finite_or_none(result["test_gm"][i]), "fit_time_s": float(result["fit_time"][i])}
                  for i in range(args.folds)]
    return {"dataset": dataset, "arm": name, "rows": int(len(y)), "class_counts": np.bincount(y).tolist(),
            "folds": folds}


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
    parser.add_argument("--out-dir", default="results", help="where tabular.json, .md and .png go")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
    datasets, arms = args.datasets.split(","), args.arms.split(",")
    unknown = sorted(set(datasets) - set(DATASETS)) + sorted(set(arms) - set(ARMS))
    if unknown:
        raise SystemExit(f"error: unknown data set or arm: {', '.join(unknown)}")
    results, started = [], time.time()
    for dataset in datasets:
        for name in arms:
            results.append(evaluate(dataset, name, args))
            acsa = scored(results[-1], "acsa").mean()
            print(f"{dataset} {name}: balanced accuracy {acsa:.4f} ({time.time() - started:.0f} s so far)",
                  flush=True)
    out = Path(args.out_dir)
    save_json(out / "tabular.json", {"updates": args.updates, "seeds": args.seeds, "folds": args.folds,
                                     "results": results})
    text = summary(results, args)
    with atomic_path(out / "tabular.md") as tmp:
        Path(tmp).write_text(text)
    save_plot(out / "tabular.png", results)
    print(text)
    return results


if __name__ == "__main__":
    run_cli(main)
