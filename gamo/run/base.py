"""What every run keeps, whatever it trains (GAMO's game, GAMO2pix's VAEs): its
settings and output folder, its seeded random generators, the players' losses
since the last report, TensorBoard, its wall time, and checkpoints of all that
with the learner's state under stable names."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gamo.run.checkpoint import generator_states, read_checkpoint, restore_generators, write_checkpoint
from gamo.run.record import LossMeans, latest_losses
from gamo.run.report import ScalarWriter
from gamo.run.settings import comparable


class RunBase:
    """The machinery a run shares with every other kind of run; subclasses add
    what they train and when they report."""

    def __init__(self, settings, loss_names, generators):
        self.settings, self.generators = settings, list(generators)
        self.out_dir = Path(settings.out_dir)
        self.losses = LossMeans(loss_names)
        self.board = ScalarWriter(settings.tensorboard) if settings.tensorboard else None
        self.started = time.time()

    @property
    def checkpoint_root(self):
        return self.out_dir / "checkpoints"

    def add_losses(self, losses, step, progress=None, where=""):
        """One batch's {name: NumPy loss}; NotFinite if one is NaN or infinite."""
        self.losses.add(losses, step, self.checkpoint_root, where)
        if progress is not None:
            progress.set_postfix(self.postfix(), refresh=False)

    def postfix(self):
        """What the progress bar shows beside the count: the latest losses."""
        return latest_losses(self.losses.latest)

    def wall_time(self):
        return round(time.time() - self.started, 1)

    def write_state(self, number, named_state, state, arrays):
        """Checkpoint `number`: the named state variables, `state` with the settings,
        the generators and the wall time, `arrays` with the loss sums."""
        state = {**state, "settings": comparable(self.settings),
                 "generators": generator_states(*self.generators), "wall_time_s": self.wall_time()}
        write_checkpoint(self.checkpoint_root, number, named_state, state, {**arrays, **self.losses.state()})

    def read_state(self, variables, check):
        """The newest usable checkpoint, loaded into `variables` (see read_checkpoint); the
        generators, loss sums and wall time restored. Returns (folder, state, arrays)."""
        def check_all(state, arrays):
            self.check_state(state)
            check(state, arrays)

        folder, state, arrays = read_checkpoint(self.checkpoint_root, self.settings, variables, check_all)
        restore_generators(self.stored_generators(state), *self.generators)
        self.losses.restore(arrays)
        self.started = time.time() - state.get("wall_time_s", 0.0)    # the time to this checkpoint counts
        return folder, state, arrays

    def stored_generators(self, state):
        return state["generators"]

    def check_state(self, state):
        """ValueError, KeyError or TypeError if the wall time or the generators do not fit."""
        wall = state.get("wall_time_s", 0.0)
        if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not 0 <= wall < float("inf"):
            raise ValueError(f"wall_time_s {wall!r} is not a number of seconds")
        restore_generators(self.stored_generators(state), *(np.random.default_rng() for _ in self.generators))

    def write_scalars(self, step, scalars):
        if self.board is not None:
            self.board.write(step, scalars)

    def close_board(self):
        if self.board is not None:
            self.board.close()
