"""Corrections Lambda: the counts table's stream → the bin's LATEST follows a human label, and
``Bin Count Corrected`` goes to the inventory bus.

Handler ``corrected.app.handler``. A reviewer only writes a label on a record (ReviewerPolicy);
this function publishes what the table then holds, so the bus never hears a count no record
carries. Powertools' batch processing reports each failed stream record (the event source mapping
retries from the first of them, then hands the batch to the on-failure queue); a record whose
label fields are malformed is logged and skipped, since no retry can make it a label.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from bincount.adapters.dynamodb import DynamoCountStore
from bincount.adapters.eventbridge import EventBridgeSender
from bincount.corrections import CorrectionPublisher, MalformedRecord, label_change
from bincount.settings import get_settings
from bincount.wiring import Clients

logger = Logger()
metrics = Metrics()


@dataclass
class CorrectedRuntime:
    publisher: CorrectionPublisher
    processor: BatchProcessor


def build_runtime(table: Any, events_client: Any, bus_name: str) -> CorrectedRuntime:
    """Wire the publisher; tests pass their own table and client."""
    publisher = CorrectionPublisher(DynamoCountStore(table), EventBridgeSender(events_client), bus_name)
    return CorrectedRuntime(publisher, BatchProcessor(event_type=EventType.DynamoDBStreams))


@lru_cache(maxsize=1)
def get_runtime() -> CorrectedRuntime:
    settings = get_settings()
    clients = Clients()
    return build_runtime(
        clients.dynamodb.Table(settings.counts_table), clients.events, settings.event_bus_name
    )


def publish_change(record: DynamoDBRecord, publisher: CorrectionPublisher) -> None:
    """One stream record: publish the label it saved, if it saved one (raises to retry it)."""
    change = record.dynamodb
    if change is None:
        return
    try:
        label = label_change(change.old_image or {}, change.new_image or {})
    except MalformedRecord as error:
        logger.error("malformed label not published", error=str(error))
        metrics.add_metric(name="MalformedLabels", unit=MetricUnit.Count, value=1)
        return
    if label is None:
        return
    event = publisher.publish(change.new_image, label)
    logger.info(
        "correction published",
        bin_id=event.bin_id,
        image_key=event.image.key,
        count=str(label),
        latest_updated=event.latest_updated,
    )
    metrics.add_metric(name="CorrectionsPublished", unit=MetricUnit.Count, value=1)


def process(event: dict[str, Any], runtime: CorrectedRuntime, context: Any = None) -> dict[str, Any]:
    """The stream batch through Powertools' processor: ``batchItemFailures`` names the records to
    deliver again (the first failed one and everything after it, by Lambda's stream rules)."""
    response = process_partial_response(
        event=event,
        record_handler=lambda record: publish_change(record, runtime.publisher),
        processor=runtime.processor,
        context=context,
    )
    return dict(response)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process(event, get_runtime(), context)
