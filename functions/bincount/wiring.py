"""The boto3-backed services the handlers build: one place, so the batcher's error records, the
collector's results and the reconciler's late collections are written by identically wired code.

Each handler makes one :class:`Clients` per Lambda environment and asks here for its services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

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

#: botocore's own connection pool per client.
DEFAULT_POOL_CONNECTIONS = 10


@dataclass
class Clients:
    """The AWS clients behind the adapters, made once per Lambda environment.

    Any not given is boto3's default with ``pool_connections`` pooled connections (tests give
    stubbed or moto-backed ones); ``dynamodb`` is the resource, because the adapters work on its
    tables.
    """

    s3: Any = None
    sagemaker: Any = None
    dynamodb: Any = None
    events: Any = None
    sqs: Any = None
    pool_connections: int = DEFAULT_POOL_CONNECTIONS

    def __post_init__(self) -> None:
        config = Config(max_pool_connections=self.pool_connections)
        self.s3 = self.s3 or boto3.client("s3", config=config)
        self.sagemaker = self.sagemaker or boto3.client("sagemaker", config=config)
        self.dynamodb = self.dynamodb or boto3.resource("dynamodb", config=config)
        self.events = self.events or boto3.client("events", config=config)
        self.sqs = self.sqs or boto3.client("sqs", config=config)

    @classmethod
    def for_settings(cls, settings: Settings) -> Clients:
        """Clients with a pooled connection for every thread of the widest pool that shares one
        (the batcher's staging copies, the collector's result reads): with botocore's 10, the
        16 staging threads had connections discarded and opened again on every batch."""
        widest = max(settings.staging_workers, settings.result_read_workers)
        return cls(pool_connections=max(DEFAULT_POOL_CONNECTIONS, widest))


def build_submitter(settings: Settings, clients: Clients) -> Submitter:
    return Submitter(
        objects=S3ObjectStore(clients.s3),
        transforms=SageMakerTransformJobs(clients.sagemaker),
        jobs=DynamoJobStore(clients.dynamodb.Table(settings.jobs_table)),
        layout=settings.layout(),
        config=settings.transform_config(),
    )


def build_collector(
    settings: Settings,
    clients: Clients,
    *,
    retry_queue: bool = True,
    sleep: Callable[[float], None] | None = None,
) -> Collector:
    """The collector with its submitter (``collector.submitter``: re-drives go through it).

    ``retry_queue``: whether photos may wait in the retry queue (``RETRY_QUEUE_URL``). The batcher
    says no: it only writes error records and never re-drives a job.
    """
    submitter = build_submitter(settings, clients)
    waiting = (
        WaitingRoom(SqsMessageQueue(clients.sqs, settings.retry_queue_url))
        if retry_queue and settings.retry_queue_url
        else None
    )
    return Collector(
        objects=submitter.objects,
        counts=DynamoCountStore(clients.dynamodb.Table(settings.counts_table)),
        jobs=submitter.jobs,
        sender=EventBridgeSender(clients.events),
        submitter=submitter,
        layout=settings.layout(),
        bus_name=settings.event_bus_name,
        rules=settings.decision_rules(),
        job_name_prefix=sanitize_prefix(settings.job_name_prefix),
        read_workers=settings.result_read_workers,
        publish_max_attempts=settings.publish_max_attempts,
        sleep=sleep,
        waiting=waiting,
        retry_policy=settings.retry_policy(),
        max_in_flight=settings.max_jobs_in_flight,
    )
