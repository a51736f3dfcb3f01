"""Moving dead-lettered messages back where they can be processed, and saying what moved.

Ingest: messages of the ingest DLQ are sent back to the ingest queue (same body and
attributes) and deleted from the DLQ only once the send succeeded, so a failure leaves the
message where it was. Collector: dead-lettered job events are handed to the collector function
(``bincount.replay.replay_collector_dlq``), through Lambda's Invoke API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus


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
