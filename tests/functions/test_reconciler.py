"""Reconciler and retry queue against the stack in moto (SQS, DynamoDB index, S3, EventBridge);
Stubber for SageMaker's job states and CreateTransformJob."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from bincount.count_records import image_record_sk
from bincount.settings import Settings
from bincount.wiring import Clients
from botocore.stub import ANY, Stubber
from collector import app as collector_app
from pipeline_support import REGION, count_record, drain, job_event, stage_job
from reconciler import app as reconciler_app
from test_collector import REQUEST_KEYS, by_type, items, photo

CAPACITY = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)


def description(name: str, status: str, results_bucket: str, reason: str = "") -> dict[str, Any]:
    ended = datetime.now(UTC) - timedelta(hours=1)
    return {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{name}",
        "TransformJobStatus": status,
        "FailureReason": reason,
        "ModelName": "bincount-model",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": f"s3://{results_bucket}/manifests/{name}/manifest.json",
                }
            }
        },
        "TransformOutput": {"S3OutputPath": f"s3://{results_bucket}/transform-output/{name}/"},
        "TransformResources": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1},
        "CreationTime": ended - timedelta(minutes=10),
        "TransformEndTime": ended,
    }


def reconcile(sagemaker: Any) -> dict[str, Any]:
    reconciler = reconciler_app.build_reconciler(
        Settings.from_env(), Clients(sagemaker=sagemaker), sleep=lambda _: None
    )
    return reconciler_app.process({"source": "aws.events", "detail-type": "Scheduled Event"}, reconciler)


def reconcile_resubmitting(retry_name: str) -> dict[str, Any]:
    """One reconciler run whose SageMaker, stubbed, sees no job running and takes the creation of
    ``retry_name`` (every request key present); the stub must have been used up."""
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    stubber.add_response(
        "create_transform_job",
        {"TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{retry_name}"},
        {"TransformJobName": retry_name, **{key: ANY for key in REQUEST_KEYS}},
    )
    with stubber:
        reconciled = reconcile(sagemaker)
    stubber.assert_no_pending_responses()
    return reconciled


def test_job_whose_event_never_came_is_collected(stack: Any, bus_queue: str) -> None:
    a, b = photo(stack, "B1", "a"), photo(stack, "B2", "b")
    name, _ = stage_job([a, b], {a.key: count_record(3), b.key: count_record(1)})  # no event delivered
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response(
        "describe_transform_job",
        description(name, "Completed", stack.results_bucket),
        {"TransformJobName": name},
    )
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    with stubber:
        summary = reconcile(sagemaker)
    stubber.assert_no_pending_responses()

    assert (summary["in_flight"], summary["collected"], summary["problems"]) == (1, [name], [])
    assert items(stack, "B1")["LATEST"]["count"] == 3 and image_record_sk(b) in items(stack, "B2")
    assert sorted(d["bin_id"] for d in by_type(drain(bus_queue), "Bin Count Updated")) == ["B1", "B2"]
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    with stubber:
        assert reconcile(sagemaker)["in_flight"] == 0  # collected: off the InFlight index


def test_capacity_failure_waits_in_the_retry_queue_and_the_reconciler_restarts_it(
    stack: Any, bus_queue: str, quick_retries: None, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [photo(stack, f"B{i}", "x") for i in range(4)]
    name, _ = stage_job(images, {})
    runtime = collector_app.build_runtime(Settings.from_env(), sleep=lambda _: None)
    monkeypatch.setattr(collector_app, "get_runtime", lambda: runtime)
    summary = collector_app.handler(job_event(name, "Failed", stack.results_bucket, CAPACITY), context)
    assert summary["failure_kind"] == "transient" and summary["rejected"] == 0
    (retry_name,) = summary["waiting_jobs"]
    assert retry_name.endswith("-r1") and summary["redriven_jobs"] == {retry_name: "deferred"}

    reconciled = reconcile_resubmitting(retry_name)
    assert reconciled["resubmitted"] == [retry_name] and reconciled["problems"] == []
    assert all(image_record_sk(image) not in items(stack, image.bin_id) for image in images)
    assert by_type(drain(bus_queue), "Bin Image Rejected") == []
    sqs = boto3.client("sqs", region_name=REGION)
    left = sqs.get_queue_attributes(QueueUrl=stack.outputs["RetryQueueUrl"], AttributeNames=["All"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert left["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


@pytest.mark.parametrize(
    "reason",
    [
        "AlgorithmError: Model container failed to respond to ping. Please ensure /ping endpoint is "
        "implemented and responds with an HTTP 200 status code",
        "ClientError: 3 of 4 records failed; first: x.jpg: model server did not answer: "
        "<urlopen error [Errno 111] Connection refused>",
        "ClientError: Worker died.",
    ],
)
def test_a_container_failure_mid_job_retries_the_rest_whole_and_rejects_none(
    stack: Any,
    bus_queue: str,
    quick_retries: None,
    context: Any,
    monkeypatch: pytest.MonkeyPatch,
    reason: str,
) -> None:
    images = [photo(stack, f"B{i}", "x") for i in range(4)]
    name, _ = stage_job(images, {images[0].key: count_record(2)})  # answered before the container died
    runtime = collector_app.build_runtime(Settings.from_env(), sleep=lambda _: None)
    monkeypatch.setattr(collector_app, "get_runtime", lambda: runtime)
    summary = collector_app.handler(job_event(name, "Failed", stack.results_bucket, reason), context)
    assert (summary["failure_kind"], summary["counted"], summary["rejected"]) == ("container", 1, 0)
    assert summary["redriven_images"] == 0  # nothing split
    ((retry_name, waiting),) = summary["waiting_jobs"].items()
    assert retry_name.endswith("-r1") and waiting == 3

    assert reconcile_resubmitting(retry_name)["resubmitted"] == [retry_name]

    s3 = boto3.client("s3", region_name=REGION)  # the retry runs on a healthy container
    for image in images[1:]:
        key = f"transform-output/{retry_name}/{image.manifest_entry}.out"
        s3.put_object(Bucket=stack.results_bucket, Key=key, Body=b'{"count": 1, "confidence": 0.9}')
    done = collector_app.handler(job_event(retry_name, "Completed", stack.results_bucket), context)
    assert (done["counted"], done["rejected"]) == (3, 0)
    assert all(items(stack, image.bin_id)[image_record_sk(image)]["outcome"] == "count" for image in images)
    assert by_type(drain(bus_queue), "Bin Image Rejected") == []
