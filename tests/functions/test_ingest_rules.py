"""Every upload is one record, also when it is re-uploaded: batcher and collector handlers on
versioned uploads in moto (SageMaker stubbed; a fake Batch Transform reads the manifests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from batcher import app as batcher
from bincount.batching import output_key_for
from bincount.count_records import image_sk
from bincount.settings import Settings
from bincount.staging import staged_name
from bincount.uploads import ImageObject
from bincount.wiring import Clients
from botocore.stub import Stubber
from collector import app as collector
from pipeline_support import REGION, count_record, drain, job_event, s3_notification, sqs_event, uploaded
from reconciler import app as reconciler
from test_reconciler import CAPACITY

KEY = "incoming/BIN-R/20261126T101500Z-cam1.jpg"  # the capture time is in the name: equal for both uploads
FIRST_UPLOAD, SECOND_UPLOAD = "2026-11-26T10:15:03.412Z", "2026-11-26T10:21:47.903Z"
COUNTS = {b"bin with three": 3, b"bin with five": 5, b"a dotted photo": 1}


@pytest.fixture
def pipeline(stack: Any, bus_queue: str, context: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``deliver(*bodies)`` runs the batcher, ``run(job)`` the fake transform + the collector."""
    settings = Settings.from_env()
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    runtime = batcher.build_runtime(settings, Clients(sagemaker=sagemaker))
    monkeypatch.setattr(batcher, "get_runtime", lambda: runtime)
    monkeypatch.setattr(
        collector, "get_runtime", lambda: collector.build_runtime(settings, sleep=lambda _: None)
    )
    with stubber:
        yield Pipeline(settings, stubber, context, bus_queue)


class Pipeline:
    def __init__(self, settings: Settings, stubber: Stubber, context: Any, bus_queue: str) -> None:
        self.settings, self.stubber, self.context, self.bus_queue = settings, stubber, context, bus_queue
        self.s3 = boto3.client("s3", region_name=REGION)
        self.jobs = boto3.resource("dynamodb", region_name=REGION).Table(settings.jobs_table)
        self.counts = boto3.resource("dynamodb", region_name=REGION).Table(settings.counts_table)

    def deliver(
        self, *bodies: dict[str, Any], new_jobs: int = 1, planned: bool = False
    ) -> tuple[dict[str, Any], list[str]]:
        """One SQS batch through the batcher; returns its response and the jobs it started.

        ``planned``: the batch makes chunks even though no job is new (the in-flight count is asked).
        """
        before = {item["pk"] for item in self.jobs.scan()["Items"]}
        if new_jobs or planned:
            self.stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
        for _ in range(new_jobs):
            self.stubber.add_response(
                "create_transform_job", {"TransformJobArn": "arn:aws:sagemaker:x"}, None
            )
        event = sqs_event(*((f"m{index}", body) for index, body in enumerate(bodies)))
        response = batcher.handler(event, self.context)
        self.stubber.assert_no_pending_responses()
        return response, sorted({str(item["pk"]) for item in self.jobs.scan()["Items"]} - before)

    def run(self, name: str) -> dict[str, Any]:
        """What Batch Transform does: read every manifest entry, write ``<entry>.out``; then collect."""
        layout = self.settings.layout()
        manifest = json.loads(self._read(layout.results_bucket, layout.manifest_key(name)))
        bucket, _, prefix = manifest[0]["prefix"].removeprefix("s3://").partition("/")
        for entry in manifest[1:]:
            count = COUNTS[self._read(bucket, prefix + entry)]
            output = output_key_for(layout, name, entry)
            self.s3.put_object(Bucket=layout.results_bucket, Key=output, Body=json.dumps(count_record(count)))
        summary: dict[str, Any] = collector.handler(
            job_event(name, "Completed", layout.results_bucket), self.context
        )
        return summary

    def records(self, bin_id: str) -> dict[str, dict[str, Any]]:
        query = self.counts.query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"BIN#{bin_id}"}
        )
        return {str(item["sk"]): item for item in query["Items"]}

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(event["detail-type"], event["detail"]) for event in drain(self.bus_queue)]

    def _read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


def image_records(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        (item for sk, item in records.items() if sk.startswith("IMAGE#")), key=lambda i: i["uploaded_at"]
    )


