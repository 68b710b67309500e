"""Many runs of one game at once, on JAX: K learners of the same shapes (one per
seed) trained in lockstep by ONE compiled function, the learners' own pure step
vmapped over their stacked state. Run k of a group computes what the single run
with its seed computes (to float32 rounding).

GAMO's networks are small: one run leaves an accelerator mostly idle, and K runs
in one step cost little more than one. On a CPU this gains nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gamo.backend import BACKEND
from gamo.errors import InputError
from gamo.run.folder import release_output_dir
from gamo.run.loop import train, train_together

if BACKEND == "jax":
    import jax
    import jax.numpy as jnp

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from gamo.learner import Learner
    from gamo.metrics import Scores
    from gamo.run.loop import Pass, Run

# What a run of a group needs, as a multiple of its state's bytes. On an
# accelerator the device holds the stacked state, its update and each learner's
# own variables (the stacked step alone: 2x on an H200, bench/vmap.py). On a CPU
# the same memory also holds each run's rows, models, compiled evaluation and
# records: per added run 6.2-8.8x for Fashion-MNIST's dense game, 6.1-9.3x for the
# convolutional script's (bench/vmap_memory.py).
MEMORY_PER_STATE = {"cpu": 10.0, "accelerator": 4.0}


def memory_per_state() -> float:
    """MEMORY_PER_STATE for the device JAX computes on."""
    return MEMORY_PER_STATE["cpu" if jax.devices()[0].platform == "cpu" else "accelerator"]


def require_jax(what: str = "several seeds in one process") -> None:
    """InputError unless Keras runs on JAX."""
    if BACKEND != "jax":
        raise InputError(f"{what} needs the JAX backend (KERAS_BACKEND=jax); this is {BACKEND}")


class LearnerGroup:
    """K learners built alike with other seeds, trained together: each batch is one
    call of the first learner's compiled step under jax.vmap. The stacked state
    stays on the device between batches; sync() writes it back into each
    learner's variables (before evaluating, saving or checkpointing a run), and
    reload() takes it from them again (after a run is resumed)."""

    def __init__(self, learners: Sequence[Learner]) -> None:
        require_jax()
        self.learners = list(learners)
        steps: list[Any] = [learner.compiled_step for learner in self.learners]    # backend._JaxFunction
        self.variables = [step.variables for step in steps]
        shapes = [[tuple(v.shape) for v in variables] for variables in self.variables]
        if any(other != shapes[0] for other in shapes[1:]):
            raise ValueError("the learners of a group must have the same variables and shapes")
        self.step = jax.jit(jax.vmap(steps[0]._pure))    # the learners' own step, vmapped
        self.values: list | None = None
        self.written_back = True          # the learners' variables hold the group's state
        for learner in self.learners:
            learner.joined(self)

    def __len__(self) -> int:
        return len(self.learners)

    def state_bytes(self) -> int:
        """Bytes of one run's state (weights, optimiser and other states)."""
        return state_bytes(self.learners[0])

    def reload(self) -> None:
        """Take the state from the learners' variables at the next batch."""
        self.values = None

    def sync(self) -> None:
        """Write the stacked state back into every learner's variables (once per batch at most)."""
        if self.values is None or self.written_back:
            return
        self.written_back = True
        for index, stacked in enumerate(self.values):
            for k, variables in enumerate(self.variables):
                variables[index].assign(stacked[k])

    def train_on_batches(self, batches: Sequence[tuple[np.ndarray, np.ndarray]],
                         rngs: Sequence[np.random.Generator]) -> list[dict[str, np.ndarray]]:
        """One batch of every run (run k: batches[k], its draws from rngs[k]); each
        run's {loss name: NumPy value}."""
        inputs = [learner.step_inputs(x, onehot, rng)
                  for learner, (x, onehot), rng in zip(self.learners, batches, rngs)]
        stacked = [np.stack(parts) for parts in zip(*inputs)]
        if self.values is None:
            self.values = [jnp.stack([variables[index].value for variables in self.variables])
                           for index in range(len(self.variables[0]))]
        losses, self.values = self.step(self.values, *stacked)
        self.written_back = False
        losses = jax.device_get(losses)          # every loss in one transfer
        return [{**learner.pending_losses(), **{name: value[k] for name, value in losses.items()}}
                for k, learner in enumerate(self.learners)]


def state_bytes(learner: Learner) -> int:
    """Bytes of the state a group stacks for one run: its compiled step's variables."""
    step: Any = learner.compiled_step         # backend._JaxFunction
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in step.variables)


def available_memory_bytes() -> int:
    """What the device JAX computes on can still hold: the accelerator's free
    memory, or the machine's available memory on a CPU."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def check_group_fits(runs: int, state_bytes: int, available: int | None = None) -> None:
    """InputError, before training, if `runs` runs of `state_bytes` each cannot fit."""
    per_run = state_bytes * memory_per_state()
    available = available_memory_bytes() if available is None else available
    if runs * per_run > available:
        fit = int(available // per_run)
        advice = (f"use {fit} seeds or fewer per process" if fit > 1
                  else "train the seeds one at a time (--seed)")
        raise InputError(f"{runs} runs in one step need about {runs * per_run / 2**30:.1f} GiB "
                         f"({state_bytes / 2**20:.0f} MiB of state each), {available / 2**30:.1f} GiB "
                         f"is available on {jax.devices()[0].platform}: {advice}")


def train_as_asked(settings: Any, new_run: Callable[[Any], tuple[Run, Iterator[Pass]]],
                   after_batch: Callable[[Run], object] | None = None) -> Scores:
    """A training script's run: one, or with several --seeds a group (train_seeds).
    The final test scores (of the first seed's run in a group)."""
    if settings.seeds is not None and len(settings.seeds) > 1:
        return train_seeds(settings, new_run, after_batch)[0]
    if settings.seeds is not None:
        settings = replace(settings, seed=settings.seeds[0], seeds=None)
    run, passes = new_run(settings)
    return train(run, passes, after_batch)


def train_seeds(settings: Any, new_run: Callable[[Any], tuple[Run, Iterator[Pass]]],
                after_batch: Callable[[Run], object] | None = None) -> list[Scores]:
    """A training script's runs of --seeds, trained together in one compiled step:
    new_run(the settings of one seed) gives a run in its own folder and its passes.
    A group resumes as a group: every run at the same step. A group refused before
    training leaves no new run's folder behind."""
    require_jax("--seeds with several seeds")
    runs: list[Run] = []
    passes: list[Iterator[Pass]] = []
    try:
        for seed in settings.seeds:
            run, its_passes = new_run(settings.for_seed(seed))
            runs.append(run)
            passes.append(its_passes)
        group = group_of(runs)
    except InputError:
        if not settings.resume:
            for run in runs:
                release_output_dir(run.settings.out_dir)
        raise
    print(f"{len(group)} runs in one compiled step: seeds {settings.seeds}")
    return train_together(runs, passes, group, after_batch)


def group_of(runs: Sequence[Run]) -> LearnerGroup:
    """The runs' learners as a group, if the runs stand at one step and fit in memory."""
    steps = {run.step for run in runs}
    if len(steps) > 1:
        where = ", ".join(f"seed {run.settings.seed} at {run.step}" for run in runs)
        raise InputError(f"--seeds: the runs stand at different steps ({where}); resume each alone to "
                         "the same step first")
    group = LearnerGroup([run.learner for run in runs])
    check_group_fits(len(group), group.state_bytes())
    return group
