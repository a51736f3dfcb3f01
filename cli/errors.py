"""One-line errors for every command-line entry point of the project.

A person who passes a wrong path or option should read one line that names the problem and what
would work, at once, before any server starts, never a traceback. Entry points raise
:class:`UsageError` (or :class:`NotFound` / :class:`Refused`) while checking their inputs and wrap
``main`` with :func:`one_line_errors`, which turns them into that line and an exit code scripts can
rely on: 2 for usage, 1 for not found / refused.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

EXIT_OK = 0
EXIT_REFUSED = 1  # not found, refused, or some inputs failed
EXIT_USAGE = 2


class UsageError(Exception):
    """The command line asks for something that cannot work (bad path, bad option)."""

    exit_code = EXIT_USAGE


class NotFound(UsageError):
    """A named thing (bin, photo, stack, queue) does not exist."""

    exit_code = EXIT_REFUSED


class Refused(UsageError):
    """The request is well formed but refused (conflict, stale page, stack not up)."""

    exit_code = EXIT_REFUSED


F = TypeVar("F", bound=Callable[..., int])


def one_line_errors(prog: str) -> Callable[[F], F]:
    """Decorate a ``main`` so UsageError (and Ctrl-C) end in one line on stderr, not a traceback."""

    def wrap(main: F) -> F:
        @functools.wraps(main)
        def guarded(*args: object, **kwargs: object) -> int:
            try:
                return main(*args, **kwargs)
            except UsageError as error:
                print(f"{prog}: error: {error}", file=sys.stderr)
                return error.exit_code
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130

        return guarded  # type: ignore[return-value]

    return wrap
