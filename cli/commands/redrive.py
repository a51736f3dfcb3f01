"""``bincount redrive ingest|collector``: move dead-lettered messages back, reporting what moved.

``ingest``: notifications in the ingest DLQ (photos that never reached a transform job) go back
to the ingest queue and are batched again. ``collector``: finished-job events in the collector
DLQ (photos whose results were never recorded) are handed to the collector function again; a
message leaves the DLQ only once the collector took it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, is_dataclass
from typing import Any

from cli.arguments import Subcommands
from cli.output import emit
from cli.redrive import lambda_deliver, move_messages
from cli.stack import StackResources, stack_for
from common.errors import EXIT_OK, EXIT_REFUSED, Refused, UsageError


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "redrive",
        run,
        help="move dead-lettered messages back (ingest or collector)",
        doc=__doc__,
        examples=[
            "bincount redrive ingest",
            "bincount redrive collector --max 10 --json",
        ],
    )
    parser.add_argument("queue", choices=("ingest", "collector"), help="which dead-letter queue")
    parser.add_argument("--max", type=int, default=None, help="move at most this many messages")


def replay_function() -> Any:
    """``bincount.replay.replay_collector_dlq``, or None in a checkout that does not have it yet."""
    try:
        from bincount.replay import replay_collector_dlq  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return replay_collector_dlq


def redrive_collector(stack: StackResources, max_messages: int | None) -> Any:
    replay = replay_function()
    if replay is None:
        raise Refused("redrive collector needs functions/bincount/replay.py, which this checkout lacks")
    function_name = stack.output("CollectorFunctionName")
    if not function_name:
        raise Refused(
            f"stack {stack.stack} has no output CollectorFunctionName: update it from this template.yaml"
        )
    deliver = lambda_deliver(stack.client("lambda"), function_name)
    return replay(stack.client("sqs"), stack.collector_dlq_url, deliver, max_messages=max_messages)


def as_dict(report: Any) -> dict[str, Any]:
    data = asdict(report) if is_dataclass(report) and not isinstance(report, type) else dict(vars(report))
    return {
        key: (len(value) if key in ("moved", "failed") and isinstance(value, list) else value)
        for key, value in data.items()
    }


def run(args: argparse.Namespace) -> int:
    if args.max is not None and args.max < 1:
        raise UsageError("--max must be at least 1")
    stack = stack_for(args)
    if args.queue == "ingest":
        report = as_dict(
            move_messages(stack.client("sqs"), stack.ingest_dlq_url, stack.ingest_queue_url, args.max)
        )
    else:
        report = as_dict(redrive_collector(stack, args.max))
    result = {"queue": args.queue, "stack": stack.stack, **report}
    lines = [f"redrive {args.queue}: {report['moved']} moved, {report['failed']} failed"]
    lines += [f"  {detail}" for detail in report.get("details") or []]
    emit(result, "\n".join(lines), args.json)
    return EXIT_REFUSED if report["failed"] else EXIT_OK
