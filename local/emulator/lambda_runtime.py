"""Plays the Lambda service for the template's functions, nothing more.

moto cannot run Lambda without Docker, so the demo invokes the real handlers itself, with the
events the emulator delivered and in the shapes Lambda would pass: an SQS event source mapping
(batch size, batching window, partial batch responses, redelivery through the visibility
timeout, so moto's redrive to the DLQ applies), EventBridge rules (one asynchronous invoke per
event, delivered here through an SQS target because moto cannot target a function it did not
create) and a DynamoDB stream event source mapping (read through moto's DynamoDB Streams API:
DescribeStream, GetShardIterator, GetRecords on its one shard; partial batch responses retry from
the first failed record, and past ``MaximumRetryAttempts`` the batch's description goes to the
on-failure queue). moto records every write of a table with a ``StreamSpecification`` and keeps
the records (no 24-hour trim); the mapping's ``FilterCriteria`` are not applied here (the
function ignores what the filter would have dropped).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from local.emulator.moto_server import AwsEndpoint
from local.emulator.stack import EventRuleSource, FunctionSpec, SqsEventSource, StreamEventSource
from local.emulator.template import ACCOUNT_ID

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    region: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def merged_environment(functions: Mapping[str, FunctionSpec]) -> dict[str, str]:
    """One process hosts every function, so their variables are merged; conflicts are reported."""
    merged: dict[str, str] = {}
    for spec in functions.values():
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value:
                log.warning(
                    "%s differs between functions (%r vs %r); using %r", name, merged[name], value, value
                )
            merged[name] = value
    return merged


#: One import at a time across every function: in Lambda each function imports in its own process,
#: here they share one, and two threads importing Powertools' packages at once can meet a
#: partially initialised module (``cannot import name 'SQSEvent' ... circular import``).
_IMPORT_LOCK = threading.Lock()


class FunctionRuntime:
    """Imports one function's handler from its CodeUri and invokes it like Lambda does."""

    def __init__(self, spec: FunctionSpec, region: str) -> None:
        self.spec = spec
        self.region = region
        self.invocations = 0
        self.errors = 0
        self.busy_s = 0.0  # time spent inside the handler, for per-stage throughput
        self.completed = 0  # invocations that returned or raised: what the function wrote is written
        self._handler: Handler | None = None

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def handler(self) -> Handler:
        """Import ``module.function`` lazily, after the environment was set (settings read at import)."""
        with _IMPORT_LOCK:
            if self._handler is None:
                code_dir = str(self.spec.code_dir)
                if code_dir not in sys.path:
                    sys.path.insert(0, code_dir)
                module_name, function_name = self.spec.handler.rsplit(".", 1)
                self._handler = getattr(importlib.import_module(module_name), function_name)
            return self._handler

    def invoke(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.spec.logical_id, self.spec.memory_mb, self.spec.timeout_s, self.region)
        handler = self.handler()
        self.invocations += 1
        started = time.monotonic()
        try:
            return handler(event, context)
        except Exception:
            self.errors += 1
            raise
        finally:
            self.busy_s += time.monotonic() - started
            self.completed += 1


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the SQS event Lambda sends: camelCase keys, every attribute a string."""
    attributes = {name: str(value) for name, value in (message.get("Attributes") or {}).items()}
    message_attributes = {}
    for name, attribute in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": attribute.get("StringValue"),
            "binaryValue": attribute.get("BinaryValue"),
            "stringListValues": attribute.get("StringListValues", []),
            "binaryListValues": attribute.get("BinaryListValues", []),
            "dataType": attribute.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(response: Any, message_ids: list[str], partial: bool) -> set[str]:
    """Which messages stay on the queue after an invocation, by Lambda's rules.

    Without ``ReportBatchItemFailures`` a successful return deletes the whole batch. With it,
    ``batchItemFailures`` names the ones to keep; a malformed response or an identifier that is
    not in the batch fails the whole batch.
    """
    if not partial or response is None:
        return set()
    if not isinstance(response, dict):
        return set(message_ids)
    failures = response.get("batchItemFailures") or []
    if not isinstance(failures, list):
        return set(message_ids)
    kept = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in message_ids:
            return set(message_ids)
        kept.add(identifier)
    return kept


class SqsEventSourceMapping:
    """Polls a queue and invokes a function with batches, as an event source mapping does."""

    def __init__(
        self,
        endpoint: AwsEndpoint,
        function: FunctionRuntime,
        source: SqsEventSource,
        batching_window_s: float | None = None,
        batch_size: int | None = None,
        retry_visibility_s: int | None = None,
    ) -> None:
        self.sqs = endpoint.client("sqs")
        self.region = endpoint.region
        self.function = function
        self.source = source
        self.batch_size = batch_size or source.batch_size
        self.batching_window_s = source.batching_window_s if batching_window_s is None else batching_window_s
        # Lambda leaves a failed item until its visibility timeout ends; the demo may shorten that.
        self.retry_visibility_s = retry_visibility_s
        self.records_processed = 0
        self.records_failed = 0

    def poll_once(self, wait_s: float = 1.0) -> int:
        """Gather one batch (up to the batching window) and invoke; returns records handed over."""
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < self.batch_size:
            remaining = wait_s if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            received = self.sqs.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=max(0, min(20, int(remaining))),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if received and deadline is None:
                deadline = time.monotonic() + self.batching_window_s
            messages.extend(received)
            if not received and deadline is None:
                break
            if not received and remaining < 1:
                time.sleep(min(0.2, max(0.0, remaining)))
        if not messages:
            return 0
        self._invoke(messages)
        return len(messages)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [sqs_record(m, self.source.queue_arn, self.region) for m in messages]}
        ids = [m["MessageId"] for m in messages]
        try:
            response = self.function.invoke(event)
            kept = failed_message_ids(response, ids, self.source.report_batch_item_failures)
        except Exception:
            log.exception("%s failed; the whole batch of %d stays on the queue", self.function.name, len(ids))
            kept = set(ids)
        done = [m for m in messages if m["MessageId"] not in kept]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        self.records_processed += len(done)
        self.records_failed += len(kept)
        if kept and self.retry_visibility_s is not None:
            for message in messages:
                if message["MessageId"] in kept:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.source.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.retry_visibility_s,
                    )


class Invocable(Protocol):
    @property
    def name(self) -> str: ...

    def invoke(self, event: dict[str, Any]) -> Any: ...


def stream_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record of the DynamoDB stream event Lambda sends: GetRecords' record plus the stream's
    ARN, the creation time as epoch seconds (a number in Lambda's JSON, a datetime from boto3)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": change, "eventSourceARN": stream_arn, "awsRegion": region}


def first_failed(response: Any, records: list[dict[str, Any]], partial: bool) -> int | None:
    """Index of the first record Lambda delivers again after an invocation, or None.

    Stream mappings keep order: with ``ReportBatchItemFailures`` the lowest reported sequence
    number and everything after it are retried; a malformed response fails the whole batch.
    """
    if not partial or response is None:
        return None
    numbers = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    if not isinstance(failures, list):
        return 0
    if not failures:
        return None
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in numbers:
            return 0
        indexes.append(numbers.index(identifier))
    return min(indexes)


class DynamoStreamEventSourceMapping:
    """Reads a table's stream in order and invokes a function with batches, as Lambda's stream
    mapping does: a failed record is retried (with everything after it) until it succeeds or
    ``max_retry_attempts`` retries are spent, then the batch's description goes to the on-failure
    queue and reading moves on."""

    def __init__(
        self,
        streams: Any,
        sqs: Any,
        region: str,
        function: Invocable,
        source: StreamEventSource,
        retry_delay_s: float = 0.5,
    ) -> None:
        self.streams = streams
        self.sqs = sqs
        self.region = region
        self.function = function
        self.source = source
        self.retry_delay_s = retry_delay_s
        shards = streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"]["Shards"]
        self.shard_id = str(shards[0]["ShardId"])  # moto keeps one shard per table
        self.iterator = streams.get_shard_iterator(
            StreamArn=source.stream_arn, ShardId=self.shard_id, ShardIteratorType=source.starting_position
        )["ShardIterator"]
        self.pending: list[dict[str, Any]] = []  # read from the stream, not yet handled
        self.attempts = 0  # retries of the batch at the head of ``pending``
        self._retry_at = 0.0
        self.records_processed = 0
        self.records_failed = 0
        self.given_up = 0

    @classmethod
    def for_endpoint(
        cls, endpoint: AwsEndpoint, function: Invocable, source: StreamEventSource
    ) -> DynamoStreamEventSourceMapping:
        streams, sqs = endpoint.client("dynamodbstreams"), endpoint.client("sqs")
        return cls(streams, sqs, endpoint.region, function, source)

    def poll_once(self, wait_s: float = 1.0) -> int:
        """Invoke with the next batch (the failed one again, once its retry delay passed)."""
        if time.monotonic() < self._retry_at:
            return 0
        if len(self.pending) < self.source.batch_size:
            answer = self.streams.get_records(
                ShardIterator=self.iterator, Limit=self.source.batch_size - len(self.pending)
            )
            self.iterator = answer["NextShardIterator"]
            self.pending.extend(answer.get("Records", []))
        batch = self.pending[: self.source.batch_size]
        if not batch:
            return 0
        event = {"Records": [stream_record(r, self.source.stream_arn, self.region) for r in batch]}
        try:
            failed = first_failed(self.function.invoke(event), batch, self.source.report_batch_item_failures)
        except Exception:
            log.exception("%s failed; the stream batch of %d is retried", self.function.name, len(batch))
            failed = 0
        done = len(batch) if failed is None else failed
        del self.pending[:done]
        self.records_processed += done
        if failed is None:
            self.attempts = 0
            return len(batch)
        self.records_failed += len(batch) - done
        self.attempts += 1
        retries = self.source.max_retry_attempts
        if 0 <= retries < self.attempts:
            self._give_up(batch[done:])
        else:
            self._retry_at = time.monotonic() + self.retry_delay_s
        return len(batch)

    def _give_up(self, records: list[dict[str, Any]]) -> None:
        """Lambda's on-failure record for a stream batch: where it is, not the records themselves."""
        del self.pending[: len(records)]
        self.given_up += len(records)
        self.attempts = 0
        log.error("%s gave up on %d stream records", self.function.name, len(records))
        if not self.source.on_failure_queue_url:
            return
        info = {
            "shardId": self.shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "batchSize": len(records),
            "streamArn": self.source.stream_arn,
        }
        body = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.function.name},
            "version": "1.0",
            "DDBStreamBatchInfo": info,
        }
        self.sqs.send_message(QueueUrl=self.source.on_failure_queue_url, MessageBody=json.dumps(body))


