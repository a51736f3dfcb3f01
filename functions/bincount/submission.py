"""Starting transform jobs for chunks of images: used by the batcher and by the collector's re-drive.

Order per chunk: jobs table says it exists → done; else write manifest + image list (only if
absent), CreateTransformJob (``ResourceInUse`` = already started = success), record the job.
Every step is safe to repeat, so an at-least-once caller can retry any chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from bincount.batching import (
    Chunk,
    JobLayout,
    TransformConfig,
    create_transform_job_request,
    images_document,
    manifest_body,
)
from bincount.ports import JobStore, JobSubmissionError, ObjectStore, TransformJobs
from bincount.timefmt import now

# Set on a job's record when it starts, removed once the job is collected: the reconciler's index.
IN_FLIGHT_ATTRIBUTE = "in_flight"
IN_FLIGHT_VALUE = "1"


class Submitted(Enum):
    STARTED = "started"
    EXISTS = "exists"  # same images, same name: started by an earlier delivery
    DEFERRED = "deferred"  # throttled, over quota or over our in-flight cap: SQS redelivers later
    FAILED = "failed"  # refused for good (e.g. the model does not exist): SQS → DLQ after retries


@dataclass
class Submitter:
    objects: ObjectStore
    transforms: TransformJobs
    jobs: JobStore
    layout: JobLayout
    config: TransformConfig
    clock: Callable[[], str] = now

    def submit(self, chunk: Chunk, parent_job: str | None = None) -> Submitted:
        """Start the chunk's job; raises JobSubmissionError (``retryable`` tells which kind)."""
        if self.jobs.get(chunk.job_name) is not None:
            return Submitted.EXISTS
        bucket = self.layout.results_bucket
        self.objects.put_json_if_absent(
            bucket, self.layout.manifest_key(chunk.job_name), manifest_body(self.layout, chunk)
        )
        self.objects.put_json_if_absent(
            bucket, self.layout.images_key(chunk.job_name), images_document(chunk, parent_job)
        )
        request = create_transform_job_request(chunk, self.layout, self.config, parent_job)
        started = self.transforms.create(request)
        self.jobs.record(
            chunk.job_name,
            {
                "status": "InProgress",
                "manifest_uri": self.layout.manifest_uri(chunk.job_name),
                "images_uri": f"s3://{bucket}/{self.layout.images_key(chunk.job_name)}",
                "output_uri": self.layout.output_uri(chunk.job_name),
                "image_count": len(chunk.images),
                "content_type": chunk.content_type,
                "parent_job": parent_job,
                "attempt": chunk.attempt,
                "created_at": self.clock(),
                IN_FLIGHT_ATTRIBUTE: IN_FLIGHT_VALUE,
            },
        )
        return Submitted.STARTED if started else Submitted.EXISTS


@dataclass
class BatchReport:
    outcomes: dict[str, Submitted] = field(default_factory=dict)  # job name → outcome
    failed_messages: set[str] = field(default_factory=set)
    deferred_messages: set[str] = field(default_factory=set)
    images: int = 0

    def count(self, outcome: Submitted) -> int:
        return sum(1 for value in self.outcomes.values() if value is outcome)


def available_slots(transforms: TransformJobs, max_in_flight: int, name_prefix: str) -> int:
    """How many more jobs ``MaxJobsInFlight`` allows now (first starts, re-drives and retries alike)."""
    return max(0, max_in_flight - transforms.count_in_progress(name_prefix, max_in_flight))


def submit_chunks(
    chunks: Sequence[Chunk],
    submitter: Submitter,
    max_in_flight: int,
    name_prefix: str,
    on_error: Callable[[Chunk, JobSubmissionError], None] = lambda chunk, error: None,
) -> BatchReport:
    """Start chunks while under the in-flight cap; everything else fails exactly its own messages.

    A message whose images sit in several chunks fails if any of them fails; its other images
    are submitted again on redelivery, which the collector's one-record-per-image rule absorbs.
    """
    report = BatchReport(images=sum(len(chunk.images) for chunk in chunks))
    if not chunks:
        return report
    available = available_slots(submitter.transforms, max_in_flight, name_prefix)
    stop_reason: str | None = None
    for chunk in chunks:
        if stop_reason is None and available <= 0:
            stop_reason = "cap"
        if stop_reason is not None:
            report.outcomes[chunk.job_name] = Submitted.DEFERRED
            report.deferred_messages |= chunk.message_ids
            continue
        try:
            outcome = submitter.submit(chunk)
        except JobSubmissionError as error:
            on_error(chunk, error)
            if error.retryable:
                # Throttled or over quota: the next chunks would be refused too.
                stop_reason = error.code
                report.outcomes[chunk.job_name] = Submitted.DEFERRED
                report.deferred_messages |= chunk.message_ids
            else:
                report.outcomes[chunk.job_name] = Submitted.FAILED
                report.failed_messages |= chunk.message_ids
            continue
        report.outcomes[chunk.job_name] = outcome
        if outcome is Submitted.STARTED:
            available -= 1
    return report
