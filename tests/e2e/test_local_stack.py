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
from bincount.settings import OUTPUT_OF_VARIABLE, environment_from_outputs

from local.emulator.lambda_runtime import (
    DynamoStreamEventSourceMapping,
    EventRuleSubscription,
    FunctionRuntime,
    SqsEventSourceMapping,
    failed_message_ids,
    first_failed,
    process_environment,
    reset_handler_caches,
    subscribe_queue,
)
from local.emulator.moto_server import AwsEndpoint, patched_environ
from local.emulator.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template_stack(moto_endpoint: AwsEndpoint) -> LocalStack:
    """template.yaml's stack, created once: some of its names (log groups) do not vary by environment."""
    name = f"t{uuid.uuid4().hex[:8]}"
    return LocalStack(moto_endpoint, REPO / "template.yaml", name, {"Environment": name}).create()


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


def stream_records(*numbers: str) -> list[dict[str, object]]:
    return [{"dynamodb": {"SequenceNumber": number}} for number in numbers]


@pytest.mark.parametrize(
    ("response", "partial", "first"),
    [
        (None, True, None),
        ({"batchItemFailures": []}, True, None),
        ({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}, True, 1),
        ({"batchItemFailures": [{"itemIdentifier": "9"}]}, True, 0),
        ("not a dict", True, 0),
        ({"batchItemFailures": [{"itemIdentifier": "2"}]}, False, None),
    ],
)
def test_stream_partial_batch_rules(response: object, partial: bool, first: int | None) -> None:
    """A stream is retried from its lowest failed record on (order is kept), unlike SQS."""
    assert first_failed(response, stream_records("1", "2", "3"), partial) == first


def test_a_saved_label_reaches_the_bus_through_the_counts_table_stream(
    moto_endpoint: AwsEndpoint, template_stack: LocalStack
) -> None:
    """template.yaml's CorrectedFunction on the local stack: moto's DynamoDB stream, the mapping
    the template declares, the real handler, the event on the inventory bus."""
    stack = template_stack
    name = stack.stack_name
    functions = stack.functions()
    spec = functions["CorrectedFunction"]
    (source,) = spec.stream_sources
    assert source.stream_arn.startswith("arn:aws:dynamodb:") and "/stream/" in source.stream_arn
    assert source.report_batch_item_failures and source.on_failure_queue_url.endswith(
        f"bincount-corrections-dlq-{name}"
    )
    bus = stack.outputs["EventBusName"]
    listener, _ = subscribe_queue(
        moto_endpoint.client("sqs"),
        moto_endpoint.client("events"),
        f"{name}-listen",
        bus,
        {"source": ["bincount"]},
    )
    dynamodb = moto_endpoint.client("dynamodb")
    table = stack.outputs["CountsTableName"]
    record = {
        "pk": {"S": "BIN#BIN-1"},
        "sk": {"S": "IMAGE#incoming/BIN-1/20261126T100000Z-cam1.jpg#v1"},
        "bin_id": {"S": "BIN-1"},
        "image_bucket": {"S": stack.outputs["IngestBucketName"]},
        "image_key": {"S": "incoming/BIN-1/20261126T100000Z-cam1.jpg"},
        "image_version": {"S": "v1"},
        "etag": {"S": "e1"},
        "captured_at": {"S": "2026-11-26T10:00:00.000Z"},
        "count": {"N": "3"},
        "model_version": {"S": "m1"},
    }
    dynamodb.put_item(TableName=table, Item=record)
    with patched_environ(process_environment(functions, moto_endpoint)):
        reset_handler_caches()
        try:
            mapping = DynamoStreamEventSourceMapping.for_endpoint(
                moto_endpoint, FunctionRuntime(spec, "us-east-1"), source
            )
            dynamodb.update_item(  # what the console's label write sets
                TableName=table,
                Key={"pk": record["pk"], "sk": record["sk"]},
                UpdateExpression="SET human_count = :c, human_count_is_lower_bound = :f, "
                "reviewer = :r, reviewed_at = :t",
                ExpressionAttributeValues={
                    ":c": {"N": "4"},
                    ":f": {"BOOL": False},
                    ":r": {"S": "alice"},
                    ":t": {"S": "2026-12-01T00:00:00.000Z"},
                },
            )
            while mapping.poll_once():
                pass
        finally:
            reset_handler_caches()
    # the INSERT, the label, and LATEST's own change (which comes back through the stream, ignored)
    assert mapping.records_processed >= 3 and mapping.records_failed == 0
    messages = moto_endpoint.client("sqs").receive_message(QueueUrl=listener, WaitTimeSeconds=2)["Messages"]
    (event,) = [json.loads(message["Body"]) for message in messages]
    assert event["detail-type"] == "Bin Count Corrected"
    assert (event["detail"]["count"], event["detail"]["model_count"], event["detail"]["reviewer"]) == (
        4,
        3,
        "alice",
    )
    assert event["detail"]["latest_updated"] is True  # the bin had no LATEST: the label is it now
    latest = dynamodb.get_item(TableName=table, Key={"pk": record["pk"], "sk": {"S": "LATEST"}})["Item"]
    assert latest["count"] == {"N": "4"} and latest["human_label"]["M"]["reviewer"] == {"S": "alice"}


def test_the_outputs_give_the_functions_the_environment_the_template_does(template_stack: LocalStack) -> None:
    """bincount.settings.environment_from_outputs (the tests', the CLI's) against what the local
    stack resolves from template.yaml: every variable it maps is one some function has, with the
    same value."""
    stack = template_stack
    from_outputs = environment_from_outputs(stack.outputs)
    seen: set[str] = set()
    for spec in stack.functions().values():
        shared = set(spec.environment) & set(from_outputs)
        assert {k: spec.environment[k] for k in shared} == {k: from_outputs[k] for k in shared}, spec
        seen |= shared
    assert seen == set(OUTPUT_OF_VARIABLE)
