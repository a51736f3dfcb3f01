"""``bincount recount``: count stored photos again with the model the stack serves now.

The photos go through the normal batch path (the batcher's manifest, images.json and
CreateTransformJob, under MaxJobsInFlight); the collector writes the new result onto each
photo's record and keeps the previous one in its ``model_history``. Human labels stay; a bin's
latest count moves only for its newest photo. Running it again submits nothing for photos
already at the target version or already in a re-count job: it is how an interrupted or capped
re-count resumes (exit 1 while photos are left).
"""

from __future__ import annotations

import argparse

from bincount.timefmt import canonical_time

from cli.arguments import Subcommands
from cli.output import emit
from cli.recount import batcher_settings, recount, served_model_version, summary
from cli.stack import stack_for
from common.errors import EXIT_OK, EXIT_REFUSED, UsageError


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "recount",
        run,
        help="count stored photos again with the served model (history kept)",
        doc=__doc__,
        examples=[
            "bincount recount --dry-run",
            "bincount recount --since 2026-11-01 --bins A-1 A-2 --json",
            "bincount recount --model-version bincount-efficientnet_lite0-2026.12.01-1200",
        ],
    )
    parser.add_argument("--since", help="only photos captured at or after this time (ISO date or time, UTC)")
    parser.add_argument("--bins", nargs="+", default=[], metavar="BIN", help="only these bins")
    parser.add_argument(
        "--model-version",
        help="the version that counts them (default: what the stack's real-time endpoint answers with)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be submitted, submit nothing")


def run(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = canonical_time(args.since)
        except ValueError as error:
            raise UsageError(f"--since {args.since!r} is not a date or time (e.g. 2026-11-01)") from error
    if args.model_version is not None and not args.model_version.strip():
        raise UsageError("--model-version must not be empty")
    stack = stack_for(args)
    settings = batcher_settings(stack)
    version = args.model_version.strip() if args.model_version else served_model_version(stack)
    report = recount(stack, settings, version, since, args.bins, args.dry_run)
    emit({"stack": stack.stack, **report.to_dict()}, summary(report, settings.max_jobs_in_flight), args.json)
    return EXIT_REFUSED if report.left else EXIT_OK
