"""Every reader, fed damaged or foreign bytes (property-based, Hypothesis): random
bytes, another text encoding, truncation at any offset, overwritten bytes, huge
or empty lines, values out of range. Either the data are read, or the reader
raises InputError with one line naming the file, and nothing is written.

`make test` runs a bounded, derandomised number of examples (profile "ci");
`make fuzz` runs many more (profile "fuzz") and prints Hypothesis' statistics.
"""

import gzip
import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamo import prepare
from gamo.data import load_dataset
from gamo.errors import InputError
from gamo.images import image_shape_for
from gamo.run.checkpoint import read_checkpoint, write_checkpoint
from gamo.run.folder import claim_output_dir
from gamo.run.record import Record
from gamo.run.settings import TrainingSettings, comparable


def damaged(valid, text=True):
    """Byte strings near `valid` (a file that reads correctly) and far from it."""
    lines = valid.split(b"\n")
    near = [
        st.integers(0, len(valid)).map(lambda k: valid[:k]),                                  # truncated
        st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=16)).map(        # overwritten
            lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):]),
        st.tuples(st.integers(0, len(lines)), st.sampled_from([                                # a line added
            b"", b"   ", b",", b"1e400," * 4, b"-1,-2,-3", b"nan,1,2", b"1," * 20000, b"\x00\xff\xfe",
            "é,ü".encode(), b"#comment"])).map(lambda t: b"\n".join(lines[:t[0]] + [t[1]] + lines[t[0]:])),
        st.binary(max_size=3000),                                                              # foreign
    ]
    if text:
        near.append(st.sampled_from(["utf-16", "utf-32", "cp1252"]).map(lambda enc: valid.decode().encode(enc)))
    return st.one_of(near)


def one_line_naming(error, path):
    message = str(error.value)
    assert "\n" not in message and str(path) in message, message


# ---------------------------------------------------------------- the training and test CSVs

ROWS = np.column_stack([np.arange(60).reshape(10, 6) * 4, [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]])
VALID_CSV = "\n".join(",".join(str(int(v)) for v in row) for row in ROWS).encode() + b"\n"
SQUARE_CSV = "\n".join(",".join(str(int(v)) for v in [*row[:4], row[-1]]) for row in ROWS).encode() + b"\n"


@given(content=damaged(VALID_CSV), which=st.sampled_from(["train", "test"]))
def test_the_training_scripts_csv_readers(content, which):
    """dense_gamo_main.py and fashion_mnist_gamo_main.py read both files with load_dataset."""
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.csv" for name in ("train", "test")}
        for name, path in paths.items():
            path.write_bytes(content if name == which else VALID_CSV)
        try:
            dataset = load_dataset(paths["train"], paths["test"])
        except InputError as error:
            assert "\n" not in str(error) and str(paths[which]) in str(error), str(error)
            return
        assert dataset.x_train.dtype == np.float32 and np.isfinite(dataset.x_train).all()
        assert dataset.x_train.shape[1] == dataset.x_test.shape[1]
        assert dataset.imbalance.minority.size > 0


