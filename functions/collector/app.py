"""Collector Lambda: ``SageMaker Transform Job State Change`` → counts in DynamoDB + inventory events.

Handler ``collector.app.handler``. With ``IDEMPOTENCY_TABLE`` set, a repeated delivery of the same
(job, status) returns the stored summary without re-reading the results (Powertools idempotency);
without it the per-image conditional writes still make a replay harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from bincount.collection import CollectionReport, Collector
from bincount.job_events import NotATransformJobEvent, TransformJobEvent, parse_job_event
from bincount.serving_records import CountResult
from bincount.settings import Settings, get_settings
from bincount.wiring import Clients, build_collector

logger = Logger()
metrics = Metrics()

IDEMPOTENCY_KEY = "[detail.TransformJobName, detail.TransformJobStatus]"


IDEMPOTENCY_TTL_S = 7 * 24 * 3600


@dataclass
class CollectorRuntime:
    """Wired once per Lambda environment, the idempotent ``collect`` included (not once per event)."""

    settings: Settings
    collector: Collector
    idempotency: DynamoDBPersistenceLayer | None = None
    idempotency_config: IdempotencyConfig = field(
        default_factory=lambda: IdempotencyConfig(
            event_key_jmespath=IDEMPOTENCY_KEY, expires_after_seconds=IDEMPOTENCY_TTL_S
        )
    )
    collect: Callable[..., dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.collect = (
            collect_job
            if self.idempotency is None
            else idempotent_function(
                collect_job,
                data_keyword_argument="job_event",
                persistence_store=self.idempotency,
                config=self.idempotency_config,
            )
        )


def build_runtime(
    settings: Settings,
    clients: Clients | None = None,
    *,
    dynamodb_client: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> CollectorRuntime:
    """Wire adapters; tests pass stubbed clients, Lambda uses the defaults.

    ``dynamodb_client``: Powertools idempotency's (a client, not the resource; its own default).
    """
    collector = build_collector(settings, clients or Clients.for_settings(settings), sleep=sleep)
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
        "discrepancies": report.discrepancies,
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
    metrics.add_metric(name="DiscrepanciesRaised", unit=MetricUnit.Count, value=report.discrepancies)
    metrics.add_metric(name=f"Jobs{job.status}", unit=MetricUnit.Count, value=1)
    if job.latency_s is not None:
        metrics.add_metric(name="JobLatency", unit=MetricUnit.Seconds, value=job.latency_s)
    for outcome in report.counted:
        assert isinstance(outcome.result, CountResult)
        metrics.add_metric(name="PredictedCount", unit=MetricUnit.Count, value=outcome.result.count)
        metrics.add_metric(name="CountConfidence", unit=MetricUnit.NoUnit, value=outcome.result.confidence)
        if outcome.result.range is not None:  # calibrated ranges widening: the photos drift from calibration
            span = outcome.result.range
            metrics.add_metric(name="CountRangeWidth", unit=MetricUnit.Count, value=span.high - span.low + 1)


def collect_job(*, job_event: dict[str, Any], job: TransformJobEvent, collector: Collector) -> dict[str, Any]:
    """One job's results recorded; ``job_event`` (the raw event) is only the idempotency key's source."""
    logger.append_keys(job=job.job_name, status=job.status)
    report = collector.collect(job)
    summary = summary_of(report)
    if not report.ignored:
        emit_metrics(job, report)
    logger.info("transform job collected", **summary)
    return summary


def process(
    event: EventBridgeEvent, context: LambdaContext | None, runtime: CollectorRuntime
) -> dict[str, Any]:
    metrics.add_metric(name="StateChangeEvents", unit=MetricUnit.Count, value=1)  # replays included
    try:
        job = parse_job_event(event)
    except NotATransformJobEvent as error:
        logger.warning("not a transform job state change, ignored", error=str(error))
        return {"ignored": True}
    if context is not None:
        runtime.idempotency_config.register_lambda_context(context)
    return runtime.collect(job_event=event.raw_event, job=job, collector=runtime.collector)


@metrics.log_metrics
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: LambdaContext | None = None) -> dict[str, Any]:
    return process(event, context, get_runtime())
