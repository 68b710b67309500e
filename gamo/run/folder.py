"""The output folder of a run: one writer at a time, and no mixing of two runs' files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gamo.environment import keras_backend_name
from gamo.errors import InputError, WriteError, one_line
from gamo.files import prepare_output_dir, save_json
from gamo.run.settings import comparable, first_difference

try:
    import fcntl
except ImportError:          # not on Windows: no folder locks there
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from typing import IO

    from gamo.files import PathLike
    from gamo.run.settings import TrainingSettings


_HELD_LOCKS: dict[str, IO[str]] = {}     # output folder -> its open lock file, held until this process ends


def lock_output_dir(out_dir: PathLike) -> None:
    """One writer per output folder: an OS lock on <out_dir>/.lock (which names
    the holder's process id), held until this process ends. The OS releases it
    when the process ends in any way, so a killed run leaves no lock behind."""
    key = str(Path(out_dir).resolve())
    if key in _HELD_LOCKS or fcntl is None:
        return
    try:
        stream = open(Path(out_dir) / ".lock", "a+")
    except OSError as error:
        raise WriteError(f"{out_dir}: cannot write its lock file ({error.strerror})") from None
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        stream.seek(0)
        holder = stream.read().strip() or "unknown"
        stream.close()
        raise InputError(f"{out_dir}: in use by a running run (process {holder}); wait for it to end, "
                         "or pass another --out-dir") from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{os.getpid()}\n")
    stream.flush()
    _HELD_LOCKS[key] = stream


def claim_output_dir(settings: TrainingSettings) -> Path:
    """Create the output folder; refuse one that holds another run's outputs.

    No run is overwritten by surprise: a new run into a folder that holds a
    run's outputs (finished or not, same settings or not) is refused, unless
    --overwrite asks to replace them; --resume continues the run there, with
    the same settings (a run with other settings, say the convolutional script
    where the dense one wrote, would mix its files with the other run's). A
    new run marks the folder as its own in settings.json; a resumed one
    changes nothing until it trains.
    """
    out_dir = prepare_output_dir(settings.out_dir)
    lock_output_dir(out_dir)
    path = out_dir / "settings.json"
    mine = comparable(settings)
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
            if not isinstance(theirs, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not the settings of a run ({one_line(error)}); pass another "
                             "--out-dir or remove that folder") from None
        difference = first_difference(settings, mine, theirs)
        if settings.overwrite and not settings.resume:
            clear_outputs(out_dir)
        elif difference:
            raise InputError(f"{out_dir}: holds the outputs of another run ({difference}); pass another "
                             "--out-dir, or --overwrite to replace them")
        elif not settings.resume:
            kind = "a finished run" if theirs.get("status") == "finished" else "an unfinished run"
            raise InputError(f"{out_dir}: holds the outputs of {kind}; continue it with --resume (with "
                             "--steps N to train it longer), replace it with --overwrite, or pass another "
                             "--out-dir")
        else:
            note_other_backend(out_dir, theirs)
    if not settings.resume:
        save_json(path, {**mine, "status": "running"})
    return out_dir


def release_output_dir(out_dir: PathLike) -> None:
    """Undo claim_output_dir for a new run that never trained (a group refused
    before training): its settings.json and lock go, and the folder if that
    empties it, so that the same command with fewer seeds starts afresh."""
    out_dir = Path(out_dir)
    stream = _HELD_LOCKS.pop(str(out_dir.resolve()), None)
    if stream is not None:
        stream.close()
    for name in ("settings.json", ".lock"):
        (out_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):      # not empty: something else lives there
        out_dir.rmdir()


def clear_outputs(out_dir: Path) -> None:
    """Remove a run's outputs from its folder (--overwrite); the lock stays."""
    for entry in out_dir.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def note_other_backend(out_dir: Path, theirs: dict[str, Any]) -> None:
    """Say so when a run resumes under another backend than it trained on (allowed:
    checkpoints are NumPy arrays, the same on every backend)."""
    backend = theirs.get("backend")
    if backend and backend != keras_backend_name():
        print(f"note: {out_dir} was trained under {backend}; it resumes under {keras_backend_name()} "
              "(checkpoints are the same on every backend)", file=sys.stderr)
