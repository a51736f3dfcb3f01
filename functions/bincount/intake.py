"""One SQS batch of S3 notifications sorted into what the batcher does with each upload.

parse → refuse other buckets → merge repeats of one upload → error records for uploads no job
could handle (bincount.admission) → stage the notified versions (bincount.staging) → chunks.
Every upload named by a well-formed message ends in exactly one place: a chunk, a rejection
(error record), a refused message (DLQ) or a failed message (SQS redelivers it).
``message_fates`` then says which messages of the batch stay in the queue, and which of them only
wait for job capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field, replace

from bincount.admission import AdmissionRules, rejection_for
from bincount.batching import Chunk, dedupe, plan_chunks
from bincount.notifications import MalformedNotification, parse_notification
from bincount.serving_records import ErrorResult
from bincount.staging import VersionCopier, stage_images
from bincount.submission import BatchReport
from bincount.uploads import ImageObject


@dataclass(frozen=True)
class Rejection:
    image: ImageObject
    error: ErrorResult
    message_ids: frozenset[str]


@dataclass
class IntakePlan:
    chunks: list[Chunk] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    refused_messages: dict[str, str] = field(default_factory=dict)  # message id → why (to the DLQ)
    malformed: dict[str, str] = field(default_factory=dict)  # message id → parse error
    failed_messages: set[str] = field(default_factory=set)  # transient staging failures: retry
    test_events: int = 0
    skipped_keys: int = 0

    @property
    def images(self) -> int:
        return sum(len(chunk.images) for chunk in self.chunks) + len(self.rejections)


@dataclass(frozen=True)
class Staging:
    copier: VersionCopier
    results_bucket: str
    prefix: str
    workers: int = 16


def parse_messages(
    messages: Mapping[str, str], rules: AdmissionRules, plan: IntakePlan
) -> dict[str, tuple[ImageObject, ...]]:
    """Images by message; malformed bodies and other buckets' notifications noted in ``plan``."""
    images_by_message: dict[str, tuple[ImageObject, ...]] = {}
    for message_id, body in messages.items():
        try:
            notification = parse_notification(body, rules.keys)
        except MalformedNotification as error:
            plan.malformed[message_id] = str(error)
            continue
        plan.test_events += int(notification.is_test_event)
        plan.skipped_keys += len(notification.skipped_keys)
        foreign = sorted({image.bucket for image in notification.images if rules.is_foreign(image)})
        if foreign:
            plan.refused_messages[message_id] = (
                f"notification names bucket(s) {', '.join(foreign)}, "
                f"not the ingest bucket {rules.ingest_bucket}"
            )
        images_by_message[message_id] = tuple(
            image for image in notification.images if not rules.is_foreign(image)
        )
    return images_by_message


def plan_intake(
    messages: Mapping[str, str], rules: AdmissionRules, staging: Staging, max_images: int, prefix: str
) -> IntakePlan:
    plan = IntakePlan()
    owners = dedupe(parse_messages(messages, rules, plan))
    admitted: list[ImageObject] = []
    for image, message_ids in owners.items():
        error = rejection_for(image, rules)
        if error is None:
            admitted.append(image)
        else:
            plan.rejections.append(Rejection(image, error, frozenset(message_ids)))
    staged = stage_images(admitted, staging.copier, staging.results_bucket, staging.prefix, staging.workers)
    for image, error in staged.unavailable:
        plan.rejections.append(Rejection(image, error, frozenset(owners[image])))
    for image, _ in staged.failed:
        plan.failed_messages |= owners[image]
    ready = {image: owners[replace(image, staged_key="")] for image in staged.staged}
    plan.chunks = plan_chunks(ready, max_images=max_images, prefix=prefix)
    return plan


@dataclass(frozen=True)
class MessageFates:
    """What becomes of each message of one SQS batch once its uploads were handled.

    ``failing``: reported in ``batchItemFailures``, so SQS keeps and redelivers them (and the queue's
    redrive policy moves them to the ingest DLQ after ``maxReceiveCount``). Every other message of
    the batch is deleted, which is safe only because each of its uploads reached a job, an error
    record or the DLQ. ``waiting`` ⊆ ``failing``: the messages held back *only* by job capacity,
    whose visibility the batcher extends (backoff by receive count) so they do not burn receives.
    """

    failing: frozenset[str]
    waiting: frozenset[str]


def message_fates(
    plan: IntakePlan,
    report: BatchReport,
    *,
    unrecorded: Set[str] = frozenset(),
    unrefused: Set[str] = frozenset(),
) -> MessageFates:
    """Decide the fate of every message from the intake plan, the job submissions and the two
    side effects the batcher performed in between.

    Failing, and why each set is there:

    - ``plan.malformed``: an unreadable body names no upload we could account for; it must reach
      the DLQ (via redrive) rather than vanish.
    - ``unrecorded``: owners of rejected uploads whose error record (or its event) was not
      written; deleting them would lose the upload without a record. Records are written once per
      upload, so the retry is harmless.
    - ``unrefused``: other buckets' notifications that could not be moved to the ingest DLQ (no
      DLQ URL locally, or SendMessage failed): failing lets the redrive policy take them there.
    - ``plan.failed_messages``: a transient staging copy failure; the next delivery stages again.
    - ``report.failed_messages``: CreateTransformJob refused for good; retries end in the DLQ.
    - ``report.deferred_messages``: throttled, over quota or over ``MaxJobsInFlight``: retry later.

    Waiting is the deferred messages minus every other reason to fail: a message that also has a
    staging failure, an unwritten record or a refused job must come back after the queue's normal
    visibility timeout (a prompt retry, or its receives counted towards the DLQ), not after a
    capacity backoff that would only delay it. A message may own images in a deferred chunk and in
    a failed one; the failure wins.
    """
    not_finished = set(plan.malformed) | set(unrecorded) | set(unrefused) | plan.failed_messages
    not_finished |= report.failed_messages
    return MessageFates(
        failing=frozenset(not_finished | report.deferred_messages),
        waiting=frozenset(report.deferred_messages - not_finished),
    )