def test_a_re_upload_with_new_bytes_is_counted_again_from_the_notified_version(
    stack: Any, pipeline: Pipeline
) -> None:
    first = uploaded(
        stack.ingest_bucket, KEY, b"bin with three", FIRST_UPLOAD, sequencer="0066C4A1B2C3D4E5F6"
    )
    _, (first_job,) = pipeline.deliver(first)
    # Re-uploaded before the first job ran: that job must still read the first bytes.
    second = uploaded(
        stack.ingest_bucket, KEY, b"bin with five", SECOND_UPLOAD, sequencer="0066C4A3F0119A2B07"
    )
    _, (second_job,) = pipeline.deliver(second)
    assert first_job != second_job

    # Collected newest first: the older upload is recorded but never takes LATEST back.
    assert pipeline.run(second_job)["counted"] == 1
    assert pipeline.run(first_job)["counted"] == 1
    records = pipeline.records("BIN-R")
    older, newer = image_records(records)
    assert (older["count"], newer["count"]) == (3, 5)  # each upload its own record, from its own bytes
    versions = [
        first["Records"][0]["s3"]["object"]["versionId"],
        second["Records"][0]["s3"]["object"]["versionId"],
    ]
    assert [older["image_version"], newer["image_version"]] == versions
    assert (records["LATEST"]["count"], records["LATEST"]["image_version"]) == (5, versions[1])

    # An exact duplicate notification: no new job, no new record ("duplicate, safely ignored").
    response, started = pipeline.deliver(first, new_jobs=0, planned=True)
    assert response == {"batchItemFailures": []} and started == []
    pipeline.run(first_job)  # the state change delivered again (idempotent)
    assert len(image_records(pipeline.records("BIN-R"))) == 2

    updates = [detail for kind, detail in pipeline.events() if kind == "Bin Count Updated"]
    assert [(u["count"], u["image"]["version_id"]) for u in updates] == [(5, versions[1])]


def test_a_future_dated_name_cannot_freeze_a_bin(stack: Any, pipeline: Pipeline) -> None:
    future = uploaded(
        stack.ingest_bucket, "incoming/BIN-F/20991231T000000Z-x.jpg", b"bin with five", FIRST_UPLOAD
    )
    response, started = pipeline.deliver(future, new_jobs=0)
    assert response == {"batchItemFailures": []} and started == []  # no job ever sees it
    (record,) = image_records(pipeline.records("BIN-F"))
    assert record["error_code"] == "capture_time_in_future" and "LATEST" not in pipeline.records("BIN-F")
    ((kind, detail),) = pipeline.events()
    assert (kind, detail["error_code"], detail["job_name"]) == (
        "Bin Image Rejected",
        "capture_time_in_future",
        "",
    )

    later = uploaded(
        stack.ingest_bucket, "incoming/BIN-F/20261126T102000Z-y.jpg", b"bin with three", SECOND_UPLOAD
    )
    _, (job,) = pipeline.deliver(later)
    pipeline.run(job)
    assert pipeline.records("BIN-F")["LATEST"]["count"] == 3  # the bin moves on


def test_mixed_case_suffix_is_counted_and_other_suffixes_get_error_records(
    stack: Any, pipeline: Pipeline
) -> None:
    photo = uploaded(stack.ingest_bucket, "incoming/BIN-C/a.Jpg", b"a dotted photo")
    text = uploaded(stack.ingest_bucket, "incoming/BIN-T/readme.txt", b"not a photo")
    _, (job,) = pipeline.deliver(photo, text)
    assert pipeline.run(job)["counted"] == 1
    assert pipeline.records("BIN-C")["LATEST"]["count"] == 1
    (record,) = image_records(pipeline.records("BIN-T"))
    assert record["error_code"] == "unsupported_suffix"


def test_too_long_keys_and_oversize_photos_get_error_records_before_any_job(
    stack: Any, pipeline: Pipeline
) -> None:
    long_key = "incoming/BIN-L/" + "x" * 1000 + ".jpg"
    too_long = uploaded(stack.ingest_bucket, long_key, b"bin with three")
    oversize = s3_notification(stack.ingest_bucket, "incoming/BIN-O/huge.jpg", "e", size=21 * 1024 * 1024)
    response, started = pipeline.deliver(too_long, oversize, new_jobs=0)
    assert response == {"batchItemFailures": []} and started == []
    (long_record,) = image_records(pipeline.records("BIN-L"))
    assert long_record["error_code"] == "key_too_long" and long_record["image_key"] == long_key
    assert long_record["sk"].startswith("IMAGE#~sha256:")
    (huge,) = image_records(pipeline.records("BIN-O"))
    assert huge["error_code"] == "object_too_large"
    assert sorted(d["error_code"] for kind, d in pipeline.events() if kind == "Bin Image Rejected") == [
        "key_too_long",
        "object_too_large",
    ]


