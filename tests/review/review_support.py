"""Helpers of the review tools' tests (importable by name: tests/review is on sys.path under pytest):
template.yaml created in moto, photos seeded the way the collector writes them (same record
builders, same conditional writes), the corrections function fed by the counts table's stream (as
the local stack's mapping feeds it), and a listener on the inventory bus to observe the events a
consumer would get."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from bincount.adapters.dynamodb import DynamoCountStore
from bincount.count_records import (
    LatestState,
    decide_latest,
    image_item,
    image_record_sk,
    latest_attributes,
    outcome_for,
)
from bincount.serving_records import CountResult, ErrorResult, ResultRecord
from bincount.timefmt import now
from bincount.uploads import ImageObject
from imaging import draw_bin, encode

from cli.review.service import counts_table
from cli.stack import StackResources, resolve_deployed
from local.emulator.lambda_runtime import DynamoStreamEventSourceMapping
from local.emulator.stack import LOCAL_PARAMETER_VALUES, StreamEventSource

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
STACK_NAME = "bincount-review-test"
MODEL_VERSION = "bincount-efficientnet_lite0-2026.11.26"
THRESHOLD = 0.5

# mock_aws() puts fake keys in the environment while it runs; clients without a region need one
os.environ["AWS_DEFAULT_REGION"] = REGION
# The corrections function's Powertools Metrics read the namespace once, at import (as in Lambda,
# where the template sets it): set before this process imports corrected.app.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "BinCount/test")


def probabilities_for(count: int, confidence: float, classes: int = 6) -> list[float]:
    rest = (1.0 - confidence) / (classes - 1)
    return [confidence if k == min(count, classes - 1) else rest for k in range(classes)]


@dataclass
class ReviewStack:
    """The stack in moto plus helpers to put photos in it and read what happened."""

    resources: StackResources
    listener_url: str
    seeded: list[ImageObject] = field(default_factory=list)

    # One client per stack, not per call: a test seeds ~8 photos, and creating a boto3 client or
    # resource costs about as much as the moto call it makes.
    @cached_property
    def table(self) -> Any:
        return counts_table(self.resources)

    @cached_property
    def s3(self) -> Any:
        return boto3.client("s3")

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    @cached_property
    def store(self) -> DynamoCountStore:
        return DynamoCountStore(self.table)

    @cached_property
    def corrections(self) -> DynamoStreamEventSourceMapping:
        """The counts table's stream → the corrections function (template.yaml's CorrectedFunction)."""
        return corrections_mapping(self.resources, CorrectionsFunction(self.resources))

    def deliver(self) -> int:
        """Hand every stream record written so far to the corrections function; records handed."""
        handed = 0
        while True:
            polled = self.corrections.poll_once()
            if not polled and not self.corrections.pending:
                return handed
            handed += polled

    def photo(
        self,
        bin_id: str,
        stamp: str,
        count: int | None,
        confidence: float = 0.9,
        error: str = "",
        drawn: int | None = None,
        body: bytes | None = None,
        content_type: str = "image/jpeg",
    ) -> ImageObject:
        """Upload a generated photo (a new object version of the key: the ingest bucket is versioned)
        and record the model's result as the collector does, under that upload's identity.
        ``body``/``content_type``: what an uploader chose instead (anything, e.g. an HTML page)."""
        key = f"{self.resources.ingest_prefix}{bin_id}/{stamp}-cam1.jpg"
        if body is None:
            body = encode(draw_bin(drawn if drawn is not None else count or 0, seed=len(self.seeded) + 1))
        put = self.s3.put_object(
            Bucket=self.resources.ingest_bucket, Key=key, Body=body, ContentType=content_type
        )
        captured = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}.000Z"
        image = ImageObject(
            self.resources.ingest_bucket,
            key,
            put["ETag"].strip('"'),
            len(body),
            bin_id,
            captured,
            "image/jpeg",
            version_id=put.get("VersionId", ""),
            uploaded_at=now(),
        )
        result: ResultRecord
        if error:
            result = ErrorResult(error, "the transform job failed", MODEL_VERSION)
        else:
            assert count is not None
            top = count >= 5
            result = CountResult(
                min(count, 5), confidence, tuple(probabilities_for(count, confidence)), top, MODEL_VERSION
            )
        self.record(image, result)
        self.seeded.append(image)
        return image

    def record(
        self, image: ImageObject, result: ResultRecord, job: str = "bincount-dev-0123456789abcdef"
    ) -> bool:
        """The collector's writes for one outcome: LATEST if newer, then the image record."""
        outcome = outcome_for(image, result, job, THRESHOLD)
        if isinstance(result, CountResult):
            held = LatestState.from_item(self.store.get_latest(image.bin_id))
            if decide_latest(held, image).value == "apply":
                attributes = latest_attributes(outcome, held.count if held else None, image.captured_at)
                assert self.store.put_latest(image.bin_id, attributes, held.version if held else None)
        return self.store.put_image(image_item(outcome, image.captured_at))

    def reset(self) -> None:
        """Empty the table, the bucket and the listener: the next test starts from nothing."""
        with self.table.batch_writer() as batch:
            for item in self.table.scan(ProjectionExpression="pk, sk")["Items"]:
                batch.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
        self.deliver()  # what earlier tests wrote, out of the way
        versions = self.s3.list_object_versions(Bucket=self.resources.ingest_bucket)
        for item in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            self.s3.delete_object(
                Bucket=self.resources.ingest_bucket, Key=item["Key"], VersionId=item["VersionId"]
            )
        self.events()
        self.seeded.clear()

    def expect(self, bin_id: str, quantity: int) -> None:
        """An inventory system's expected quantity on the bin's LATEST item."""
        self.table.update_item(
            Key={"pk": f"BIN#{bin_id}", "sk": "LATEST"},
            UpdateExpression="SET expected_quantity = :q",
            ExpressionAttributeValues={":q": quantity},
        )

    def image(self, image: ImageObject) -> dict[str, Any]:
        item = self.store.get_image(image.bin_id, sk(image))
        assert item is not None
        return item

    def latest(self, bin_id: str) -> dict[str, Any]:
        """The bin's LATEST once the corrections function has followed every saved label."""
        self.deliver()
        item = self.store.get_latest(bin_id)
        assert item is not None
        return item

    def events(self, detail_type: str = "Bin Count Corrected") -> list[dict[str, Any]]:
        """Events delivered to the listener so far (consumed), of one type, once the corrections
        function has published every saved label."""
        self.deliver()
        delivered = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.listener_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not messages:
                break
            for message in messages:
                delivered.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.listener_url, ReceiptHandle=message["ReceiptHandle"])
        return [event for event in delivered if event["detail-type"] == detail_type]


