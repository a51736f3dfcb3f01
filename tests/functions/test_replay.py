"""Replaying the collector DLQ (moto SQS): both dead-letter shapes, delete only after delivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from bincount.job_events import DETAIL_TYPE, NotATransformJobEvent
from bincount.replay import event_from_dead_letter, replay_collector_dlq
from moto import mock_aws

REGION = "us-east-1"


def state_change(name: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"id-{name}",
        "detail-type": DETAIL_TYPE,
        "source": "aws.sagemaker",
        "detail": {"TransformJobName": name, "TransformJobStatus": "Completed"},
    }


def lambda_failure_record(event: dict[str, Any]) -> dict[str, Any]:
    """What Lambda's on-failure destination writes to SQS after the async retries."""
    return {
        "version": "1.0",
        "timestamp": "2026-11-26T10:31:09.123Z",
        "requestContext": {
            "requestId": "c9a8f7e6-0000-4000-8000-000000000000",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:collector:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "events for incoming/B1/a.jpg not published"},
    }


@pytest.fixture
def dlq() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        yield sqs, sqs.create_queue(QueueName="bincount-collector-dlq-dev")["QueueUrl"]


def remaining(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_replays_both_shapes_and_deletes_what_was_delivered(dlq: tuple[Any, str]) -> None:
    sqs, url = dlq
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state_change("bincount-dev-a")))  # EventBridge DLQ
    sqs.send_message(
        QueueUrl=url, MessageBody=json.dumps(lambda_failure_record(state_change("bincount-dev-b")))
    )
    delivered: list[dict[str, Any]] = []

    report = replay_collector_dlq(sqs, url, delivered.append)

    assert (report.moved, report.failed) == (2, 0)
    assert sorted(event["detail"]["TransformJobName"] for event in delivered) == [
        "bincount-dev-a",
        "bincount-dev-b",
    ]
    assert all(event["detail-type"] == DETAIL_TYPE for event in delivered)
    assert remaining(sqs, url) == 0


def test_failed_delivery_and_foreign_bodies_stay_on_the_queue(dlq: tuple[Any, str]) -> None:
    sqs, url = dlq
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state_change("bincount-dev-a")))
    sqs.send_message(QueueUrl=url, MessageBody='{"detail-type": "Object Created"}')
    sqs.send_message(QueueUrl=url, MessageBody="not json")

    def deliver(event: dict[str, Any]) -> None:
        raise RuntimeError("collector still failing")

    report = replay_collector_dlq(sqs, url, deliver)

    assert (report.moved, report.failed) == (0, 3)
    assert any("collector still failing" in line for line in report.details)
    assert remaining(sqs, url) == 3


def test_max_messages_bounds_one_replay(dlq: tuple[Any, str]) -> None:
    sqs, url = dlq
    for index in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(state_change(f"bincount-dev-{index}")))
    delivered: list[dict[str, Any]] = []
    assert replay_collector_dlq(sqs, url, delivered.append, max_messages=2).moved == 2
    assert len(delivered) == 2 and remaining(sqs, url) == 3


def test_event_from_dead_letter_refuses_other_bodies() -> None:
    with pytest.raises(NotATransformJobEvent):
        event_from_dead_letter(json.dumps({"requestPayload": {"detail-type": "Scheduled Event"}}))
    with pytest.raises(NotATransformJobEvent):
        event_from_dead_letter("[1, 2]")
