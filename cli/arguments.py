"""The command line's shared parts: global options, one-line usage errors, each subcommand's parser.

Every subcommand module under ``cli/commands/`` registers itself through :class:`Subcommands`, so
the global options (``--stack``, ``--region``, ``--json``), the help layout (the module docstring
as the description, an ``examples:`` epilog) and the ``run`` function it dispatches to are set in
one place rather than once per command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from common.errors import EXIT_USAGE, did_you_mean

Run = Callable[[argparse.Namespace], int]


def global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every subcommand takes; after the subcommand they override nothing unless given."""
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--stack",
        default=default,
        help="'local' (default while `make up` runs) or a deployed CloudFormation stack's name",
    )
    parser.add_argument("--region", default=default, help="AWS region of a deployed stack")
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="machine-readable JSON instead of a table",
    )


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes in one line (argparse prints the whole usage first), exit 2, with the closest
    choice when a value is almost one: ``did you mean `bincount history`?``, ``--sort confidence``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as error:
            choices = [str(choice) for choice in action.choices or ()]
            # an option's value, or a subcommand / positional with choices (`bincount redrive ingest`)
            say = f"{action.option_strings[0]} {{}}" if action.option_strings else f"`{self.prog} {{}}`"
            hint = did_you_mean(str(value), choices, say)
            if not hint:
                raise
            raise argparse.ArgumentError(action, f"{error.message}{hint}") from None

    def unknown_options(self, extras: Sequence[str], known: Sequence[str]) -> NoReturn:
        """``unrecognized arguments: --needs-reveiw; did you mean --needs-review?``"""
        hint = next(
            (did_you_mean(extra.split("=", 1)[0], known) for extra in extras if extra.startswith("-")), ""
        )
        self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


class Subcommands:
    """``add_parser`` that gives every subcommand the global options and the same help layout."""

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self._subparsers = subparsers
        self._common = common

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("description"):  # module docstrings: no reStructuredText quoting on a terminal
            kwargs["description"] = kwargs["description"].replace("``", "")
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, parents=[self._common], **kwargs)
        return parser

    def add_command(
        self, name: str, run: Run, *, help: str, doc: str | None, examples: Sequence[str]
    ) -> argparse.ArgumentParser:
        """The parser of ``bincount NAME``: ``doc`` (the module's docstring) above its options, the
        example command lines below, and ``run`` called with the parsed arguments."""
        epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
        parser = self.add_parser(name, help=help, description=doc, epilog=epilog)
        parser.set_defaults(run=run, command_parser=parser)
        return parser


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``--option`` a parser takes (for the close-match hint of a mistyped one)."""
    return [option for action in parser._actions for option in action.option_strings]


def reviewed_option(parser: argparse.ArgumentParser) -> None:
    """``--reviewed yes|no``: rows a person labelled, or the others (bins and history share it)."""
    parser.add_argument(
        "--reviewed",
        choices=("yes", "no"),
        help="yes: only what a person labelled (review console or `bincount correct`); no: the rest",
    )
