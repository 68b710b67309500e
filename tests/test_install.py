"""`pip install` of the project: a wheel built from the repository, installed into
a fresh venv outside it, gives `import gamo` from any folder and the commands.

The fresh venv takes the dependencies already installed in the test's own
environment (a .pth file; pip still checks the declared requirements against
them), so the test needs no download and no second copy of TensorFlow."""

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

COMMANDS = ("gamo-dense", "gamo-fashion-mnist", "gamo2pix", "gamo-mnist-process", "gamo-fmnist-process",
            "gamo-reproduce", "gamo-benchmark")
SAMPLER_IN_A_PIPELINE = textwrap.dedent("""
    import pathlib, sys
    import numpy as np
    from imblearn.pipeline import make_pipeline
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    import gamo
    assert pathlib.Path(gamo.__file__).parent == pathlib.Path(sys.argv[1]) / "gamo", gamo.__file__
    X, y = load_digits(return_X_y=True)
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in [(0, 80), (1, 20), (2, 10)]])
    model = make_pipeline(gamo.GamoSampler(steps=50, random_state=0), LogisticRegression(max_iter=500))
    model.fit(X[keep], y[keep])
    print("resampled", len(model[0].estimator_.loss_curve_["M_real"]), "batches;",
          "accuracy", model.score(X[keep], y[keep]))
""")


def run(*command, cwd, env=None):
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_wheel_installs_into_a_fresh_venv_with_the_module_and_the_commands(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q",
        "-w", tmp_path / "wheels", cwd=tmp_path)
    wheel, = (tmp_path / "wheels").glob("gamo_keras-*.whl")
    assert installed_names(wheel) == {"gamo"}
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
    site_packages = site.stdout.strip()
    (tmp_path / "venv" / site_packages.split(str(venv) + "/")[1] / "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[benchmark]",
        cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    # A user's folder with files named like the seed's scripts: gamo never imports them.
    (work / "dense_net.py").write_text("raise ImportError('not the project: a file of the user')\n")
    for backend in ("tensorflow", "jax", "torch"):
        quiet = run(python, "-c", "import sys, gamo; print(sorted({'keras', 'tensorflow', 'jax', 'torch'} "
                    "& set(sys.modules)), gamo.__version__)", cwd=work,
                    env={**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "0"})
        assert quiet.stderr == "" and quiet.stdout.startswith("[] "), (backend, quiet.stdout, quiet.stderr)
    result = run(python, "-c", SAMPLER_IN_A_PIPELINE, site_packages, cwd=work)
    assert result.stdout.startswith("resampled 25 batches;")
    for command in COMMANDS:
        result = run(venv / "bin" / command, "--help", cwd=work)
        assert result.stdout.startswith(f"usage: {command} ") and result.stderr == ""
    small = run(venv / "bin" / "gamo-benchmark", "--datasets", "glass_0_4_vs_5", "--samplers", "none,smote",
                "--classifiers", "lr", "--folds", "2", "--repeats", "1", "--out-dir", "bench", cwd=work)
    assert "2 samplers x 2 folds: 4 units" in small.stdout and (work / "bench" / "benchmark.md").is_file()


def installed_names(wheel):
    """The import names a wheel installs: its top_level.txt, checked against its files."""
    with zipfile.ZipFile(wheel) as archive:
        top_level, = [name for name in archive.namelist() if name.endswith(".dist-info/top_level.txt")]
        declared = set(archive.read(top_level).decode().split())
        files = {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}
    assert files == {f"{name}" for name in declared}, files
    return declared
