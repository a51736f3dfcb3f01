"""``bincount redrive ingest|collector``: move dead-lettered messages back, reporting what moved.

``ingest``: notifications in the ingest DLQ (photos that never reached a transform job) go back
to the ingest queue and are batched again. ``collector``: finished-job events in the collector
DLQ (photos whose results were never recorded) are handed to the collector function again; a
message leaves the DLQ only once the collector took it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any
from urllib.parse import unquote_plus

from cli.arguments import Subcommands
from cli.output import emit
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


# -- ingest: the DLQ's messages go back to the ingest queue -------------------------------------
# Same body and attributes; a message leaves the DLQ only once its send succeeded, so a failure
# leaves it where it was.


@dataclass
class MoveReport:
    moved: int = 0
    failed: int = 0
    details: list[str] = field(default_factory=list)


def keys_in_body(body: str) -> list[str]:
    """The S3 keys an ingest message names (none for a test event or a malformed body)."""
    try:
        records = json.loads(body).get("Records") or []
        return [unquote_plus(record["s3"]["object"]["key"]) for record in records]
    except (ValueError, AttributeError, KeyError, TypeError):
        return []


def describe_message(message: dict[str, Any]) -> str:
    keys = keys_in_body(message.get("Body", ""))
    return ", ".join(keys) if keys else f"message {message.get('MessageId')} (no S3 key)"


def _resend_entry(index: int, message: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
    if message.get("MessageAttributes"):
        entry["MessageAttributes"] = message["MessageAttributes"]
    return entry


def move_messages(sqs: Any, source_url: str, target_url: str, max_messages: int | None = None) -> MoveReport:
    """Move up to ``max_messages`` (all when None) from ``source_url`` to ``target_url``."""
    report = MoveReport()
    while max_messages is None or report.moved + report.failed < max_messages:
        wanted = 10 if max_messages is None else min(10, max_messages - report.moved - report.failed)
        messages = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=wanted,
            VisibilityTimeout=60,  # failed sends reappear later, not again in this run
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        sent = sqs.send_message_batch(
            QueueUrl=target_url, Entries=[_resend_entry(i, m) for i, m in enumerate(messages)]
        )
        done = [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if done:
            sqs.delete_message_batch(
                QueueUrl=source_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        for failure in sent.get("Failed", []):
            report.failed += 1
            report.details.append(
                f"not moved: {describe_message(messages[int(failure['Id'])])}: {failure.get('Message')}"
            )
        report.moved += len(done)
        report.details.extend(f"moved: {describe_message(m)}" for m in done)
    return report


# -- collector: dead-lettered job events go to the collector function ---------------------------
# bincount.replay.replay_collector_dlq hands each one over through Lambda's Invoke API.


class InvokeFailed(RuntimeError):
    """The function ran and raised (Lambda's ``FunctionError``)."""


def lambda_deliver(lambda_client: Any, function_name: str) -> Callable[[dict[str, Any]], None]:
    """``deliver`` for the collector replay: a synchronous Invoke that raises when the handler did."""

    def deliver(event: dict[str, Any]) -> None:
        response = lambda_client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        if response.get("FunctionError"):
            payload = response["Payload"].read().decode(errors="replace")
            try:
                message = json.loads(payload).get("errorMessage", payload)
            except ValueError:
                message = payload
            raise InvokeFailed(f"{function_name}: {message}"[:500])

    return deliver


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
