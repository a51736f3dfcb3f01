"""``bincount``: the operator's command line for a Bin Count stack (local or deployed).

Each subcommand lives in its own module under ``cli/commands/`` with ``register(subparsers)``
(``cli/arguments.py``: the options and help layout they share);
adding one is one line in :data:`COMMAND_MODULES`. Global options (``--stack``, ``--region``,
``--json``) are accepted before or after the subcommand. Exit codes: 0 ok, 1 not found /
refused / some inputs bad, 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from cli.arguments import OneLineParser, Subcommands, global_options
from cli.errors import EXIT_REFUSED, one_line_errors

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
