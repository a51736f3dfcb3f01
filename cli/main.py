"""``bincount``: the operator's command line for a Bin Count stack (local or deployed).

Each subcommand lives in its own module under ``cli/commands/`` with ``register(subparsers)``;
adding one is one line in :data:`COMMAND_MODULES`. Global options (``--stack``, ``--region``,
``--json``) are accepted before or after the subcommand. Exit codes: 0 ok, 1 not found /
refused / some inputs bad, 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from cli.errors import EXIT_REFUSED, EXIT_USAGE, one_line_errors

PROG = "bincount"

# Subcommand modules under cli/commands/, in the order --help lists them.
COMMAND_MODULES = [
    "count",
    "upload",
    "bins",
    "history",
    "status",
    "redrive",
    "review",
    "correct",
    "export_labels",
    "recount",
]

EPILOG = """\
stacks: --stack local is the stack `make up` starts (the default while it is up);
        --stack NAME --region R is a deployed CloudFormation stack (names from its outputs,
        credentials from the usual AWS chain).
exit codes: 0 ok, 1 not found / refused / some inputs bad, 2 usage."""


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
    """Usage mistakes in one line (argparse prints the whole usage first), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Count objects in bin photos and operate a Bin Count stack.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    global_options(parser, suppress=False)
    common = OneLineParser(add_help=False)
    global_options(common, suppress=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wrapped = Subcommands(subparsers, common)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cli.commands.{name}").register(wrapped)
    return parser


@one_line_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.run(args))
    except ClientError as error:
        details = error.response.get("Error", {})
        print(f"{PROG}: error: AWS refused: {details.get('Code')}: {details.get('Message')}", file=sys.stderr)
    except BotoCoreError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
    return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
