"""``bincount``: the operator's command line for a Bin Count stack (local or deployed).

Each subcommand lives in its own module under ``cli/commands/``: ``register(subparsers)``, its work
and ``run`` (``cli/arguments.py``: the options and help layout they share);
adding one is one line in :data:`COMMAND_MODULES`. Global options (``--stack``, ``--region``,
``--json``) are accepted before or after the subcommand. Exit codes: one rule for every
subcommand, :data:`common.errors.EXIT_RULE`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from cli.arguments import OneLineParser, Subcommands, global_options, option_strings
from common.errors import EXIT_REFUSED, EXIT_RULE, one_line_errors

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

EPILOG = (
    "stacks: --stack local is the stack `make up` starts (the default while it is up);\n"
    "        --stack NAME --region R is a deployed CloudFormation stack (names from its outputs,\n"
    "        credentials from the usual AWS chain).\n"
    + textwrap.fill(EXIT_RULE, width=100, subsequent_indent="        ")
)


def build_parser() -> OneLineParser:
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
    parser = build_parser()
    args, extras = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extras:
        command: OneLineParser = args.command_parser
        command.unknown_options(extras, option_strings(parser) + option_strings(command))
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
