"""Collector Lambda: ``SageMaker Transform Job State Change`` → counts in DynamoDB + inventory events.

Handler ``collector.app.handler``. With ``IDEMPOTENCY_TABLE`` set, a repeated delivery of the same
(job, status) returns the stored summary without re-reading the results (Powertools idempotency);
without it the per-image conditional writes still make a replay harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from bincount.collection import CollectionReport, Collector
from bincount.job_events import NotATransformJobEvent, TransformJobEvent, parse_job_event
from bincount.results import CountResult
from bincount.settings import Settings, get_settings
from bincount.wiring import build_collecting

logger = Logger()
metrics = Metrics()

IDEMPOTENCY_KEY = "[detail.TransformJobName, detail.TransformJobStatus]"


@dataclass
class CollectorRuntime:
    settings: Settings
    collector: Collector
    idempotency: DynamoDBPersistenceLayer | None = None


def build_runtime(
    settings: Settings,
    *,
    s3: Any = None,
    sagemaker: Any = None,
    dynamodb: Any = None,
    events: Any = None,
    dynamodb_client: Any = None,
    sqs: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> CollectorRuntime:
    """Wire adapters; tests pass stubbed clients, Lambda uses the defaults."""
    collector = build_collecting(
        settings, s3=s3, sagemaker=sagemaker, dynamodb=dynamodb, events=events, sqs=sqs, sleep=sleep
    )
    idempotency = (
        DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb_client)
        if settings.idempotency_table
        else None
    )
    return CollectorRuntime(settings=settings, collector=collector, idempotency=idempotency)


@lru_cache(maxsize=1)
def get_runtime() -> CollectorRuntime:
    return build_runtime(get_settings())


def summary_of(report: CollectionReport) -> dict[str, Any]:
    return {
        "job_name": report.job_name,
        "status": report.status,
        "ignored": report.ignored,
        "counted": len(report.counted),
        "rejected": len(report.rejected),
        "duplicates": report.duplicates,
        "stale": report.stale,
        "events_published": report.events_published,
        "redriven_images": report.redriven_images,
        "redriven_jobs": {name: outcome.value for name, outcome in report.redriven_jobs.items()},
        "failure_kind": report.failure_kind.value if report.failure_kind else None,
        "waiting_jobs": dict(report.waiting_jobs),
        "parked_images": report.parked_images,
    }


def emit_metrics(job: TransformJobEvent, report: CollectionReport) -> None:
    """Counts and confidences as metric distributions: the drift watch (no Model Monitor)."""
    metrics.add_metric(name="ImagesCounted", unit=MetricUnit.Count, value=len(report.counted))
    metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=len(report.rejected))
    metrics.add_metric(name="ImagesRedriven", unit=MetricUnit.Count, value=report.redriven_images)
    metrics.add_metric(name="ImagesWaiting", unit=MetricUnit.Count, value=sum(report.waiting_jobs.values()))
    metrics.add_metric(name="ImagesParked", unit=MetricUnit.Count, value=report.parked_images)
    metrics.add_metric(name="DuplicateResults", unit=MetricUnit.Count, value=report.duplicates)
    metrics.add_metric(name="StalePhotos", unit=MetricUnit.Count, value=report.stale)
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=report.events_published)
    metrics.add_metric(
        name="NeedsReview", unit=MetricUnit.Count, value=sum(1 for o in report.counted if o.needs_review)
    )
    metrics.add_metric(name=f"Jobs{job.status}", unit=MetricUnit.Count, value=1)
    if job.latency_s is not None:
        metrics.add_metric(name="JobLatency", unit=MetricUnit.Seconds, value=job.latency_s)
    for outcome in report.counted:
        assert isinstance(outcome.result, CountResult)
        metrics.add_metric(name="PredictedCount", unit=MetricUnit.Count, value=outcome.result.count)
        metrics.add_metric(name="CountConfidence", unit=MetricUnit.NoUnit, value=outcome.result.confidence)


def collect(job_event: dict[str, Any], runtime: CollectorRuntime) -> dict[str, Any]:
    job = parse_job_event(job_event)
    logger.append_keys(job=job.job_name, status=job.status)
    report = runtime.collector.collect(job)
    summary = summary_of(report)
    if not report.ignored:
        emit_metrics(job, report)
    logger.info("transform job collected", **summary)
    return summary


def process(event: dict[str, Any], context: Any, runtime: CollectorRuntime) -> dict[str, Any]:
    metrics.add_metric(name="StateChangeEvents", unit=MetricUnit.Count, value=1)  # replays included
    try:
        parse_job_event(event)
    except NotATransformJobEvent as error:
        logger.warning("not a transform job state change, ignored", error=str(error))
        return {"ignored": True}
    if runtime.idempotency is None:
        return collect(event, runtime)
    config = IdempotencyConfig(event_key_jmespath=IDEMPOTENCY_KEY, expires_after_seconds=7 * 24 * 3600)
    if context is not None:
        config.register_lambda_context(context)

    @idempotent_function(
        data_keyword_argument="job_event", persistence_store=runtime.idempotency, config=config
    )
    def collect_once(job_event: dict[str, Any]) -> dict[str, Any]:
        return collect(job_event, runtime)

    result: dict[str, Any] = collect_once(job_event=event)
    return result


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return process(event, context, get_runtime())
