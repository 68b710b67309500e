"""Stopping a run cleanly: Ctrl-C and SIGTERM end the current batch, a
checkpoint is written, and the process exits with 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType


class Interrupted(Exception):
    """A stop was asked for by a signal; the run has written a checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """The signal that asked the run to stop, if any (set by stop_requests)."""

    signum: int | None = None

    def raise_if_asked(self) -> None:
        """Raise Interrupted if a signal asked the run to stop."""
        if self.signum:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While inside, SIGINT and SIGTERM only note the request, so the current
    batch ends and the caller can write a checkpoint before stopping."""
    request = StopRequest()

    def note(signum: int, frame: FrameType | None) -> None:
        request.signum = signum

    handlers = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def checkpointed_stop(when_stopped: Callable[[], str]) -> Iterator[StopRequest]:
    """Yield a StopRequest; when the work inside raises Interrupted (after its
    checkpoint), call when_stopped() for the line to print, print it and exit
    with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    try:
        with stop_requests() as request:
            yield request
    except Interrupted as stop:
        print(when_stopped(), file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None
