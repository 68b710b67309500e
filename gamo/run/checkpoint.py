"""Checkpoints: every state variable under its stable name, the run's state
and arrays, written atomically and read back with every value checked."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.errors import InputError, NotFinite, RunError, WriteError, one_line
from gamo.files import current_umask, read_npz, write_npz
from gamo.run.settings import comparable, first_difference

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import keras
    import numpy.typing as npt

    from gamo.files import PathLike
    from gamo.run.settings import TrainingSettings

    # {stable name: variable}: what a checkpoint stores, and what it is read back into.
    NamedVariables = Mapping[str, keras.Variable]
    # check(state, arrays): raises for a checkpoint's content that does not fit.
    Check = Callable[[dict[str, Any], dict[str, np.ndarray]], object]


def write_checkpoint(root: PathLike, number: int, variables: NamedVariables, state: Mapping[str, Any],
                     arrays: Mapping[str, npt.ArrayLike], keep: int = 2) -> None:
    """Write <root>/step_<number>/ (variables.npz, arrays.npz, state.json) into a
    temporary folder, then rename it; keep the newest `keep` checkpoints. A
    failed write leaves the earlier checkpoints as they were (WriteError).
    `variables` is {stable name: variable}: each value is stored under its name."""
    root = Path(root)
    tmp: Path | None
    final, tmp = root / f"step_{number}", None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step_{number}-", dir=root))
        write_npz(tmp / "variables.npz", finite_values(variables, number, root))
        write_npz(tmp / "arrays.npz", arrays)
        (tmp / "state.json").write_text(json.dumps(state))
        os.chmod(tmp, 0o777 & ~current_umask())   # mkdtemp makes 0700; give the usual mode
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as error:
        reason = error.strerror or one_line(error)
        raise WriteError(f"{final}: cannot write the checkpoint ({reason})") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for _, old in sorted(checkpoints_in(root))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def finite_values(variables: NamedVariables, number: int, root: PathLike) -> dict[str, np.ndarray]:
    """{name: array} of the variables; NotFinite if a weight or state is NaN or infinite
    (a diverged update whose loss was still finite): such a state is never a checkpoint."""
    values = {name: np.asarray(v) for name, v in variables.items()}
    for name, value in values.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NotFinite(f"{root}/step_{number}: {name} is not finite; checkpoint not written "
                            f"({newest_checkpoint_line(root)})")
    return values


def newest_checkpoint_line(root: PathLike) -> str:
    """Which checkpoint in `root` is the newest (the last good state), for messages."""
    newest = max(checkpoints_in(root), default=None)
    return f"the newest, {newest[1]}, is the last good state" if newest else "no checkpoint had been written"


class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be used as it is."""


# What reading a damaged .npz or .json file, or checking its content, can raise.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile,
              NotImplementedError, RuntimeError, OverflowError, zlib.error, struct.error)


def read_checkpoint(root: PathLike, settings: TrainingSettings,
                    variables: NamedVariables | Callable[[dict[str, Any]], NamedVariables],
                    check: Check | None = None) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]]:
    """Load the newest usable checkpoint in `root` into `variables`; return
    (folder, state, arrays).

    `variables` is {name: thing with .shape, .dtype and .assign}, or a function
    of the checkpoint's state giving that; check(state, arrays), if given,
    raises KeyError, ValueError or TypeError for content that does not fit.
    Every file is read and checked before anything is assigned. A damaged
    checkpoint is reported in one line and the one before it tried. None
    usable, or one written with other settings: InputError, nothing changed.
    """
    found = sorted(checkpoints_in(root), reverse=True)
    if not found:
        raise InputError(f"{root}: no checkpoint to resume from")
    damaged: list[str] = []
    for _, folder in found:
        try:
            state, targets, values, arrays = load_checkpoint(folder, settings, variables, check)
        except DamagedCheckpoint as damage:
            print(f"warning: {folder}: damaged ({damage}); trying the checkpoint before it", file=sys.stderr)
            damaged.append(f"{folder.name}: {damage}")
            continue
        for variable, value in zip(targets, values):
            variable.assign(value)
        return folder, state, arrays
    raise InputError(f"{root}: no usable checkpoint ({'; '.join(damaged)}); nothing was changed")