def test_a_notification_naming_another_bucket_is_refused_to_the_dlq(stack: Any, pipeline: Pipeline) -> None:
    foreign = s3_notification("someone-elses-bucket", "incoming/BIN-X/a.jpg", "e", version_id="v1")
    response, started = pipeline.deliver(foreign, new_jobs=0)
    assert response == {"batchItemFailures": []} and started == []  # acknowledged: it is in the DLQ now
    assert pipeline.records("BIN-X") == {} and pipeline.events() == []
    sqs = boto3.client("sqs", region_name=REGION)
    (dead,) = sqs.receive_message(
        QueueUrl=stack.outputs["IngestDLQUrl"], MessageAttributeNames=["All"], MaxNumberOfMessages=10
    )["Messages"]
    assert json.loads(dead["Body"]) == foreign
    assert "someone-elses-bucket" in dead["MessageAttributes"]["bincount-refusal"]["StringValue"]


def test_a_version_deleted_before_staging_gets_an_error_record(stack: Any, pipeline: Pipeline) -> None:
    gone = uploaded(stack.ingest_bucket, "incoming/BIN-G/a.jpg", b"bin with three")
    version = gone["Records"][0]["s3"]["object"]["versionId"]
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=stack.ingest_bucket, Key="incoming/BIN-G/a.jpg", VersionId=version
    )
    response, started = pipeline.deliver(gone, new_jobs=0)
    assert response == {"batchItemFailures": []} and started == []
    (record,) = image_records(pipeline.records("BIN-G"))
    assert record["error_code"] == "image_unavailable"


def test_a_capacity_retry_reads_the_staged_copy_and_records_under_the_uploads_key(
    stack: Any, quick_retries: None, pipeline: Pipeline
) -> None:
    """Side by side: a transient failure's whole retry (``-r1``, via the retry queue and the
    reconciler) is rebuilt from images.json, so it reads the staged copy of the notified version
    even after the key was overwritten, and records under that upload's versioned sort key."""
    first = uploaded(
        stack.ingest_bucket, KEY, b"bin with three", FIRST_UPLOAD, sequencer="0066C4A1B2C3D4E5F6"
    )
    _, (job,) = pipeline.deliver(first)
    uploaded(stack.ingest_bucket, KEY, b"bin with five", SECOND_UPLOAD, sequencer="0066C4A3F0119A2B07")

    failed = job_event(job, "Failed", pipeline.settings.results_bucket, CAPACITY)
    summary = collector.handler(failed, pipeline.context)
    (retry,) = summary["waiting_jobs"]
    assert (summary["failure_kind"], summary["rejected"], retry) == ("transient", 0, f"{job[:-3]}-r1")

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    stubber.add_response("create_transform_job", {"TransformJobArn": "arn:aws:sagemaker:x"}, None)
    with stubber:
        reconciled = reconciler.process(
            {}, reconciler.build_reconciler(pipeline.settings, Clients(sagemaker=sagemaker))
        )
    assert reconciled["resubmitted"] == [retry] and reconciled["problems"] == []

    layout = pipeline.settings.layout()
    version = first["Records"][0]["s3"]["object"]["versionId"]
    (image,) = json.loads(pipeline._read(layout.results_bucket, layout.images_key(retry)))["images"]
    assert (image["version_id"], image["staged_key"]) == (version, staged_name(ImageObject.from_dict(image)))
    manifest = json.loads(pipeline._read(layout.results_bucket, layout.manifest_key(retry)))
    assert manifest == [{"prefix": layout.staging_uri()}, image["staged_key"]]

    assert pipeline.run(retry)["counted"] == 1  # the fake transform reads what the manifest names
    record = pipeline.records("BIN-R")[image_sk(KEY, version)]
    assert (record["count"], record["job_name"], record["image_version"]) == (3, retry, version)
    assert len(image_records(pipeline.records("BIN-R"))) == 1
