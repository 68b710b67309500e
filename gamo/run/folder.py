"""The output folder of a run: one writer at a time, and no mixing of two runs' files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

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

    A run with the same settings may write there again (or resume); a run with
    other settings (say the convolutional script where the dense one wrote)
    would mix its files with the other run's. A new run marks the folder as
    its own in settings.json; a resumed one changes nothing until it trains.
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
        if difference:
            raise InputError(f"{out_dir}: holds the outputs of another run ({difference}); pass another "
                             "--out-dir or remove that folder")
    if not settings.resume:
        save_json(path, {**mine, "status": "running"})
    return out_dir
