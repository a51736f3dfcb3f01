"""``bincount review``: the review console, a web page on http://127.0.0.1:PORT/ for people who fix
the counts the model is unsure of (keyboard first: 0-9 / + set the count, Enter saves, s skips).

Photos needing review come first (low confidence, discrepancy with the expected quantity, rejected
but readable); `?bin=BIN-1` or the page's bin box shows any bin. Locally the reviewer is the OS
user (or --reviewer); on a deployed stack it is your IAM principal, and photos are shown through
presigned URLs (the bucket stays private).
"""

from __future__ import annotations

import argparse

from cli.arguments import Subcommands
from cli.review.commands import DEFAULT_PORT, check_port, serve
from cli.stack import stack_for


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "review",
        run,
        help="open the review console (a web page on 127.0.0.1)",
        doc=__doc__,
        examples=[
            "bincount review",
            "bincount review --port 9000 --reviewer dana",
            "bincount review --stack bincount-prod --region eu-west-1",
        ],
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT})"
    )
    parser.add_argument("--reviewer", help="name saved with each label (local stack; default: the OS user)")


def run(args: argparse.Namespace) -> int:
    port = check_port(args.port)
    return serve(stack_for(args), port, args.reviewer)
