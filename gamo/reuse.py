"""Compiled learners kept between fits, so that the estimators compile a step once
for every fit of the same shapes (a cross-validation's folds, a grid search).

Compiling (tracing, and XLA where it is on) costs seconds; a short fit's
arithmetic costs less. A fit builds its own learner, seeded as the scripts do,
and never calls it: its initial state is copied into a kept learner of the
same structure (or a new one), that one trains, and the trained state is
copied back. The fit's result is the same as training its own learner (the
same graph, the same values) and belongs to it alone: the kept learner goes
back to the pool for the next fit.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from gamo.backend import without_gradient_tracking

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

    from gamo.learner import Learner

# Learners kept, the most recently used last: enough for a grid search over a
# few settings; each holds its networks and Adam states (a few MB for tabular data).
KEPT_LEARNERS = 4

_kept: collections.OrderedDict[Hashable, Learner] = collections.OrderedDict()
_lock = threading.Lock()


def structure(learner: Learner, settings: Any) -> Hashable:
    """What a compiled step depends on: the learner's kind, the settings that build
    it, its minority classes and the shape and type of every state variable."""
    return (type(learner).__name__, tuple(sorted(vars(settings).items())),
            tuple(getattr(learner, "minority", ())),
            tuple((tuple(v.shape), str(v.dtype)) for v in learner.state_variables()))


@contextlib.contextmanager
def trained_in_kept_learner(fresh: Learner, settings: Any,
                            build: Callable[[], Learner]) -> Iterator[Learner]:
    """The learner to train in place of `fresh`: a kept one of the same structure,
    or `build()`, holding fresh's state; on leaving, fresh holds the trained state
    and the trainer is kept for the next fit. Concurrent fits take different ones."""
    key = structure(fresh, settings)
    with _lock:
        trainer = _kept.pop(key, None)
    if trainer is None:
        trainer = build()
    copy_state(fresh, trainer)
    yield trainer
    copy_state(trainer, fresh)
    with _lock:
        _kept[key] = trainer
        while len(_kept) > KEPT_LEARNERS:
            _kept.popitem(last=False)


def copy_state(source: Learner, target: Learner) -> None:
    """Every state variable's value from `source` into `target` (same structure)."""
    with without_gradient_tracking():
        for into, value in zip(target.state_variables(), source.state_variables(), strict=True):
            into.assign(value.value)


def forget_kept_learners() -> None:
    """Drop every kept learner (their memory, and their compiled steps)."""
    with _lock:
        _kept.clear()


def kept_learners() -> int:
    """How many learners are kept."""
    return len(_kept)
