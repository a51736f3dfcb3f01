"""One-line errors for every command-line entry point of the project, and the one exit-code rule.

A person who passes a wrong path or option should read one line that names the problem and what
would work, at once, before any server starts, never a traceback. Entry points raise
:class:`UsageError` (or :class:`NotFound` / :class:`Refused`) while checking their inputs and wrap
``main`` with :func:`one_line_errors`, which turns them into that line and an exit code scripts can
rely on (:data:`EXIT_RULE`, which ``bincount --help`` prints):

* 2, usage: the command line cannot work as typed (an unknown command or option, a value of the
  wrong form, a named file or folder that is missing or holds no photo). Every input is checked
  before anything is done, so nothing was done. Argparse's own mistakes end the same way.
* 1, refused: the command line was fine, but what it names was not found or said no (a bin with
  no photos, a stack that is not up or does not exist, a conflicting label), or some photos could
  not be counted or exported (each one says why; the others were done).
* 0: done.

A hint names the option (or the command) it means, e.g. ``did you mean --stack local?``:
:func:`did_you_mean` is its one home.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

EXIT_OK = 0
EXIT_REFUSED = 1  # not found, refused, or some inputs failed
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command stopped by SIGPIPE (`... | head`)
EXIT_RULE = (
    "exit codes: 0 done; 1 refused: what the command names was not found or said no, or some "
    "photos failed (each one says why); 2 usage: the command line cannot work as typed (unknown "
    "command or option, bad value, missing path, not a photo), nothing was done."
)


def did_you_mean(value: str, candidates: Iterable[str], say: str = "{}") -> str:
    """``"; did you mean --stack local?"`` for the closest candidate (``say`` formats it, e.g.
    ``"--stack {}"``), or "" when none is close: the one candidate the value begins (``conf`` ->
    ``confidence``), else difflib's closest with a ratio of at least 0.6 (``locl`` -> ``local``)."""
    names = list(candidates)
    started = [name for name in names if value and name.startswith(value) and name != value]
    close = started if len(started) == 1 else difflib.get_close_matches(value, names, n=1)
    return f"; did you mean {say.format(close[0])}?" if close else ""


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
            except BrokenPipeError:  # `bincount bins | head`: the reader has what it wanted
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
                return EXIT_BROKEN_PIPE

        return guarded  # type: ignore[return-value]

    return wrap
