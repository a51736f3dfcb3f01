"""``bincount review``: the review console, a web page on http://127.0.0.1:PORT/ for people who fix
the counts the model is unsure of (keyboard first: 0-9 / + set the count, Enter saves, s skips).

Photos needing review come first (low confidence, discrepancy with the expected quantity, rejected
but readable); `?bin=BIN-1` or the page's bin box shows any bin. Locally the reviewer is the OS
user (or --reviewer); on a deployed stack it is your IAM principal, and photos are shown through
presigned URLs (the bucket stays private).
"""

from __future__ import annotations

import argparse
import socket

from cli.arguments import Subcommands
from cli.review.identity import reviewer_for
from cli.review.service import PhotoMode, ReviewService
from cli.stack import StackResources, stack_for
from common.errors import Refused, UsageError

HOST = "127.0.0.1"  # the console never listens beyond this machine
DEFAULT_PORT = 8765


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


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be within 1..65535, got {port}")
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise Refused(
                f"port {port} on {HOST} is in use ({error.strerror}): pass another --port"
            ) from error
    return port


def serve(
    resources: StackResources, port: int, reviewer: str | None, photo_mode: PhotoMode | None = None
) -> int:
    """Run the console until Ctrl-C (``port`` checked by :func:`check_port`; identity and stack here)."""
    import uvicorn

    from cli.review.app import create_app

    service = ReviewService.for_stack(resources, reviewer_for(resources, reviewer), photo_mode)
    waiting = len(service.queue())
    print(
        f"review console for stack {resources.stack}: http://{HOST}:{port}/  "
        f"(reviewer {service.reviewer}, {waiting} photo(s) to review; Ctrl-C stops it)",
        flush=True,
    )
    uvicorn.run(create_app(service), host=HOST, port=port, log_level="warning")
    return 0


def run(args: argparse.Namespace) -> int:
    port = check_port(args.port)
    return serve(stack_for(args), port, args.reviewer)
