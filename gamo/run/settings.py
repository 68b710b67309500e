"""A run's settings: the options every training script shares, the parser,
and the settings as saved beside the results and compared on resume."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from gamo.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TypeVar

    from gamo.files import PathLike

    _Settings = TypeVar("_Settings", bound="TrainingSettings")


# Adam moves every weight by about the learning rate each update: above this a run only diverges.
LEARNING_RATE_LIMIT = 1.0


@dataclass
class TrainingSettings:
    """What every training script shares; each script subclasses it with its own
    defaults and settings. Everything a run depends on is a field: the fields
    are saved beside the results and compared when a run is resumed."""

    train: str = ""
    out_dir: str = ""
    steps: int = 50000
    batch_size: int = 32
    save_every: int = 5000
    lr: float = 0.0002
    beta1: float = 0.5
    seed: int = 0
    no_scale: bool = False
    standard_adam: bool = False       # each Adam state its own step counter (not the reference's)
    jit: bool | None = None           # None: XLA by the amount of work (gamo.backend.jit_as_asked)
    resume: bool = False
    overwrite: bool = False           # replace the outputs of a run already in out_dir
    tensorboard: str = ""             # a folder for TensorBoard event files, if given

    def positive_integers(self) -> tuple[str, ...]:
        """Names of the settings that must be positive integers."""
        return ("steps", "batch_size", "save_every")

    def validate(self) -> None:
        """InputError for a setting out of its range."""
        for name in self.positive_integers():
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be a positive integer, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.lr <= LEARNING_RATE_LIMIT:
            raise InputError(f"--lr: must be in (0, {LEARNING_RATE_LIMIT:g}] (the reference's is 0.0002), "
                             f"got {self.lr:g}")
        if not 0 <= self.beta1 < 1:
            raise InputError(f"--beta1: must be in [0, 1), got {self.beta1:g}")

    def data_files(self) -> tuple[str, ...]:
        """The settings that name input files: compared on resume by their content."""
        return ("train",)

    def recorded(self, name: str, record: Mapping[str, Any]) -> Any:
        """Setting `name` of a record of settings (settings.json, a checkpoint's);
        "(not set)" if it has none. Subclasses say what older records meant."""
        return record.get(name, "(not set)")

    def uncompared(self) -> tuple[str, ...]:
        """Settings that do not change the run's mathematics: a checkpoint written
        with other values resumes (where the output folder is, how the data files
        are spelled, XLA or not, how often checkpoints are written)."""
        return ("resume", "overwrite", "out_dir", "jit", "save_every", "tensorboard", *self.data_files())


def parse_seeds(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]: seeds as numbers and inclusive ranges."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0-31 or 0,1,5, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0, got {text!r}")
    return seeds


def add_training_options(parser: argparse.ArgumentParser, defaults: TrainingSettings, train_help: str,
                         out_dir_help: str, steps_help: str, save_help: str) -> None:
    """The options every training script shares, with the script's defaults."""
    parser.add_argument("--train", default=defaults.train, help=train_help)
    parser.add_argument("--out-dir", default=defaults.out_dir, help=out_dir_help)
    parser.add_argument("--steps", type=int, default=defaults.steps, help=steps_help)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="rows per batch")
    parser.add_argument("--save-every", type=int, default=defaults.save_every, help=save_help)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    parser.add_argument("--beta1", type=float, default=defaults.beta1, help="Adam beta_1")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of weights, shuffling and noise (the reference sets none)")
    parser.add_argument("--no-scale", action="store_true",
                        help="use the values as they are instead of (x - 127.5) / 127.5 "
                             "(for features that are not 0-255 pixels)")
    parser.add_argument("--standard-adam", action="store_true",
                        help="each Adam state counts its own steps (Keras 3's Adam) instead of the "
                             "reference's one step counter shared by every model (Keras 2.2)")
    parser.add_argument("--jit", dest="jit", action="store_const", const=True,
                        help="compile the steps with XLA (by default: on TensorFlow for runs of 5000 "
                             "batches or more, as the estimators; always on JAX)")
    parser.add_argument("--no-jit", dest="jit", action="store_const", const=False,
                        help="compile the steps with tf.function only, without XLA")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the outputs of a run already in the output folder (by default a "
                             "new run there is refused)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in the output folder "
                             "(the settings must be the checkpoint's)")
    parser.add_argument("--tensorboard", metavar="DIR", default=defaults.tensorboard,
                        help="also write the losses and scores as TensorBoard event files into DIR")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default once: not a flag's (whose default only
    means 'not given'), not an empty one (None, ""), not where the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.nargs == 0 or action.default in (None, "", argparse.SUPPRESS) or "default" in text.lower():
            return action.help
        return super()._get_help_string(action)


def new_parser(description: str) -> argparse.ArgumentParser:
    """The command line parser of every script and benchmark."""
    return argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)


def settings_from(args: argparse.Namespace, cls: type[_Settings]) -> _Settings:
    """The settings of class `cls` from parsed options, validated."""
    settings = cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})
    settings.validate()
    return settings


def comparable(settings: TrainingSettings) -> dict[str, Any]:
    """Settings as JSON values with the SHA-256 of each data file's content, for
    settings.json and checkpoints, and for comparing with them (first_difference)."""
    values = json.loads(json.dumps(asdict(settings), default=str))
    values.pop("resume", None)
    values.pop("overwrite", None)
    return {**values, "data_sha256": {name: file_sha256(getattr(settings, name))
                                      for name in settings.data_files()}}


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's content ("(missing)" if it cannot be read)."""
    try:
        status = os.stat(path)
        return _sha256_of(os.path.realpath(path), status.st_size, status.st_mtime_ns)
    except OSError:
        return "(missing)"


def first_difference(settings: TrainingSettings, mine: Mapping[str, Any],
                     theirs: Mapping[str, Any]) -> str | None:
    """'name = theirs there, mine here' for the first setting that changes the
    run's mathematics and differs, or None. A data file differs by its content;
    records written before the data hashes (no data_sha256) are compared by the
    data files' names instead. A setting that they lack counts as what
    settings.recorded(name, theirs) says (records written before it existed)."""
    by_name = set(settings.data_files()) if "data_sha256" not in theirs else set()
    skipped = set(settings.uncompared()) - by_name
    for name, value in mine.items():
        if name == "data_sha256" and isinstance(theirs.get(name), dict):
            for file, digest in value.items():
                if theirs[name].get(file) != digest:
                    return (f"the content of --{file} (SHA-256 {str(theirs[name].get(file))[:12]} there, "
                            f"{digest[:12]} here)")
        elif name not in skipped and name != "data_sha256" and settings.recorded(name, theirs) != value:
            return f"{name} = {settings.recorded(name, theirs)!r} there, {value!r} here"
    return None