class EventRuleSubscription:
    """An EventBridge rule with the function's pattern, delivering to a queue we then drain.

    Each event becomes one invocation (EventBridge invokes Lambda asynchronously, one event at a
    time). A failing invocation is retried through redelivery, then given up after
    ``max_attempts`` like Lambda's asynchronous retries.
    """

    def __init__(
        self,
        endpoint: AwsEndpoint,
        function: FunctionRuntime,
        source: EventRuleSource,
        name: str,
        max_attempts: int = 3,
        retry_visibility_s: int = 2,
    ) -> None:
        self.sqs = endpoint.client("sqs")
        self.events = endpoint.client("events")
        self.function = function
        self.source = source
        self.max_attempts = max_attempts
        self.retry_visibility_s = retry_visibility_s
        self.delivered = 0
        self.given_up: list[dict[str, Any]] = []
        self.queue_url, self.rule_name = subscribe_queue(
            self.sqs, self.events, name, source.bus_name, source.pattern
        )

    def poll_once(self, wait_s: float = 1.0) -> int:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=int(wait_s),
            AttributeNames=["All"],
        ).get("Messages", [])
        for message in messages:
            event = json.loads(message["Body"])
            attempt = int(message["Attributes"]["ApproximateReceiveCount"])
            try:
                self.function.invoke(event)
            except Exception:
                log.exception(
                    "%s failed on %s (attempt %d)", self.function.name, event.get("detail-type"), attempt
                )
                if attempt < self.max_attempts:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=message["ReceiptHandle"],
                        VisibilityTimeout=self.retry_visibility_s,
                    )
                    continue
                self.given_up.append(event)
            self.delivered += 1
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


