"""Replaying the collector's dead letters: ``bincount redrive collector`` (cli) calls this.

The collector DLQ receives two shapes:

* EventBridge target failures (the rule could not invoke the function): the body *is* the
  original ``SageMaker Transform Job State Change`` event;
* Lambda async-invocation failure records (the function failed after its retries): the body is
  ``{"requestContext": ..., "requestPayload": <the event>, "responseContext": ..., ...}``.

Each message is handed to ``deliver`` (e.g. invoke the collector) and deleted only once that
succeeded, so a failed replay leaves the message for the next one. Collection is idempotent, so
replaying an event that meanwhile got collected (the reconciler) changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bincount.job_events import NotATransformJobEvent, parse_job_event

RECEIVE_BATCH = 10
VISIBILITY_S = 300  # a message that failed stays hidden for the rest of the replay


@dataclass
class ReplayReport:
    moved: int = 0
    failed: int = 0
    details: list[str] = field(default_factory=list)


def event_from_dead_letter(body: str) -> dict[str, Any]:
    """The state-change event inside either DLQ shape; NotATransformJobEvent when there is none."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise NotATransformJobEvent(f"body is not JSON: {error}") from error
    if isinstance(document, Mapping) and isinstance(document.get("requestPayload"), Mapping):
        document = document["requestPayload"]
    if not isinstance(document, dict):
        raise NotATransformJobEvent("body is not a JSON object")
    parse_job_event(document)  # raises for anything else
    return document


def replay_collector_dlq(
    sqs_client: Any,
    dlq_url: str,
    deliver: Callable[[dict[str, Any]], None],
    max_messages: int | None = None,
) -> ReplayReport:
    """Deliver every dead-lettered event again (at most ``max_messages``); delete what was delivered."""
    report = ReplayReport()
    seen: set[str] = set()
    while max_messages is None or len(seen) < max_messages:
        wanted = RECEIVE_BATCH if max_messages is None else min(RECEIVE_BATCH, max_messages - len(seen))
        messages = sqs_client.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=wanted, VisibilityTimeout=VISIBILITY_S, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [message for message in messages if message["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            _replay_one(sqs_client, dlq_url, message, deliver, report)
    return report


def _replay_one(
    sqs_client: Any,
    dlq_url: str,
    message: Mapping[str, Any],
    deliver: Callable[[dict[str, Any]], None],
    report: ReplayReport,
) -> None:
    message_id = message["MessageId"]
    try:
        event = event_from_dead_letter(message["Body"])
    except NotATransformJobEvent as error:
        report.failed += 1
        report.details.append(f"{message_id}: left on the queue, not a transform job event ({error})")
        return
    job = event["detail"]["TransformJobName"]
    try:
        deliver(event)
    except Exception as error:  # any failure of the delivery keeps the message for later
        report.failed += 1
        report.details.append(f"{message_id}: {job} not delivered, left on the queue ({error})")
        return
    sqs_client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    report.moved += 1
    report.details.append(f"{message_id}: {job} delivered")
