"""The same game on TensorFlow, JAX and PyTorch: a few batches from the same
initial weights and random draws (NumPy's, see backend_probe.py) leave every
weight, Adam moment, step counter and BatchNorm statistic equal up to float32
rounding; a model saved under JAX loads under the others."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, run_script

pytestmark = pytest.mark.slow

BACKENDS = [name for name, module in (("tensorflow", "tensorflow"), ("jax", "jax"), ("torch", "torch"))
            if importlib.util.find_spec(module) is not None]
needs_three = pytest.mark.skipif(len(BACKENDS) < 3, reason=f"only {BACKENDS} installed")

# Measured (5 dense batches; 3 F+M and 3 game batches): the median tensor agrees
# to about 2e-7 of its largest value, the worst (the trunk's first BatchNorm
# beta, whose gradient is near zero) to 9e-6; float32's epsilon is 1.2e-7. Adam
# divides by sqrt(v), so a rounding difference in a tiny gradient becomes a
# step of up to lr: hence 20 times the worst seen, and integers exactly.
WORST, MEDIAN = 2e-4, 2e-6


def probe(backend, case, batches, folder):
    out = folder / f"{case}_{backend}.npz"
    result = run_script("tests/backend_probe.py", case, batches, out, env={"KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out))


def relative_error(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / (np.max(np.abs(a)) + 1e-12)) if a.size else 0.0


def assert_agree(reference, other, name):
    assert list(reference) == list(other), f"{name}: other state variables"
    errors = {}
    for key, value in reference.items():
        assert value.shape == other[key].shape, key
        if np.issubdtype(value.dtype, np.integer):
            np.testing.assert_array_equal(value, other[key], err_msg=f"{name}: {key}")
        else:
            errors[key] = relative_error(value, other[key])
    worst = max(errors, key=errors.get)
    assert errors[worst] <= WORST, f"{name}: {worst} differs by {errors[worst]:.2e}"
    assert np.median(list(errors.values())) <= MEDIAN, name


@needs_three
@pytest.mark.parametrize("case, batches", [("dense", 5), pytest.param("conv", 3, marks=pytest.mark.long)])
def test_the_same_batches_give_the_same_state_on_every_backend(case, batches, tmp_path):
    states = {backend: probe(backend, case, batches, tmp_path) for backend in BACKENDS}
    reference = states.pop("tensorflow")
    counters = [key for key in reference if key.endswith("shared_iterations")]
    assert len(counters) == 1 and reference[counters[0]] > 0      # the shared counter ran
    assert any(key.endswith("_biased") for key in reference)      # per-call-site BatchNorm statistics
    for backend, state in states.items():
        assert_agree(reference, state, backend)


@needs_three
@pytest.mark.long
def test_models_saved_under_jax_load_and_predict_the_same_under_the_others(digits_csvs, tmp_path):
    train, test = digits_csvs
    out = tmp_path / "jax_run"
    result = run_script("dense_gamo_main.py", "--train", train, "--test", test, "--out-dir", out,
                        "--steps", "20", "--eval-every", "10", "--save-every", "20", env={"KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-3000:]
    predict = tmp_path / "predict.py"
    predict.write_text(
        "import sys, numpy as np, keras\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from dense_suppli import load_dataset\n"
        f"data = load_dataset({str(train)!r}, {str(test)!r})\n"
        f"mlp = keras.models.load_model({str(out / 'gamo_models_20' / 'MLP_20.keras')!r})\n"
        "print(''.join(map(str, np.argmax(keras.ops.convert_to_numpy(mlp(data.x_test)), axis=-1))))\n")
    labels = {}
    for backend in BACKENDS:
        loaded = run_script(predict, env={"KERAS_BACKEND": backend})
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        labels[backend] = loaded.stdout.split()[-1]
    assert len(set(labels.values())) == 1 and len(labels["jax"]) == 80, labels
    settings = (out / "settings.json").read_text()
    assert '"backend": "jax"' in settings


@pytest.mark.parametrize("backend", [pytest.param(b, marks=[pytest.mark.long] if b == "jax" else [])
                                     for b in BACKENDS if b != "tensorflow"])
def test_the_convolutional_script_and_gamo2pix_run_on_the_other_backends(backend, digits_csvs, tmp_path):
    train, test = digits_csvs
    env = {"KERAS_BACKEND": backend}
    gamo_dir = tmp_path / "Digits_8_Gamo"
    conv = run_script("fashion_mnist_gamo_main.py", "--train", train, "--test", test, "--out-dir", gamo_dir,
                      "--steps", "12", "--eval-every", "6", "--save-every", "12", "--num-features", "32", env=env)
    assert conv.returncode == 0, conv.stderr[-3000:]
    assert f"Keras backend {backend}" in conv.stdout
    assert not [line for line in conv.stderr.splitlines() if line.strip() and "batch" not in line], conv.stderr
    pix = run_script("fashion_mnist_gamo2pix_main.py", "--train", train, "--gamo-dir", gamo_dir,
                     "--out-dir", tmp_path / "ImgGen", "--steps", "4", "--picture-every", "2", "--save-every", "4",
                     "--num-images", "3", "--classes", "0", env=env)
    assert pix.returncode == 0, pix.stderr[-3000:]
    assert len(list((tmp_path / "ImgGen" / "generated_0").iterdir())) == 3
    assert (tmp_path / "ImgGen" / "models_0" / "decoder_4.keras").is_file()


@pytest.mark.long
def test_the_backends_benchmark_times_each_backend_in_turn(tmp_path):
    others = [b for b in BACKENDS if b != "tensorflow"]
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "backends.py"), "--smoke", "--rounds", "1",
                             "--case", "dense", "--backends", ",".join(others)],
                            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    medians = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(medians) == sorted(others) and all(m["compiled_ms"] > 0 for m in medians.values())
    assert "| dense GAMO, ms per batch (median) |" in result.stdout