class ScheduledInvocation:
    """A function's ``Schedule`` event: the scheduled event every ``every_s`` (the first one after
    ``every_s``, as a new rule's first firing), like EventBridge Scheduler's rule would."""

    def __init__(self, function: FunctionRuntime, every_s: float, region: str) -> None:
        self.function, self.every_s, self.region = function, every_s, region
        self.next_at = time.monotonic() + every_s
        self.runs = 0

    def poll_once(self) -> int:
        if time.monotonic() < self.next_at:
            return 0
        self.next_at = time.monotonic() + self.every_s
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{self.function.name}-schedule"],
            "detail": {},
        }
        try:
            self.function.invoke(event)
        except Exception:  # a failed run is logged; the next one comes on schedule, as on AWS
            log.exception("%s failed on its schedule", self.function.name)
        self.runs += 1
        return 1


def schedule_seconds(expression: str) -> float | None:
    """``rate(15 minutes)`` -> 900.0; None for a ``cron(...)`` (not played locally)."""
    import re

    match = re.fullmatch(r"\s*rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)\s*", expression)
    if match is None:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return float(int(match.group(1)) * unit)


def subscribe_queue(
    sqs: Any, events: Any, name: str, bus_name: str, pattern: Mapping[str, Any]
) -> tuple[str, str]:
    """Create a queue and a rule on ``bus_name`` that delivers matching events to it."""
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_name = f"{name}-rule"[:64]
    events.put_rule(Name=rule_name, EventBusName=bus_name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(
        Rule=rule_name, EventBusName=bus_name, Targets=[{"Id": "local-queue", "Arn": queue_arn}]
    )
    return queue_url, rule_name


def process_environment(functions: Mapping[str, FunctionSpec], endpoint: AwsEndpoint) -> dict[str, str]:
    """The environment this process needs to host the functions against the emulator."""
    env = merged_environment(functions)
    env.update(endpoint.environment())
    env.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BinCount")
    return env


def reset_handler_caches() -> None:
    """Forget the settings and clients the handlers cached for the previous environment.

    Lambda reads configuration once per execution environment; a local process that hosts one
    pipeline after another must drop those caches between them, or the next run talks to the
    previous (stopped) emulator.
    """
    for module_name, attribute in (
        ("bincount.settings", "get_settings"),
        ("batcher.app", "get_runtime"),
        ("collector.app", "get_runtime"),
        ("corrected.app", "get_runtime"),
        ("reconciler.app", "get_reconciler"),
    ):
        module = sys.modules.get(module_name)
        cached = getattr(module, attribute, None) if module else None
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()
