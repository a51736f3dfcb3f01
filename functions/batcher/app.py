"""Batcher Lambda: SQS (S3 notifications) → manifest + one Batch Transform job per chunk.

Handler ``batcher.app.handler``. Partial batch responses: a message fails only when its own
images could not be handed to SageMaker (throttled, over quota, over the in-flight cap, a
staging copy or an error record that could not be written, or a malformed body); the test event
and keys outside the prefix always succeed. Uploads no job could handle get their error record
here (bincount.admission); notifications naming another bucket go to the ingest DLQ. Which
messages fail, and which of them only wait for capacity, is bincount.intake.message_fates; this
module wires, logs and reports. Events arrive as Powertools' typed ``SQSEvent``.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from bincount.adapters.s3_versions import S3VersionCopier
from bincount.adapters.sqs import SqsDeadLetters, SqsVisibility
from bincount.batching import Chunk, sanitize_prefix
from bincount.collection import Collector
from bincount.intake import IntakePlan, Staging, message_fates, plan_intake
from bincount.ports import JobSubmissionError
from bincount.settings import Settings, get_settings
from bincount.submission import BatchReport, Submitted, Submitter, submit_chunks
from bincount.wiring import Clients, build_collector

logger = Logger()
metrics = Metrics()


@dataclass
class BatcherRuntime:
    settings: Settings
    submitter: Submitter
    staging: Staging
    recorder: Collector  # writes the batcher's error records with the collector's code
    visibility: SqsVisibility | None = None
    dead_letters: SqsDeadLetters | None = None


def build_runtime(settings: Settings, clients: Clients | None = None) -> BatcherRuntime:
    """Wire adapters; tests pass stubbed clients, Lambda uses the defaults."""
    clients = clients or Clients.for_settings(settings)
    recorder = build_collector(settings, clients, retry_queue=False)
    staging = Staging(
        copier=S3VersionCopier(clients.s3),
        results_bucket=settings.results_bucket,
        prefix=settings.staging_prefix,
        workers=settings.staging_workers,
    )
    sqs = clients.sqs
    return BatcherRuntime(
        settings=settings,
        submitter=recorder.submitter,
        staging=staging,
        recorder=recorder,
        visibility=SqsVisibility(sqs, settings.ingest_queue_url) if settings.ingest_queue_url else None,
        dead_letters=SqsDeadLetters(sqs, settings.ingest_dlq_url) if settings.ingest_dlq_url else None,
    )


@lru_cache(maxsize=1)
def get_runtime() -> BatcherRuntime:
    return build_runtime(get_settings())


def receive_count(record: SQSRecord) -> int:
    """SQS attributes are strings: ``"ApproximateReceiveCount": "3"``; 1 when a hand-made event
    leaves it out (Powertools' ``approximate_receive_count`` would raise ``KeyError``)."""
    return int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)


def record_rejections(plan: IntakePlan, runtime: BatcherRuntime) -> set[str]:
    """Error records + ``Bin Image Rejected`` for the plan's rejections; the messages to retry."""
    if not plan.rejections:
        return set()
    for rejection in plan.rejections:
        logger.warning(
            "upload rejected",
            image_key=rejection.image.key,
            version=rejection.image.version,
            code=rejection.error.code,
            error=rejection.error.message,
        )
    owners: set[str] = set().union(*(r.message_ids for r in plan.rejections))
    try:
        report = runtime.recorder.record_rejections([(r.image, r.error) for r in plan.rejections])
    except Exception:  # the messages come back; records are written once per upload
        logger.exception("error records not written")
        return owners
    if report.problems:  # some events not published, so no record either: retry them all
        logger.warning("error records not finished", problems=report.problems)
        return owners
    return set()


def refuse_foreign(plan: IntakePlan, bodies: dict[str, str], runtime: BatcherRuntime) -> set[str]:
    """Other buckets' notifications go to the ingest DLQ (never a record, never silence).

    Without a DLQ URL (local runs) the message fails instead and reaches the DLQ by the queue's
    redrive policy. Returns the messages that must fail.
    """
    failing: set[str] = set()
    for message_id, reason in plan.refused_messages.items():
        logger.error("notification refused", message_id=message_id, reason=reason)
        if runtime.dead_letters is None:
            failing.add(message_id)
            continue
        try:
            runtime.dead_letters.send(bodies[message_id], reason, message_id)
        except Exception:
            logger.exception("refused notification not moved to the DLQ", message_id=message_id)
            failing.add(message_id)
    return failing


