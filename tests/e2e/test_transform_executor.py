"""The local Batch Transform executor with a fake model server, against the moto server."""

from __future__ import annotations

import json
import uuid

import pytest
from bincount.job_events import DETAIL_TYPE

from local.emulator.lambda_runtime import subscribe_queue
from local.emulator.moto_server import AwsEndpoint
from local.emulator.transform_executor import (
    JobOutcome,
    RecordFailure,
    TransformExecutor,
    busy_seconds,
    failure_reason,
    output_key,
    requests_in_flight,
)


def test_output_key_is_relative_key_plus_out() -> None:
    assert output_key("s3://r/transform-output/job-1", "BIN-1/a.jpg") == (
        "r",
        "transform-output/job-1/BIN-1/a.jpg.out",
    )
    assert output_key("s3://r/", "a.jpg") == ("r", "a.jpg.out")


def test_a_server_that_did_not_answer_is_named_first_and_read_as_a_container_failure() -> None:
    from bincount.failures import FailureKind, classify_failure

    record = RecordFailure("a.jpg", "model server answered 413: payload too large")
    refused = RecordFailure("b.jpg", "model server did not answer: [Errno 111] Connection refused", True)
    crashed = RecordFailure("c.jpg", "model server answered 500: worker died", True)
    assert classify_failure("Failed", failure_reason([record], 40)) is FailureKind.PER_RECORD
    for container in (refused, crashed):
        reason = failure_reason([record, container], 40)
        assert reason.startswith("ClientError: 2 of 40 records failed; first: ")
        assert container.key in reason and classify_failure("Failed", reason) is FailureKind.CONTAINER


def test_requests_in_flight_follow_the_job_up_to_the_local_servers_plan() -> None:
    assert requests_in_flight({"MaxConcurrentTransforms": 4}, None) == 4  # as SageMaker would
    assert requests_in_flight({"MaxConcurrentTransforms": 4}, 2) == 2  # the one local server: 2 workers
    assert requests_in_flight({"MaxConcurrentTransforms": 1}, 2) == 1
    assert requests_in_flight({}, 2) == 1 and requests_in_flight({"MaxConcurrentTransforms": 0}, 0) == 1


def test_busy_seconds_counts_overlapping_jobs_once() -> None:
    jobs = [
        JobOutcome("a", "Completed", 1, 1, seconds=4, started=0),
        JobOutcome("b", "Completed", 1, 1, seconds=4, started=2),
    ]
    jobs.append(JobOutcome("c", "Completed", 1, 1, seconds=1, started=10))
    assert busy_seconds(jobs) == 7
    assert busy_seconds([]) == 0


@pytest.mark.parametrize("parallel_jobs", [1, 2], ids=["one-job-at-a-time", "jobs-side-by-side"])
def test_runs_each_job_once_and_fails_only_the_poison_record(
    moto_endpoint: AwsEndpoint, parallel_jobs: int
) -> None:
    suffix = uuid.uuid4().hex[:8]
    s3, sagemaker = moto_endpoint.client("s3"), moto_endpoint.client("sagemaker")
    ingest, results = f"in-{suffix}", f"out-{suffix}"
    for bucket in (ingest, results):
        s3.create_bucket(Bucket=bucket)
    keys = ["incoming/B1/a.jpg", "incoming/B1/poison.jpg", "incoming/B2/c.jpg"]
    for key in keys:
        s3.put_object(Bucket=ingest, Key=key, Body=key.encode())
    manifest = [{"prefix": f"s3://{ingest}/"}, *keys]
    s3.put_object(Bucket=results, Key="manifests/job.json", Body=json.dumps(manifest).encode())
    sagemaker.create_model(
        ModelName=f"m-{suffix}",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://x/model.tar.gz"},
    )
    job = f"bincount-{suffix}"
    sagemaker.create_transform_job(
        TransformJobName=job,
        ModelName=f"m-{suffix}",
        MaxConcurrentTransforms=2,
        MaxPayloadInMB=6,
        ModelClientConfig={"InvocationsTimeoutInSeconds": 5, "InvocationsMaxRetries": 1},
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": f"s3://{results}/manifests/job.json"}
            },
            "ContentType": "image/jpeg",
            "SplitType": "None",
        },
        TransformOutput={
            "S3OutputPath": f"s3://{results}/transform-output/{job}",
            "Accept": "application/json",
        },
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        Tags=[{"Key": "bincount:manifest", "Value": f"s3://{results}/manifests/job.json"}],
    )
    queue_url, _ = subscribe_queue(
        moto_endpoint.client("sqs"),
        moto_endpoint.client("events"),
        f"jobs-{suffix}",
        "default",
        {"source": ["aws.sagemaker"], "detail": {"TransformJobName": [job]}},
    )
    calls: list[tuple[bytes, str, str]] = []

    def fake_server(body: bytes, content_type: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
        calls.append((body, content_type, accept))
        if b"poison" in body:
            return 500, b"boom"
        return 200, json.dumps({"count": 1, "confidence": 0.9}).encode()

    executor = TransformExecutor(moto_endpoint, fake_server, parallel_jobs=parallel_jobs)
    executor.processed.update(n for n in executor.pending_jobs() if n != job)  # other tests' jobs
    assert executor.poll_once() == 1
    assert executor.poll_once() == 0  # moto says Completed; the executor remembers it ran it
    executor.close()  # side by side: wait for the job handed over

    (outcome,) = executor.outcomes
    assert (outcome.status, outcome.records, outcome.written) == ("Failed", 3, 2)
    assert [f.key for f in outcome.failures] == ["incoming/B1/poison.jpg"]
    assert sum(1 for body, *_ in calls if b"poison" in body) == 2  # one retry
    assert {(ct, acc) for _, ct, acc in calls} == {("image/jpeg", "application/json")}
    listed = s3.list_objects_v2(Bucket=results, Prefix=f"transform-output/{job}/")["Contents"]
    assert sorted(obj["Key"] for obj in listed) == [
        f"transform-output/{job}/incoming/B1/a.jpg.out",
        f"transform-output/{job}/incoming/B2/c.jpg.out",
    ]

    messages = moto_endpoint.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)[
        "Messages"
    ]
    events = [json.loads(m["Body"]) for m in messages]
    assert [e["detail"]["TransformJobStatus"] for e in events] == ["InProgress", "Failed"]
    failed = events[-1]
    assert failed["source"] == "aws.sagemaker"
    assert failed["detail-type"] == DETAIL_TYPE
    assert failed["detail"]["Tags"] == {"bincount:manifest": f"s3://{results}/manifests/job.json"}
    assert "poison" in failed["detail"]["FailureReason"]
    assert failed["detail"]["TransformOutput"]["S3OutputPath"].endswith(job)
    assert isinstance(failed["detail"]["TransformEndTime"], int)
