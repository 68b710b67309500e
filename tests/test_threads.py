"""The estimators on PyTorch follow the scripts' thread policy (one intra-op thread
unless OMP_NUM_THREADS says otherwise), so a fit does not collapse when another
process shares the cores."""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")]

PER_BATCH = """
import time
from sklearn.datasets import load_breast_cancer
from gamo import GamoClassifier
X, y = load_breast_cancer(return_X_y=True)
GamoClassifier(steps=20, random_state=0).fit(X, y)              # warm-up
started = time.perf_counter()
fitted = GamoClassifier(steps=200, random_state=0).fit(X, y)
import torch
print(torch.get_num_threads(), (time.perf_counter() - started) / len(fitted.loss_curve_["M_real"]))
"""


def ms_per_batch(**env):
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", PER_BATCH], capture_output=True, text=True, timeout=600,
                            env={**environment, "KERAS_BACKEND": "torch", **env})
    assert result.returncode == 0, result.stderr
    threads, seconds = result.stdout.split()
    return int(threads), float(seconds)


def test_a_fit_beside_a_busy_core_is_as_fast_per_batch_as_with_one_thread():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        _, default = ms_per_batch()
        _, one_thread = ms_per_batch(OMP_NUM_THREADS="1")
    finally:
        busy.kill()
    assert default <= 1.5 * one_thread, (default, one_thread)


@pytest.mark.every_backend          # it means something under KERAS_BACKEND=torch (make test-backends)
def test_the_callers_thread_count_is_put_back():
    torch = pytest.importorskip("torch")
    from gamo import backend

    before = torch.get_num_threads()
    with backend.training_threads():
        inside = torch.get_num_threads()
    assert torch.get_num_threads() == before
    assert inside == (1 if backend.BACKEND == "torch" and "OMP_NUM_THREADS" not in os.environ else before)
