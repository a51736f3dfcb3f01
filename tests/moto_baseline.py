"""Put a moto account back to the state it had right after the stack was created.

Creating template.yaml's stack in moto costs more than most tests that use it, so a test module
creates it once and every test starts from this baseline instead: what a test added (objects,
items, messages, queues, rules, buses) is deleted through the public APIs. Transform jobs cannot
be deleted (in AWS nor in moto), so a test that left one gets the next test a fresh account.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import boto3
from moto import mock_aws

REGION = "us-east-1"


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def _rules(events: Any) -> set[tuple[str, str]]:
    buses = [bus["Name"] for bus in events.list_event_buses()["EventBuses"]]
    return {(bus, rule["Name"]) for bus in buses for rule in events.list_rules(EventBusName=bus)["Rules"]}


def transform_jobs() -> list[str]:
    pages = _client("sagemaker").get_paginator("list_transform_jobs").paginate()
    return [job["TransformJobName"] for page in pages for job in page["TransformJobSummaries"]]


@dataclass(frozen=True)
class Baseline:
    """What existed right after the stack was created."""

    buckets: frozenset[str]
    tables: frozenset[str]
    queues: frozenset[str]
    buses: frozenset[str]
    rules: frozenset[tuple[str, str]]

    @classmethod
    def capture(cls) -> Baseline:
        events = _client("events")
        return cls(
            buckets=frozenset(b["Name"] for b in _client("s3").list_buckets()["Buckets"]),
            tables=frozenset(_client("dynamodb").list_tables()["TableNames"]),
            queues=frozenset(_client("sqs").list_queues().get("QueueUrls", [])),
            buses=frozenset(bus["Name"] for bus in events.list_event_buses()["EventBuses"]),
            rules=frozenset(_rules(events)),
        )

    def restore(self) -> None:
        """Empty the stack's buckets, tables and queues; delete what tests created next to them."""
        self._restore_s3()
        self._restore_dynamodb()
        self._restore_sqs()
        self._restore_events()

    def _restore_s3(self) -> None:
        s3 = _client("s3")
        for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                versions = page.get("Versions", []) + page.get("DeleteMarkers", [])
                for version in versions:
                    s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            if bucket not in self.buckets:
                s3.delete_bucket(Bucket=bucket)

    def _restore_dynamodb(self) -> None:
        dynamodb = _client("dynamodb")
        for table in dynamodb.list_tables()["TableNames"]:
            if table not in self.tables:
                dynamodb.delete_table(TableName=table)
                continue
            schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
            key_names = [key["AttributeName"] for key in schema]
            for page in dynamodb.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    dynamodb.delete_item(TableName=table, Key={name: item[name] for name in key_names})

    def _restore_sqs(self) -> None:
        sqs = _client("sqs")
        for url in sqs.list_queues().get("QueueUrls", []):
            if url in self.queues:
                sqs.purge_queue(QueueUrl=url)
            else:
                sqs.delete_queue(QueueUrl=url)

    def _restore_events(self) -> None:
        events = _client("events")
        for bus, rule in _rules(events) - self.rules:
            targets = events.list_targets_by_rule(Rule=rule, EventBusName=bus)["Targets"]
            if targets:
                events.remove_targets(Rule=rule, EventBusName=bus, Ids=[t["Id"] for t in targets])
            events.delete_rule(Name=rule, EventBusName=bus)
        for bus in events.list_event_buses()["EventBuses"]:
            if bus["Name"] not in self.buses:
                events.delete_event_bus(Name=bus["Name"])


def parse_templates_once() -> None:
    """moto parses a stack's template with PyYAML's pure-Python loader on every ``create_stack``
    (~0.3 s for template.yaml, more than the rest of the stack's creation): parse each template
    text once per process and hand every stack its own deep copy of the result, as parsing did."""
    from moto.cloudformation.models import Stack

    parse = Stack.parse_template
    if getattr(parse, "cached", False):
        return
    parsed = functools.cache(parse)

    def parse_once(template: Any) -> Any:
        return copy.deepcopy(parsed(template) if isinstance(template, str) else parse(template))

    parse_once.cached = True  # type: ignore[attr-defined]
    Stack.parse_template = staticmethod(parse_once)  # type: ignore[method-assign]


T = TypeVar("T")


class ModuleAccount(Generic[T]):
    """One moto account for a whole test module: ``create`` (the stack) runs once and every test
    starts from the baseline taken right after it, or from a new account when there is none yet or
    a test left transform jobs (they cannot be deleted)."""

    def __init__(self, create: Callable[[], T]) -> None:
        parse_templates_once()
        self.create = create
        self.mock = mock_aws()
        self.mock.start()
        self.created: tuple[T] | None = None  # a tuple, so a ``create`` returning None still counts
        self.baseline: Baseline | None = None

    def fresh(self) -> T:
        """What ``create`` returned, with the account as it was right after it."""
        if self.created is None or self.baseline is None or transform_jobs():
            self.blank()
            self.created = (self.create(),)
            self.baseline = Baseline.capture()
        else:
            self.baseline.restore()
        return self.created[0]

    def blank(self) -> None:
        """An empty account (moto resets when its mock restarts); the next :meth:`fresh` creates again."""
        self.mock.stop()
        self.mock.start()
        self.created = self.baseline = None

    def close(self) -> None:
        self.mock.stop()
