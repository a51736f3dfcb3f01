"""Backing off messages that must wait (job cap, throttling) so they do not burn receives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bincount.ports import QueuedMessage

MAX_VISIBILITY_S = 900
BASE_DELAY_S = 30


def backoff_seconds(receive_count: int) -> int:
    """30 s, 60 s, 120 s ... capped at 15 minutes, by how often SQS has delivered the message."""
    return min(MAX_VISIBILITY_S, BASE_DELAY_S * 2 ** max(0, receive_count - 1))


class SqsVisibility:
    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def defer(self, receipts: Sequence[tuple[str, int]]) -> None:
        """``receipts``: (receipt handle, ApproximateReceiveCount). Best effort: Lambda still redelivers."""
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": backoff_seconds(count)}
            for index, (handle, count) in enumerate(receipts)
        ]
        for start in range(0, len(entries), 10):
            batch = entries[start : start + 10]
            self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=batch)


# SQS limits: DelaySeconds ≤ 15 minutes, a message's visibility ≤ 12 hours.
MAX_DELAY_S = 900
MAX_POSTPONE_S = 43200


class SqsMessageQueue:
    """The retry queue behind MessageQueue: longer waits are kept by the reader (``not_before``)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def send(self, body: str, delay_s: int) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url, MessageBody=body, DelaySeconds=max(0, min(MAX_DELAY_S, delay_s))
        )

    def receive(self, max_messages: int) -> list[QueuedMessage]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max(1, min(10, max_messages)), WaitTimeSeconds=1
        )
        return [
            QueuedMessage(receipt=m["ReceiptHandle"], body=m["Body"], message_id=m.get("MessageId", ""))
            for m in response.get("Messages", [])
        ]

    def delete(self, receipt: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)

    def postpone(self, receipt: str, delay_s: int) -> None:
        self.client.change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt,
            VisibilityTimeout=max(0, min(MAX_POSTPONE_S, delay_s)),
        )


class SqsDeadLetters:
    """Moves a refused message's body straight to the ingest DLQ (and its alarm), with the reason."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    def send(self, body: str, reason: str, message_id: str) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body,
            MessageAttributes={
                "bincount-refusal": {"DataType": "String", "StringValue": reason[:1000]},
                "bincount-original-message-id": {"DataType": "String", "StringValue": message_id},
            },
        )