def sk(image: ImageObject) -> str:
    """The record sort key of one upload, as the collector writes it."""
    return image_record_sk(image)


def create_stack() -> StackResources:
    """template.yaml in moto's CloudFormation; StackResources from its outputs."""
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName=STACK_NAME,
        TemplateBody=(REPO / "template.yaml").read_text(),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in LOCAL_PARAMETER_VALUES.items()],
    )
    resources = resolve_deployed(STACK_NAME, REGION)  # what `--stack NAME --region R` resolves
    # template.yaml versions the ingest bucket; moto's CloudFormation skips VersioningConfiguration
    boto3.client("s3").put_bucket_versioning(
        Bucket=resources.ingest_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return resources


def listen(bus: str) -> str:
    """An SQS queue subscribed to every Bin Count event on the bus (moto delivers)."""
    sqs = boto3.client("sqs")
    events = boto3.client("events")
    url = sqs.create_queue(QueueName="review-listener")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="review-all", EventBusName=bus, EventPattern=json.dumps({"source": ["bincount"]}))
    events.put_targets(Rule="review-all", EventBusName=bus, Targets=[{"Id": "listener", "Arn": arn}])
    return str(url)


class CorrectionsFunction:
    """The corrections function's handler logic in this process, on the stack's table and bus."""

    name = "CorrectedFunction"

    def __init__(self, resources: StackResources, sender: Any = None) -> None:
        from corrected.app import build_runtime

        self.runtime = build_runtime(counts_table(resources), boto3.client("events"), resources.event_bus)
        if sender is not None:
            self.runtime.publisher.sender = sender
        self.invocations = 0

    def invoke(self, event: dict[str, Any]) -> Any:
        from corrected.app import process

        self.invocations += 1
        return process(event, self.runtime)


def corrections_mapping(
    resources: StackResources,
    function: Any,
    max_retry_attempts: int = 10,
    on_failure_queue_url: str = "",
    starting_position: str = "TRIM_HORIZON",
) -> DynamoStreamEventSourceMapping:
    """A stream mapping as template.yaml declares CorrectedFunction's (from the stream's start,
    or ``LATEST``: only what is written from now on)."""
    table = boto3.client("dynamodb").describe_table(TableName=resources.counts_table)["Table"]
    source = StreamEventSource(
        stream_arn=table["LatestStreamArn"],
        batch_size=100,
        starting_position=starting_position,
        max_retry_attempts=max_retry_attempts,
        report_batch_item_failures=True,
        on_failure_queue_url=on_failure_queue_url,
    )
    return DynamoStreamEventSourceMapping(
        boto3.client("dynamodbstreams"), boto3.client("sqs"), REGION, function, source, retry_delay_s=0.0
    )
