"""The errors a run reports in one line, and the wrapper that reports them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    _T = TypeVar("_T")


class InputError(Exception):
    """A problem with the user's input; reported as one line, exit status 2."""


class RunError(Exception):
    """A run that cannot go on (out of memory, say); reported as one line, exit status 1."""


class WriteError(RunError):
    """An output that could not be written (disk full, permission lost); reported
    as one line, exit status 1. Finished files and the previous checkpoint stay."""


class NotFinite(RunError):
    """A player's loss (or a weight about to be saved) became NaN or infinite;
    reported as one line, exit status 3. No checkpoint is written with it: the
    newest one is the last good state."""


def run_cli(main: Callable[[Sequence[str] | None], _T], argv: Sequence[str] | None = None) -> _T:
    """Run a script's main(argv); turn input errors into one line and exit 2,
    failed writes into one line and exit 1, a non-finite loss into one line and exit 3."""
    try:
        return main(argv)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except NotFinite as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
    except RunError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def one_line(error: BaseException) -> str:
    """An exception's message as one line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