def load_checkpoint(folder: Path, settings: TrainingSettings,
                    variables: NamedVariables | Callable[[dict[str, Any]], NamedVariables],
                    check: Check | None) -> tuple[dict[str, Any], list[keras.Variable], list[np.ndarray],
                                                  dict[str, np.ndarray]]:
    """Every file of one checkpoint, read and checked: (state, variables, their values, arrays)."""
    try:
        state = json.loads((folder / "state.json").read_text())
        if not isinstance(state, dict) or not isinstance(state.get("settings"), dict):
            raise ValueError("no settings in state.json")
    except (OSError, ValueError) as error:
        raise DamagedCheckpoint(f"state.json: {one_line(error)}") from None
    difference = first_difference(settings, comparable(settings), state["settings"])
    if difference:
        raise InputError(f"{folder}: the checkpoint was written by another run ({difference}); resume "
                         "with the checkpoint's settings and data")
    values: dict[str, np.ndarray] | list[np.ndarray]     # as read, then in the order of targets
    try:
        targets = variables(state) if callable(variables) else variables
        values = read_npz(folder / "variables.npz")
        arrays = read_npz(folder / "arrays.npz")
        if check is not None:
            check(state, arrays)
    except MemoryError:
        raise RunError(f"{folder}: not enough memory to read the checkpoint") from None
    except UNREADABLE as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else one_line(error)
        raise DamagedCheckpoint(reason) from None
    values = values_by_name(folder, targets, values)
    return state, list(targets.values()), values, arrays


def values_by_name(folder: Path, targets: NamedVariables, values: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The stored values in the order of `targets` ({name: variable}), each
    checked against its variable's shape and kind of number. Checkpoints of the
    first format (arr_0, arr_1, ... in the order of the variables) are read by
    position. A missing or unknown name: InputError (written by another version)."""
    if values and all(key == f"arr_{index}" for index, key in enumerate(values)):
        values = dict(zip(targets, values.values())) if len(values) == len(targets) else values
    missing, unknown = sorted(set(targets) - set(values)), sorted(set(values) - set(targets))
    if missing or unknown:
        raise InputError(f"{folder}: written by another version of the networks or the program "
                         f"(missing: {', '.join(missing[:3]) or 'none'}{' ...' if len(missing) > 3 else ''}; "
                         f"unknown: {', '.join(unknown[:3]) or 'none'}{' ...' if len(unknown) > 3 else ''})")
    for name, target in targets.items():
        value, kind = values[name], np.dtype(standard_dtype(target.dtype)).kind
        if value.shape != tuple(target.shape) or value.dtype.kind != kind:
            raise InputError(f"{folder}: {name} is {value.dtype}{list(value.shape)} there, "
                             f"{standard_dtype(target.dtype)}{list(target.shape)} here")
    return [values[name] for name in targets]


def standard_dtype(dtype: Any) -> str:
    """A variable's dtype as NumPy names it (Keras gives strings, TensorFlow DType objects)."""
    return getattr(dtype, "name", str(dtype)).replace("torch.", "")


def checkpoints_in(root: PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint (temporary folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [(int(p.name.split("_")[1]), p) for p in root.iterdir()
            if p.is_dir() and p.name.startswith("step_") and p.name.split("_")[1].isdigit()]


def generator_states(*generators: np.random.Generator) -> list[Mapping[str, Any]]:
    """The bit-generator states of NumPy generators, for state.json."""
    return [generator.bit_generator.state for generator in generators]


def restore_generators(states: object, *generators: np.random.Generator) -> None:
    """Put back the states of generator_states (from state.json); ValueError if they do not fit."""
    if not isinstance(states, list) or len(states) != len(generators):
        raise ValueError(f"expected the states of {len(generators)} random generators")
    for generator, state in zip(generators, states):
        generator.bit_generator.state = state
