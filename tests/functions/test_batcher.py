"""Batcher handler on real-shaped SQS events: moto for S3/DynamoDB, Stubber for SageMaker
(moto's SageMaker accepts duplicate names and finishes jobs at once, real SageMaker does not)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from batcher import app
from bincount.batching import job_name
from bincount.settings import Settings
from bincount.staging import staged_name
from bincount.uploads import ImageObject
from bincount.wiring import Clients
from botocore.stub import Stubber
from pipeline_support import REGION, sqs_event, uploaded

PREFIX = "bincount-dev-"


@pytest.fixture
def sagemaker(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """A stubbed SageMaker client wired into the batcher; every call must be expected."""
    client = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(client)
    runtime = app.build_runtime(Settings.from_env(), Clients(sagemaker=client))
    monkeypatch.setattr(app, "get_runtime", lambda: runtime)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


def expect_in_flight(stubber: Stubber, running: int = 0) -> None:
    summaries = [
        {
            "TransformJobName": f"{PREFIX}{index:016x}",
            "TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{PREFIX}{index:016x}",
            "CreationTime": "2026-11-26T10:00:00Z",
            "TransformJobStatus": "InProgress",
        }
        for index in range(running)
    ]
    stubber.add_response(
        "list_transform_jobs",
        {"TransformJobSummaries": summaries},
        {"StatusEquals": "InProgress", "NameContains": PREFIX},
    )


def expected_request(stack: Any, name: str, content_type: str, images: int) -> dict[str, Any]:
    results = stack.results_bucket
    return {
        "TransformJobName": name,
        "ModelName": stack.outputs["ModelName"],
        "MaxConcurrentTransforms": 4,
        "MaxPayloadInMB": 20,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 1},
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": f"s3://{results}/manifests/{name}/manifest.json",
                }
            },
            "ContentType": content_type,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{results}/transform-output/{name}/",
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "Tags": [
            {"Key": "bincount:manifest", "Value": f"s3://{results}/manifests/{name}/manifest.json"},
            {"Key": "bincount:images", "Value": str(images)},
            {"Key": "bincount:environment", "Value": "dev"},
        ],
    }


def image_of(body: dict[str, Any]) -> ImageObject:
    """The upload a notification names (only what identity and staging look at)."""
    from urllib.parse import unquote_plus

    s3 = body["Records"][0]["s3"]
    return ImageObject(
        s3["bucket"]["name"],
        unquote_plus(s3["object"]["key"]),
        s3["object"]["eTag"],
        0,
        "",
        "",
        "",
        version_id=s3["object"].get("versionId", ""),
        sequencer=s3["object"].get("sequencer", ""),
    )


def name_for(*bodies: dict[str, Any]) -> str:
    return job_name([image_of(body) for body in bodies], prefix="bincount-dev")


def put(stack: Any, key: str, body: bytes = b"photo") -> dict[str, Any]:
    return uploaded(stack.ingest_bucket, key, body)


def created(name: str) -> dict[str, str]:
    return {"TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{name}"}


def expect_job(stubber: Stubber, stack: Any, name: str, images: int) -> None:
    """SageMaker is asked, exactly, for this job of JPEG photos and starts it."""
    request = expected_request(stack, name, "image/jpeg", images)
    stubber.add_response("create_transform_job", created(name), request)


def failures(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def jobs_table(stack: Any) -> Any:
    return boto3.resource("dynamodb", region_name=REGION).Table(stack.outputs["JobsTableName"])


def test_test_event_is_acknowledged_without_any_call(
    sagemaker: Stubber, event_file: Any, context: Any
) -> None:
    assert app.handler(event_file("sqs_s3_test_event.json"), context) == {"batchItemFailures": []}


def test_sample_event_starts_one_job_with_the_exact_request(
    stack: Any, sagemaker: Stubber, event_file: Any, context: Any
) -> None:
    event = event_file("sqs_s3_object_created.json")
    bodies = []
    for record in event["Records"]:  # the sample's objects, uploaded: their versions are moto's
        body = json.loads(record["body"])
        (s3_record,) = body["Records"]
        notified = put(stack, image_of(body).key, b"sample photo")["Records"][0]["s3"]["object"]
        s3_record["s3"]["object"].update(versionId=notified["versionId"], eTag=notified["eTag"])
        record["body"] = json.dumps(body)
        bodies.append(body)
    name = name_for(*bodies)
    expect_in_flight(sagemaker)
    expect_job(sagemaker, stack, name, images=2)

    assert app.handler(event, context) == {"batchItemFailures": []}

    s3 = boto3.client("s3", region_name=REGION)
    manifest = json.loads(
        s3.get_object(Bucket=stack.results_bucket, Key=f"manifests/{name}/manifest.json")["Body"].read()
    )
    # The job reads immutable copies of the notified versions, in key order.
    assert manifest == [
        {"prefix": f"s3://{stack.results_bucket}/staging/"},
        staged_name(image_of(bodies[1])),
        staged_name(image_of(bodies[0])),
    ]
    images = json.loads(
        s3.get_object(Bucket=stack.results_bucket, Key=f"manifests/{name}/images.json")["Body"].read()
    )
    assert {i["bin_id"]: i["captured_at"] for i in images["images"]} == {
        "BIN 0043": "2026-11-26T10:16:41.007Z",
        "BIN-0042": "2026-11-26T10:15:00.000Z",
    }
    job = jobs_table(stack).get_item(Key={"pk": name})["Item"]
    assert (job["status"], job["image_count"]) == ("InProgress", 2)


def test_duplicate_deliveries_start_one_job(stack: Any, sagemaker: Stubber, context: Any) -> None:
    body = put(stack, "incoming/B1/a.jpg")
    name = name_for(body)
    expect_in_flight(sagemaker)
    expect_job(sagemaker, stack, name, images=1)
    # The same notification three times in one batch, then the batch redelivered twice.
    event = sqs_event(("m1", body), ("m2", body), ("m3", body))
    assert app.handler(event, context) == {"batchItemFailures": []}
    for _ in range(2):
        expect_in_flight(sagemaker)  # the jobs table answers; SageMaker is not asked again
        assert app.handler(event, context) == {"batchItemFailures": []}


def test_existing_job_name_counts_as_success(stack: Any, sagemaker: Stubber, context: Any) -> None:
    """A job created by a delivery that crashed before recording it: ResourceInUse, then recorded."""
    body = put(stack, "incoming/B1/a.jpg")
    name = name_for(body)
    expect_in_flight(sagemaker)
    sagemaker.add_client_error(
        "create_transform_job",
        service_error_code="ResourceInUse",
        service_message=f"Job name must be unique within an AWS account and region, and a job with this name "
        f"{name} already exists",
        http_status_code=400,
    )
    event = sqs_event(("m1", body))
    assert app.handler(event, context) == {"batchItemFailures": []}
    assert jobs_table(stack).get_item(Key={"pk": name})["Item"]["status"] == "InProgress"


def test_throttled_chunk_fails_exactly_its_messages(stack: Any, sagemaker: Stubber, context: Any) -> None:
    bucket = stack.ingest_bucket
    a, b, c = (
        put(stack, "incoming/B1/a.jpg"),
        put(stack, "incoming/B2/b.jpg"),
        put(stack, "incoming/B3/c.png"),
    )
    event = sqs_event(
        ("jpeg-1", a),
        ("jpeg-2", b),
        ("png-1", c),
        ("test", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}),
    )
    jpeg = name_for(a, b)
    expect_in_flight(sagemaker)
    expect_job(sagemaker, stack, jpeg, images=2)
    sagemaker.add_client_error(
        "create_transform_job", service_error_code="ThrottlingException", service_message="Rate exceeded"
    )
    assert failures(app.handler(event, context)) == {"png-1"}


def test_quota_refusal_defers_every_remaining_chunk(stack: Any, sagemaker: Stubber, context: Any) -> None:
    jpeg, png = put(stack, "incoming/B1/a.jpg"), put(stack, "incoming/B3/c.png")
    event = sqs_event(("jpeg", jpeg), ("png", png))
    expect_in_flight(sagemaker)
    sagemaker.add_client_error(
        "create_transform_job",
        service_error_code="ResourceLimitExceeded",
        service_message="The account-level service limit 'ml.g4dn.xlarge for transform job usage' is 0",
    )
    # Only one create call: the png chunk is not even tried.
    assert failures(app.handler(event, context)) == {"jpeg", "png"}
    assert "Item" not in jobs_table(stack).get_item(Key={"pk": name_for(jpeg)})


def test_over_the_cap_messages_wait_in_sqs(stack: Any, sagemaker: Stubber, context: Any) -> None:
    expect_in_flight(sagemaker, running=4)
    event = sqs_event(("m1", put(stack, "incoming/B1/a.jpg")))
    assert failures(app.handler(event, context)) == {"m1"}


def test_malformed_body_fails_only_itself(stack: Any, sagemaker: Stubber, context: Any) -> None:
    good = put(stack, "incoming/B1/a.jpg")
    name = name_for(good)
    expect_in_flight(sagemaker)
    expect_job(sagemaker, stack, name, images=1)
    event = sqs_event(("good", good), ("bad", {}))
    event["Records"][1]["body"] = "{not json"
    assert failures(app.handler(event, context)) == {"bad"}


def test_waiting_messages_are_backed_off(stack: Any, sagemaker: Stubber, context: Any) -> None:
    """Over the cap, the real SQS message's visibility is extended (backoff by receive count)."""
    sqs = boto3.client("sqs", region_name=REGION)
    url = stack.outputs["IngestQueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(put(stack, "incoming/B/a.jpg")))
    message = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, AttributeNames=["All"])["Messages"][0]
    event = sqs_event((message["MessageId"], json.loads(message["Body"])))
    event["Records"][0]["receiptHandle"] = message["ReceiptHandle"]
    expect_in_flight(sagemaker, running=4)
    assert failures(app.handler(event, context)) == {message["MessageId"]}
    # Visibility was 0; now the message is hidden for the backoff period.
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
