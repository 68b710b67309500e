"""A library user's first fit is as quiet as `import gamo`: the backend starts the
way the scripts start it, unless the program chose TensorFlow's log level itself."""

import importlib.util
import os
import subprocess
import sys

import pytest

FIT = ("from sklearn.datasets import load_breast_cancer\n"
       "from gamo import GamoSampler\n"
       "X, y = load_breast_cancer(return_X_y=True)\n"
       "GamoSampler(steps=4, random_state=0).fit_resample(X, y)\n")


def first_fit(backend, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", FIT], capture_output=True, text=True, timeout=300,
                          env={**environment, "KERAS_BACKEND": backend, **env})


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_a_first_fit_writes_nothing_to_stderr(backend):
    if importlib.util.find_spec({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]) is None:
        pytest.skip(f"{backend} is not installed")
    fit = first_fit(backend)
    assert fit.returncode == 0 and fit.stderr == "", fit.stderr


@pytest.mark.slow
def test_the_users_own_log_level_stands():
    fit = first_fit("tensorflow", TF_CPP_MIN_LOG_LEVEL="0")
    assert fit.returncode == 0 and "cpu_feature_guard" in fit.stderr, fit.stderr


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_scripts_choose_sleeping_openmp_threads_on_pytorch_only_and_gamo2pix_keeps_tensorflows_kernels(
        backend, monkeypatch):
    """GAMO2pix asks for sleeping threads alone: forcing oneDNN there changed its
    TensorFlow outputs (bench/same_outputs.py)."""
    from gamo import environment

    for name in ("OMP_WAIT_POLICY", "TF_ENABLE_ONEDNN_OPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    monkeypatch.setattr(environment, "running_our_script", lambda: True)
    environment.prefer_sleeping_threads()
    assert os.environ.get("OMP_WAIT_POLICY") == ("PASSIVE" if backend == "torch" else None)
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")          # the user's choice stands
    environment.prefer_sleeping_threads()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    gamo2pix_cli = (environment.PROJECT_DIR / "gamo" / "cli" / "gamo2pix.py").read_text()
    assert "prefer_sleeping_threads()" in gamo2pix_cli and "prefer_onednn" not in gamo2pix_cli