@given(content=damaged(SQUARE_CSV))
def test_the_convolutional_scripts_image_shapes(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.csv"
        path.write_bytes(content)
        try:
            dataset = load_dataset(path, None)
            shape = image_shape_for(dataset.x_train.shape[1], None, path)
        except InputError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            return
        assert int(np.prod(shape)) == dataset.x_train.shape[1]


# ---------------------------------------------------------------- the processing scripts' inputs

SOURCE_ROWS = np.column_stack([np.arange(10) % 10, np.tile(np.arange(784) % 256, (10, 1))])
VALID_SOURCE = "\n".join(",".join(map(str, row)) for row in SOURCE_ROWS).encode() + b"\n"


@given(content=damaged(VALID_SOURCE))
def test_the_processing_scripts_source_csv(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist_train.csv"
        path.write_bytes(content)
        try:
            split = prepare.read_source_csv(path)
        except InputError as error:
            assert "\n" not in str(error) and str(path) in str(error)
            return
        assert split.images.dtype == np.uint8 and split.images.shape[1] == 784
        assert set(split.labels.tolist()) <= set(range(10))


def idx_bytes(array):
    return b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


VALID_IMAGES = idx_bytes(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
VALID_LABELS = idx_bytes(np.array([3, 1, 4], dtype=np.uint8))


@given(content=st.one_of(damaged(VALID_IMAGES, text=False), damaged(VALID_LABELS, text=False)),
       zipped=st.one_of(st.none(), damaged(gzip.compress(VALID_IMAGES, mtime=0), text=False)))
def test_the_processing_scripts_idx_files(content, zipped):
    """Plain IDX files, and gzipped ones damaged after compression."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("file" if zipped is None else "file.gz")
        path.write_bytes(content if zipped is None else zipped)
        for ndim in (1, 3):
            try:
                array = prepare.read_idx(path, ndim)
            except InputError as error:
                assert "\n" not in str(error) and str(path) in str(error)
                continue
            assert array.dtype == np.uint8 and array.ndim == ndim


# ---------------------------------------------------------------- checkpoints and settings.json

class Slot:
    """A variable of a given shape that records what is assigned to it."""

    def __init__(self, shape):
        self.shape, self.value, self.dtype = shape, np.zeros(shape, np.float32), np.dtype(np.float32)

    def assign(self, value):
        self.value = np.array(value)


SETTINGS = TrainingSettings(train="t.csv", out_dir="out")
STORED = {"MLP/dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "MLP/dense/bias": np.ones(4, np.float32)}
RECORD = Record(40, 10, 3)


def valid_checkpoint(root):
    state = {"step": 8, "settings": comparable(SETTINGS)}
    write_checkpoint(root, 8, STORED, state, RECORD.state())
    return root / "step_8"


def check_record(state, arrays):
    for key, expected in RECORD.state().items():
        if arrays[key].shape != expected.shape:
            raise ValueError(f"{key} has another shape")


with tempfile.TemporaryDirectory() as _folder:
    CHECKPOINT_FILES = {p.name: p.read_bytes() for p in valid_checkpoint(Path(_folder)).iterdir()}


@given(name=st.sampled_from(sorted(CHECKPOINT_FILES)), data=st.data())
def test_checkpoint_folders(name, data):
    content = data.draw(damaged(CHECKPOINT_FILES[name], text=name.endswith(".json")))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        damaged_file = valid_checkpoint(root) / name
        damaged_file.write_bytes(content)
        before = {p.name: p.read_bytes() for p in damaged_file.parent.iterdir()}
        slots = {name: Slot(value.shape) for name, value in STORED.items()}
        try:
            _, state, arrays = read_checkpoint(root, SETTINGS, slots, check_record)
        except InputError as error:
            assert "\n" not in str(error) and str(root) in str(error)
            assert all(not slot.value.any() for slot in slots.values())      # nothing was assigned
        else:
            for name, value in STORED.items():
                assert slots[name].value.shape == value.shape
            check_record(state, arrays)
        assert {p.name: p.read_bytes() for p in damaged_file.parent.iterdir()} == before


VALID_SETTINGS = json.dumps({**comparable(SETTINGS), "status": "finished"}).encode()


@given(content=damaged(VALID_SETTINGS))
def test_settings_json_of_an_output_folder(content):
    with tempfile.TemporaryDirectory() as folder:
        settings = TrainingSettings(train="t.csv", out_dir=str(Path(folder) / "out"), resume=True)
        path = Path(settings.out_dir) / "settings.json"
        path.parent.mkdir()
        path.write_bytes(content)
        try:
            claim_output_dir(settings)
        except InputError as error:
            assert "\n" not in str(error) and str(path.parent) in str(error)
        assert path.read_bytes() == content                 # a resumed run changes nothing here


# ---------------------------------------------------------------- GAMO2pix's model folders

@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny gamo_models_<step> folder: F, the trunk and one IGU, as GAMO2pix loads them."""
    from gamo import nets

    folder = tmp_path_factory.mktemp("models") / "gamo_models_4"
    folder.mkdir()
    trunk = nets.build_generator_trunk(4, 2)
    for name, model in {"Conv": nets.build_feature_extractor((8, 8, 1), 6), "GEN": trunk,
                        "GenP_0": nets.build_igu(64, 3, 6)}.items():
        model.save(folder / f"{name}_4.keras")
    return folder


@given(name=st.sampled_from(["Conv_4.keras", "GEN_4.keras", "GenP_0_4.keras"]), data=st.data())
def test_gamo2pix_model_folders(model_files, name, data):
    from gamo import gamo2pix

    valid = (model_files / name).read_bytes()
    content = data.draw(st.one_of(st.integers(0, len(valid)).map(lambda k: valid[:k]),
                                  st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=64)).map(
                                      lambda t: valid[:t[0]] + t[1] + valid[t[0] + len(t[1]):]),
                                  st.binary(max_size=2000)))
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / model_files.name
        copy.mkdir()
        for path in model_files.iterdir():
            (copy / path.name).write_bytes(content if path.name == name else path.read_bytes())
        try:
            models = gamo2pix.load_gamo_models(copy, [0])
        except InputError as error:
            assert "\n" not in str(error) and str(copy) in str(error)
            return
        assert models.igus[0].output.shape[-1] == models.extractor.output.shape[-1]


def test_a_model_that_would_run_code_is_refused(model_files, tmp_path):
    """Keras' safe mode: a Lambda layer (pickled Python code) is not loaded."""
    import keras

    from gamo import gamo2pix

    copy = tmp_path / model_files.name
    copy.mkdir()
    for path in model_files.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(copy / "Conv_4.keras")
    with pytest.raises(InputError, match="Conv_4.keras: cannot load"):
        gamo2pix.load_gamo_models(copy, [0])
