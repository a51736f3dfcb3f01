"""The boto3-backed services both handlers build: one place, so the batcher's error records and
the collector's results are written by identically wired code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bincount.adapters.dynamodb import DynamoCountStore, DynamoJobStore
from bincount.adapters.eventbridge import EventBridgeSender
from bincount.adapters.s3 import S3ObjectStore
from bincount.adapters.sagemaker import SageMakerTransformJobs
from bincount.batching import sanitize_prefix
from bincount.collection import Collector
from bincount.settings import Settings
from bincount.submission import Submitter


def build_submitter(settings: Settings, *, s3: Any, sagemaker: Any, dynamodb: Any) -> Submitter:
    """``s3``/``sagemaker``: clients; ``dynamodb``: the resource."""
    return Submitter(
        objects=S3ObjectStore(s3),
        transforms=SageMakerTransformJobs(sagemaker),
        jobs=DynamoJobStore(dynamodb.Table(settings.jobs_table)),
        layout=settings.layout(),
        config=settings.transform_config(),
    )


def build_collector(
    settings: Settings,
    submitter: Submitter,
    *,
    dynamodb: Any,
    events: Any,
    sleep: Callable[[float], None] | None = None,
) -> Collector:
    """The collector over the submitter's object store and jobs table (re-drives go through it)."""
    return Collector(
        objects=submitter.objects,
        counts=DynamoCountStore(dynamodb.Table(settings.counts_table)),
        jobs=submitter.jobs,
        sender=EventBridgeSender(events),
        submitter=submitter,
        layout=settings.layout(),
        bus_name=settings.event_bus_name,
        confidence_threshold=settings.confidence_threshold,
        job_name_prefix=sanitize_prefix(settings.job_name_prefix),
        read_workers=settings.result_read_workers,
        publish_max_attempts=settings.publish_max_attempts,
        sleep=sleep,
    )
