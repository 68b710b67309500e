"""Writing outputs so that no half-written file ever appears under its final
name, reproducible .npz files, and the output folder."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.errors import InputError, WriteError, one_line

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import numpy.typing as npt

# A file's or folder's name, as the functions that take one accept it.
PathLike = str | os.PathLike[str]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc);
    elsewhere set and put back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; rename it to `path` on success.

    The temporary name keeps the extension (writers such as Keras and
    matplotlib pick the format from it); on failure it is removed, so a
    half-written file never appears under the final name.
    """
    tmp: str | None
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())   # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({error.strerror or one_line(error)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_npz(path: PathLike, arrays: Mapping[str, npt.ArrayLike]) -> None:
    """np.savez's format with no time stamps and no pickled objects: the same
    arrays always give the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def save_npz(path: PathLike, **arrays: npt.ArrayLike) -> None:
    """write_npz's reproducible .npz file, written atomically."""
    with atomic_path(path) as tmp:
        write_npz(tmp, arrays)


def save_json(path: PathLike, obj: Any) -> None:
    """`obj` as indented JSON with sorted keys (str() of what JSON cannot hold), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def save_labelled_csv(path: PathLike, features: npt.ArrayLike, labels: npt.ArrayLike) -> None:
    """Write features then the label as the last column, integers where exact."""
    table = np.column_stack([features, labels])
    integral = np.array_equal(table, np.round(table))
    with atomic_path(path) as tmp:
        np.savetxt(tmp, table, fmt="%d" if integral else "%.9g", delimiter=",")


def prepare_output_dir(out_dir: PathLike) -> Path:
    """Create the output folder, or explain in one line why it cannot be used."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{out_dir}: cannot create output folder ({error.strerror})") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"{out_dir}: output folder is not writable")
    return out_dir


def read_npz(path: PathLike) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read in full (no pickled objects)."""
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}
