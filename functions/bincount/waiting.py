"""Chunks of photos that must wait for a later job: the retry queue and who empties it.

Photos wait here when their job failed for a passing reason (capacity, quota, throttling ...),
when the in-flight cap leaves no room for a re-drive, and, *parked*, once a chunk's retry budget
is spent. Nothing here ever records a photo as failed: the queue keeps them (14 days), an alarm on
its age and on ``ImagesParked`` pages a person, and :meth:`WaitingRoom.resubmit` (the scheduled
reconciler) starts their jobs again whenever ``MaxJobsInFlight`` leaves room.

A message carries the chunk's ``images.json`` document, so its job is rebuilt exactly; SQS delays
a message at most 15 minutes, so longer waits are kept by ``not_before`` and the visibility timer.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from bincount.batching import Chunk, chunk_from_images_document, images_document
from bincount.ports import JobSubmissionError, MessageQueue, QueuedMessage
from bincount.submission import Submitted, Submitter, available_slots
from bincount.timefmt import format_time, now, parse_time

log = logging.getLogger(__name__)

MESSAGE_TYPE = "bincount.waiting-chunk"
RECEIVE_BATCH = 10


class NotAWaitingChunk(ValueError):
    """A retry-queue body that is not ours: left on the queue (its age alarm shows it)."""


@dataclass(frozen=True)
class WaitingChunk:
    chunk: Chunk
    parent_job: str | None
    reason: str
    not_before: str
    parked: bool = False

    def to_body(self) -> str:
        return json.dumps(
            {
                "type": MESSAGE_TYPE,
                "chunk": images_document(self.chunk, self.parent_job),
                "reason": self.reason[:1000],
                "not_before": self.not_before,
                "parked": self.parked,
            }
        )

    @classmethod
    def from_body(cls, body: str) -> WaitingChunk:
        try:
            document = json.loads(body)
            if document.get("type") != MESSAGE_TYPE:
                raise NotAWaitingChunk(f"type {document.get('type')!r}")
            return cls(
                chunk=chunk_from_images_document(document["chunk"]),
                parent_job=document["chunk"].get("parent_job"),
                reason=str(document.get("reason", "")),
                not_before=str(document["not_before"]),
                parked=bool(document.get("parked", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise NotAWaitingChunk(str(error)) from error


@dataclass
class ResubmitReport:
    started: list[str] = field(default_factory=list)
    already_started: list[str] = field(default_factory=list)
    not_due: int = 0
    left_waiting: int = 0  # due, but no room under the cap (or throttled)
    problems: list[str] = field(default_factory=list)


@dataclass
class WaitingRoom:
    queue: MessageQueue
    clock: Callable[[], str] = now
    max_receives: int = 100  # batches per run, so one run stays within its Lambda timeout

    def wait(self, chunk: Chunk, parent_job: str | None, reason: str, delay_s: int, parked: bool) -> None:
        """Queue the chunk for a job no earlier than ``delay_s`` from now."""
        not_before = format_time(parse_time(self.clock()) + timedelta(seconds=delay_s))
        self.queue.send(WaitingChunk(chunk, parent_job, reason, not_before, parked).to_body(), delay_s)
        log.warning(
            "photos wait for a later job",
            extra={"job": chunk.job_name, "images": len(chunk.images), "parked": parked, "reason": reason},
        )

    def resubmit(self, submitter: Submitter, max_in_flight: int, name_prefix: str) -> ResubmitReport:
        """Start the due chunks while the in-flight cap leaves room; the rest stay queued.

        Safe to run twice at once: a chunk's job name is deterministic, so a second start of the
        same message finds the job (``Submitted.EXISTS``) and only deletes the message.
        """
        report = ResubmitReport()
        available = available_slots(submitter.transforms, max_in_flight, name_prefix)
        for _ in range(self.max_receives):
            if available <= 0:
                break  # what is still queued waits for the next run
            messages = self.queue.receive(RECEIVE_BATCH)
            if not messages:
                break
            for message in messages:
                available = self._handle(message, submitter, available, report)
        return report

    def _handle(
        self, message: QueuedMessage, submitter: Submitter, available: int, report: ResubmitReport
    ) -> int:
        """Start, postpone or leave one message; returns the room left under the cap."""
        try:
            waiting = WaitingChunk.from_body(message.body)
        except NotAWaitingChunk as error:
            report.problems.append(f"message {message.message_id}: not a waiting chunk ({error})")
            self.queue.postpone(message.receipt, 3600)
            return available
        remaining = (parse_time(waiting.not_before) - parse_time(self.clock())).total_seconds()
        if remaining > 0:
            report.not_due += 1
            self.queue.postpone(message.receipt, math.ceil(remaining))
            return available
        if available <= 0:
            report.left_waiting += 1
            self.queue.postpone(message.receipt, 0)  # the loop stops receiving: back for the next run
            return available
        try:
            outcome = submitter.submit(waiting.chunk, parent_job=waiting.parent_job)
        except JobSubmissionError as error:
            report.left_waiting += 1
            if not error.retryable:
                report.problems.append(f"{waiting.chunk.job_name} refused: {error}")
            return 0 if error.retryable else available  # throttled or over quota: stop for this run
        self.queue.delete(message.receipt)
        if outcome is Submitted.STARTED:
            report.started.append(waiting.chunk.job_name)
            return available - 1
        report.already_started.append(waiting.chunk.job_name)
        return available
