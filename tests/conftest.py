"""Shared fixtures: small real data (scikit-learn digits) and a script runner."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SEED = 0

# Property-based tests: a bounded, repeatable number of examples in `make test`;
# many more, freshly drawn, in `make fuzz`.
_QUIET = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                    HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, **_QUIET)
settings.register_profile("fuzz", max_examples=2000, **_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# Imbalanced digits: original label -> training rows (IR 8); 20 test rows each.
DIGITS_TRAIN_COUNTS = {0: 80, 1: 40, 2: 20, 3: 10}
DIGITS_TEST_PER_CLASS = 20


def run_script(script, *args, cwd=None, env=None):
    """Run one of the project's scripts in a new process."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)


def run_in_new_process(folder, body, project=True):
    """Run Python lines in a fresh interpreter, with the project's layers registered
    (`from gamo import nets`) or, project=False, with Keras alone; return stdout's last line."""
    script = Path(folder) / "snippet.py"
    script.write_text("import sys\n"
                      f"sys.path.insert(0, {str(ROOT)!r})\n"
                      "import numpy as np, keras\n" + ("from gamo import nets\n" if project else "") + body)
    result = run_script(str(script))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def load_bench(name):
    """A benchmark script of bench/ as a module (registered, so that its dataclasses
    can look themselves up)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_labelled(path, features, labels):
    np.savetxt(path, np.column_stack([features, labels]), fmt="%d", delimiter=",")


@pytest.fixture(scope="session")
def digits_csvs(tmp_path_factory):
    """Train/test CSVs (64 pixels scaled to 0-255, label last) of 4 imbalanced digit classes."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    pixels = np.clip(np.round(images * 255 / 16), 0, 255).astype(int)
    rng = np.random.default_rng(SEED)
    train_rows, test_rows = [], []
    for label, count in DIGITS_TRAIN_COUNTS.items():
        rows = rng.permutation(np.flatnonzero(labels == label))
        train_rows.append(rows[:count])
        test_rows.append(rows[count:count + DIGITS_TEST_PER_CLASS])
    folder = tmp_path_factory.mktemp("digits")
    train, test = folder / "Digits_8_trainData.csv", folder / "Digits_8_testData.csv"
    write_labelled(train, pixels[np.concatenate(train_rows)], labels[np.concatenate(train_rows)])
    write_labelled(test, pixels[np.concatenate(test_rows)], labels[np.concatenate(test_rows)])
    return train, test


@pytest.fixture(scope="session")
def conv_run(digits_csvs, tmp_path_factory):
    """A short convolutional GAMO run on the digits, stopping inside its second round
    (5 batches = 10 steps a round): models at steps 10 and 16."""
    from gamo.cli import fashion

    train, test = digits_csvs
    out = tmp_path_factory.mktemp("conv") / "Digits_8_Gamo"
    fashion.main(["--train", str(train), "--test", str(test), "--out-dir", str(out), "--steps", "16",
               "--eval-every", "10", "--save-every", "10", "--num-features", "32"])
    return out
