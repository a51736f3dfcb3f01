"""The local stack and Lambda service against a real moto server process and a small template."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from bincount.job_events import DETAIL_TYPE

from local.lambda_runtime import (
    EventRuleSubscription,
    FunctionRuntime,
    SqsEventSourceMapping,
    failed_message_ids,
)
from local.moto_server import AwsEndpoint
from local.stack import LocalStack


@pytest.fixture()
def stack(moto_endpoint: AwsEndpoint, fixture_template: Path) -> Iterator[LocalStack]:
    name = f"t{uuid.uuid4().hex[:8]}"
    created = LocalStack(moto_endpoint, fixture_template, name, {"Environment": name}).create()
    yield created
    moto_endpoint.client("cloudformation").delete_stack(StackName=name)


@pytest.fixture()
def recorder() -> Iterator[object]:
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixture_stack"))
    module = importlib.import_module("recorder.app")
    module.EVENTS.clear()
    module.FAIL_BODIES_CONTAINING.clear()
    yield module


def test_stack_names_come_from_the_template(stack: LocalStack) -> None:
    bucket = stack.outputs["IngestBucketName"]
    assert bucket == f"bincount-ingest-{stack.stack_name}-123456789012"
    # moto's CloudFormation ignores VersioningConfiguration; the local stack applies it.
    assert stack.endpoint.client("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    functions = stack.functions()
    batcher = functions["Batcher"]
    assert batcher.environment["EVENT_BUS_NAME"] == f"bincount-{stack.stack_name}"
    assert batcher.environment["POWERTOOLS_SERVICE_NAME"] == "bincount"  # from Globals
    assert (
        batcher.environment["QUEUE_URL"].endswith("IngestQueue")
        or "IngestQueue" in batcher.environment["QUEUE_URL"]
    )
    (source,) = batcher.sqs_sources
    assert (source.batch_size, source.batching_window_s, source.report_batch_item_failures) == (5, 30.0, True)
    (rule,) = functions["Collector"].rule_sources
    assert rule.bus_name == "default" and rule.pattern["source"] == ["aws.sagemaker"]


def test_s3_notification_reaches_the_handler_in_lambdas_event_shape(
    stack: LocalStack, moto_endpoint: AwsEndpoint, recorder: object
) -> None:
    s3 = moto_endpoint.client("s3")
    bucket = stack.outputs["IngestBucketName"]
    for name in ("keep", "fail"):
        s3.put_object(Bucket=bucket, Key=f"incoming/BIN-1/{name} photo.jpg", Body=b"x")
    s3.put_object(Bucket=bucket, Key="elsewhere/BIN-1/ignored.jpg", Body=b"x")
    spec = stack.functions()["Batcher"]
    runtime = FunctionRuntime(spec, moto_endpoint.region)
    recorder.FAIL_BODIES_CONTAINING.append("fail")  # type: ignore[attr-defined]
    mapping = SqsEventSourceMapping(moto_endpoint, runtime, spec.sqs_sources[0], batching_window_s=0.5)

    seen_keys: list[str] = []
    deadline = time.monotonic() + 10
    while len(seen_keys) < 2 and time.monotonic() < deadline:
        mapping.poll_once(wait_s=1)
        seen_keys = [
            unquote_plus(s3_record["s3"]["object"]["key"])
            for event in recorder.EVENTS  # type: ignore[attr-defined]
            for record in event["Records"]
            for s3_record in json.loads(record["body"]).get("Records", [])
        ]
    assert sorted(seen_keys) == ["incoming/BIN-1/fail photo.jpg", "incoming/BIN-1/keep photo.jpg"]
    record = recorder.EVENTS[-1]["Records"][0]  # type: ignore[attr-defined]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == spec.sqs_sources[0].queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    # the failed item stays on the queue, the other one is deleted
    assert mapping.records_failed >= 1
    attrs = moto_endpoint.client("sqs").get_queue_attributes(
        QueueUrl=spec.sqs_sources[0].queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_sagemaker_state_change_routed_to_the_function(
    stack: LocalStack, moto_endpoint: AwsEndpoint, recorder: object
) -> None:
    spec = stack.functions()["Collector"]
    runtime = FunctionRuntime(spec, moto_endpoint.region)
    subscription = EventRuleSubscription(
        moto_endpoint, runtime, spec.rule_sources[0], f"{stack.stack_name}-collector"
    )
    moto_endpoint.client("events").put_events(
        Entries=[
            {
                "Source": "aws.sagemaker",
                "DetailType": DETAIL_TYPE,
                "Detail": json.dumps({"TransformJobName": "bincount-x", "TransformJobStatus": "Completed"}),
            },
            {"Source": "someone.else", "DetailType": "Other", "Detail": "{}"},
        ]
    )
    subscription.poll_once(wait_s=2)
    (event,) = recorder.EVENTS  # type: ignore[attr-defined]
    assert event["detail"]["TransformJobName"] == "bincount-x"
    assert event["detail-type"] == DETAIL_TYPE


@pytest.mark.parametrize(
    ("response", "partial", "kept"),
    [
        (None, True, set()),
        ({"batchItemFailures": []}, True, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, True, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, True, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, True, {"a", "b"}),
        ("not a dict", True, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, False, set()),
    ],
)
def test_partial_batch_response_rules(response: object, partial: bool, kept: set[str]) -> None:
    assert failed_message_ids(response, ["a", "b"], partial) == kept
