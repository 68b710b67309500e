"""Which Keras backend a process will use, and starting it quietly: nothing here
imports Keras or a backend, so it can be asked before they start.

Also the backend settings that this project's scripts choose for themselves:
TensorFlow's start-up lines muted (for a program that imports gamo too, unless
it sets TF_CPP_MIN_LOG_LEVEL itself), oneDNN and sleeping OpenMP threads for the
convolutional scripts, PyTorch's threads (gamo.backend).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType


# When this process started using gamo (before Keras and its backend): a run's settings.json
# gives the command's whole time from here, start-up and compilation included.
PROCESS_STARTED = time.time()

# TensorFlow's log level as the program set it before gamo started a backend (JAX sets its
# own default when imported; that is not the user's choice).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def keras_backend_name() -> str:
    """The backend Keras will run on, as Keras chooses it (KERAS_BACKEND, then
    ~/.keras/keras.json, then TensorFlow), without importing Keras."""
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(config.read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_backend_quietly() -> ModuleType | None:
    """Import TensorFlow quietly when it is Keras' backend (JAX and PyTorch
    start quietly)."""
    return import_tensorflow_quietly() if keras_backend_name() == "tensorflow" else None


# The project's folder (its scripts and bench/ live there, when run from a clone).
PROJECT_DIR = Path(__file__).resolve().parents[1]


# The scripts of a clone -> the commands `pip install` makes of them (pyproject.toml's [project.scripts]).
SCRIPT_COMMANDS = {"dense_gamo_main.py": "gamo-dense", "fashion_mnist_gamo_main.py": "gamo-fashion-mnist",
                   "fashion_mnist_gamo2pix_main.py": "gamo2pix", "MNIST_process.py": "gamo-mnist-process",
                   "fMNIST_process.py": "gamo-fmnist-process"}
COMMANDS = tuple(SCRIPT_COMMANDS.values())


def how_to_run(script: str) -> str:
    """How the user runs `script` (a clone's file name): as the installed command
    when this process is one, else `python <script>`."""
    if Path(sys.argv[0]).name in COMMANDS:
        return SCRIPT_COMMANDS[script]
    return f"python {script}"


def running_our_script() -> bool:
    """True when the process is one of this project's scripts, benchmarks or
    installed commands (not a user's program that imports gamo, nor a test runner)."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main is None:
        return False
    return (Path(main).resolve().parent in (PROJECT_DIR, PROJECT_DIR / "bench", PROJECT_DIR / "gamo" / "cli")
            or Path(main).name in COMMANDS)


def import_tensorflow_quietly() -> ModuleType:
    """Import TensorFlow and let it probe for devices with file descriptor 2 muted.

    Its C++ start-up lines (CUDA probing, CPU-feature and absl notices) ignore
    TF_CPP_MIN_LOG_LEVEL and print even on a machine without a GPU; muting them
    keeps this project's scripts' errors to one line and a library user's first
    fit as quiet as `import gamo`. A program that sets TF_CPP_MIN_LOG_LEVEL
    itself chose what TensorFlow prints: outside this project's scripts,
    TensorFlow then starts as it would. Python exceptions propagate normally.
    """
    if "tensorflow" in sys.modules or (USER_TF_LOG_LEVEL is not None and not running_our_script()):
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def prefer_onednn() -> None:
    """In this project's scripts, TensorFlow's oneDNN kernels unless TF_ENABLE_ONEDNN_OPTS
    says otherwise: they run the feature extractor F fastest (gamo.backend.jit_for_convolutions);
    TensorFlow turns them on by itself only on some CPUs. Call before TensorFlow is imported."""
    if running_our_script():
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def prefer_sleeping_threads() -> None:
    """In this project's convolutional scripts on PyTorch, OpenMP threads that sleep
    while they wait (OMP_WAIT_POLICY=PASSIVE) unless the environment says otherwise,
    so that convolutions can have every core (gamo.backend.convolution_threads).
    Call before PyTorch is imported."""
    if running_our_script() and keras_backend_name() == "torch":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
