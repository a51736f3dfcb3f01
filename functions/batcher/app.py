"""Batcher Lambda: SQS (S3 notifications) → manifest + one Batch Transform job per chunk.

Handler ``batcher.app.handler``. Partial batch responses: a message fails only when its own
images could not be handed to SageMaker (throttled, over quota, over the in-flight cap, or a
malformed body); the test event and non-image keys always succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from bincount.adapters.dynamodb import DynamoJobStore
from bincount.adapters.s3 import S3ObjectStore
from bincount.adapters.sagemaker import SageMakerTransformJobs
from bincount.adapters.sqs import SqsVisibility
from bincount.batching import sanitize_prefix
from bincount.keys import KeyRules
from bincount.ports import JobSubmissionError
from bincount.settings import Settings, get_settings
from bincount.submission import Submitted, Submitter, plan_from_messages, submit_chunks

logger = Logger()
metrics = Metrics()


class MessageNotHandedOver(Exception):
    """Raised for a message whose images must wait in SQS (reported as a batch item failure)."""


@dataclass
class BatcherRuntime:
    settings: Settings
    submitter: Submitter
    visibility: SqsVisibility | None = None

    @property
    def rules(self) -> KeyRules:
        return self.settings.key_rules()


def build_runtime(
    settings: Settings, *, s3: Any = None, sagemaker: Any = None, dynamodb: Any = None, sqs: Any = None
) -> BatcherRuntime:
    """Wire adapters; tests pass stubbed clients, Lambda uses the defaults."""
    dynamodb = dynamodb or boto3.resource("dynamodb")
    submitter = Submitter(
        objects=S3ObjectStore(s3 or boto3.client("s3")),
        transforms=SageMakerTransformJobs(sagemaker or boto3.client("sagemaker")),
        jobs=DynamoJobStore(dynamodb.Table(settings.jobs_table)),
        layout=settings.layout(),
        config=settings.transform_config(),
    )
    visibility = None
    if settings.ingest_queue_url:
        visibility = SqsVisibility(sqs or boto3.client("sqs"), settings.ingest_queue_url)
    return BatcherRuntime(settings=settings, submitter=submitter, visibility=visibility)


@lru_cache(maxsize=1)
def get_runtime() -> BatcherRuntime:
    return build_runtime(get_settings())


def receive_count(record: dict[str, Any]) -> int:
    """SQS attributes are strings: ``"ApproximateReceiveCount": "3"``."""
    return int((record.get("attributes") or {}).get("ApproximateReceiveCount") or 1)


def process(event: dict[str, Any], context: Any, runtime: BatcherRuntime) -> dict[str, Any]:
    settings = runtime.settings
    records = event.get("Records") or []
    prefix = sanitize_prefix(settings.job_name_prefix)
    plan, errors = plan_from_messages(
        {record["messageId"]: record["body"] for record in records},
        runtime.rules,
        max_images=settings.max_images_per_job,
        prefix=prefix,
    )
    for message_id, error in errors.items():
        logger.error("malformed notification", message_id=message_id, error=error)

    def log_refusal(chunk: Any, error: JobSubmissionError) -> None:
        logger.warning(
            "transform job not started",
            job=chunk.job_name,
            code=error.code,
            retryable=error.retryable,
            error=str(error),
        )

    report = submit_chunks(
        plan.chunks, runtime.submitter, settings.max_jobs_in_flight, f"{prefix}-", on_error=log_refusal
    )
    waiting = report.deferred_messages - plan.failed_messages - report.failed_messages
    failing = plan.failed_messages | report.failed_messages | report.deferred_messages
    if waiting and runtime.visibility is not None:
        waiting_records = [record for record in records if record["messageId"] in waiting]
        receipts = [(record["receiptHandle"], receive_count(record)) for record in waiting_records]
        try:
            runtime.visibility.defer(receipts)
        except Exception:  # best effort: Lambda redelivers after the queue's visibility timeout anyway
            logger.exception("could not extend visibility of waiting messages")

    logger.info(
        "batch planned",
        messages=len(records),
        test_events=plan.test_events,
        skipped_keys=plan.skipped_keys,
        images=report.images,
        jobs={name: outcome.value for name, outcome in report.outcomes.items()},
        failing_messages=len(failing),
    )
    metrics.add_metric(name="ImagesReceived", unit=MetricUnit.Count, value=report.images)
    metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=report.count(Submitted.STARTED))
    metrics.add_metric(name="JobsAlreadyStarted", unit=MetricUnit.Count, value=report.count(Submitted.EXISTS))
    metrics.add_metric(name="JobsDeferred", unit=MetricUnit.Count, value=report.count(Submitted.DEFERRED))
    metrics.add_metric(name="JobsRefused", unit=MetricUnit.Count, value=report.count(Submitted.FAILED))
    metrics.add_metric(name="MalformedNotifications", unit=MetricUnit.Count, value=len(plan.failed_messages))

    def record_handler(record: SQSRecord) -> None:
        if record.message_id in failing:
            raise MessageNotHandedOver(record.message_id)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return process(event, context, get_runtime())