def emit_metrics(plan: IntakePlan, report: BatchReport) -> None:
    metrics.add_metric(name="ImagesReceived", unit=MetricUnit.Count, value=plan.images)
    metrics.add_metric(name="ImagesRejectedAtIngest", unit=MetricUnit.Count, value=len(plan.rejections))
    metrics.add_metric(
        name="ForeignBucketNotifications", unit=MetricUnit.Count, value=len(plan.refused_messages)
    )
    metrics.add_metric(name="StagingFailures", unit=MetricUnit.Count, value=len(plan.failed_messages))
    metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=report.count(Submitted.STARTED))
    metrics.add_metric(name="JobsAlreadyStarted", unit=MetricUnit.Count, value=report.count(Submitted.EXISTS))
    metrics.add_metric(name="JobsDeferred", unit=MetricUnit.Count, value=report.count(Submitted.DEFERRED))
    metrics.add_metric(name="JobsRefused", unit=MetricUnit.Count, value=report.count(Submitted.FAILED))
    metrics.add_metric(name="MalformedNotifications", unit=MetricUnit.Count, value=len(plan.malformed))


def log_refusal(chunk: Chunk, error: JobSubmissionError) -> None:
    logger.warning(
        "transform job not started",
        job=chunk.job_name,
        code=error.code,
        retryable=error.retryable,
        error=str(error),
    )


def defer_waiting(records: list[SQSRecord], waiting: Set[str], runtime: BatcherRuntime) -> None:
    """Extend the visibility of messages that only wait for capacity (backoff by receive count)."""
    if not waiting or runtime.visibility is None:
        return
    receipts = [(r.receipt_handle, receive_count(r)) for r in records if r.message_id in waiting]
    try:
        runtime.visibility.defer(receipts)
    except Exception:  # best effort: Lambda redelivers after the queue's visibility timeout anyway
        logger.exception("could not extend visibility of waiting messages")


def process(event: SQSEvent, context: LambdaContext | None, runtime: BatcherRuntime) -> dict[str, Any]:
    """Plan the batch, record rejections, refuse foreign buckets, start jobs; the messages' fates
    come from bincount.intake.message_fates."""
    settings = runtime.settings
    records = list(event.records) if event.get("Records") else []
    prefix = sanitize_prefix(settings.job_name_prefix)
    bodies = {record.message_id: record.body for record in records}
    plan = plan_intake(
        bodies,
        settings.admission_rules(),
        runtime.staging,
        max_images=settings.max_images_per_job,
        prefix=prefix,
    )
    for message_id, error in plan.malformed.items():
        logger.error("malformed notification", message_id=message_id, error=error)
    unrecorded = record_rejections(plan, runtime)
    unrefused = refuse_foreign(plan, bodies, runtime)
    report = submit_chunks(
        plan.chunks, runtime.submitter, settings.max_jobs_in_flight, f"{prefix}-", on_error=log_refusal
    )
    fates = message_fates(plan, report, unrecorded=unrecorded, unrefused=unrefused)
    defer_waiting(records, fates.waiting, runtime)
    logger.info(
        "batch planned",
        messages=len(records),
        test_events=plan.test_events,
        skipped_keys=plan.skipped_keys,
        images=plan.images,
        rejected=len(plan.rejections),
        refused_messages=len(plan.refused_messages),
        jobs={name: outcome.value for name, outcome in report.outcomes.items()},
        failing_messages=len(fates.failing),
        waiting_messages=len(fates.waiting),
    )
    emit_metrics(plan, report)
    return partial_batch_response(records, fates.failing)


def partial_batch_response(records: list[SQSRecord], failing: Set[str]) -> dict[str, Any]:
    """``ReportBatchItemFailures``: the failing messages, in delivery order, stay in SQS.

    Built directly: the outcome of every message is decided for the batch as a whole
    (bincount.intake.message_fates), so Powertools' per-record ``BatchProcessor`` would only
    format this.
    """
    return {
        "batchItemFailures": [
            {"itemIdentifier": record.message_id} for record in records if record.message_id in failing
        ]
    }


@metrics.log_metrics
@event_source(data_class=SQSEvent)
def handler(event: SQSEvent, context: LambdaContext | None = None) -> dict[str, Any]:
    return process(event, context, get_runtime())
