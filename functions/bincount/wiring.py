"""The boto3-backed services the handlers build: one place, so the batcher's error records, the
collector's results and the reconciler's late collections are written by identically wired code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from bincount.adapters.dynamodb import DynamoCountStore, DynamoJobStore
from bincount.adapters.eventbridge import EventBridgeSender
from bincount.adapters.s3 import S3ObjectStore
from bincount.adapters.sagemaker import SageMakerTransformJobs
from bincount.adapters.sqs import SqsMessageQueue
from bincount.batching import sanitize_prefix
from bincount.collection import Collector
from bincount.settings import Settings
from bincount.submission import Submitter
from bincount.waiting import WaitingRoom


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
    sqs: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> Collector:
    """The collector over the submitter's object store and jobs table (re-drives go through it).

    ``sqs``: the client for the retry queue (``RETRY_QUEUE_URL``). The batcher passes none: it
    only writes error records and never re-drives a job, so it needs no retry queue.
    """
    waiting = (
        WaitingRoom(SqsMessageQueue(sqs, settings.retry_queue_url))
        if sqs is not None and settings.retry_queue_url
        else None
    )
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
        waiting=waiting,
        retry_policy=settings.retry_policy(),
        max_in_flight=settings.max_jobs_in_flight,
    )


def build_collecting(
    settings: Settings,
    *,
    s3: Any = None,
    sagemaker: Any = None,
    dynamodb: Any = None,
    events: Any = None,
    sqs: Any = None,
    sleep: Callable[[float], None] | None = None,
) -> Collector:
    """The collector with its submitter and retry queue, as the collector and the reconciler run
    it; a client not given is boto3's default (tests pass stubbed or moto-backed ones)."""
    dynamodb = dynamodb or boto3.resource("dynamodb")
    submitter = build_submitter(
        settings,
        s3=s3 or boto3.client("s3"),
        sagemaker=sagemaker or boto3.client("sagemaker"),
        dynamodb=dynamodb,
    )
    return build_collector(
        settings,
        submitter,
        dynamodb=dynamodb,
        events=events or boto3.client("events"),
        sqs=sqs or boto3.client("sqs"),
        sleep=sleep,
    )
