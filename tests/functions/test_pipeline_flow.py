"""Batcher then collector on one photo delivered three times: one job, one count, one event."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from batcher import app as batcher
from bincount.batching import output_key_for
from bincount.settings import Settings
from bincount.wiring import Clients
from botocore.stub import Stubber
from collector import app as collector
from pipeline_support import REGION, count_record, drain, job_event, sqs_event, uploaded


def test_duplicate_deliveries_end_as_one_job_and_one_count(
    stack: Any, bus_queue: str, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env()
    body = uploaded(stack.ingest_bucket, "incoming/B7/photo 1.jpg", b"photo")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    stubber.add_response("create_transform_job", {"TransformJobArn": "arn:aws:sagemaker:x"}, None)
    for _ in range(2):  # redeliveries: the jobs table answers, no second CreateTransformJob
        stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})
    runtime = batcher.build_runtime(settings, Clients(sagemaker=sagemaker))
    monkeypatch.setattr(batcher, "get_runtime", lambda: runtime)
    with stubber:
        for delivery in range(3):
            assert batcher.handler(sqs_event((f"m{delivery}", body)), context) == {"batchItemFailures": []}
    stubber.assert_no_pending_responses()

    jobs = boto3.resource("dynamodb", region_name=REGION).Table(settings.jobs_table).scan()["Items"]
    assert len(jobs) == 1
    name = str(jobs[0]["pk"])
    s3 = boto3.client("s3", region_name=REGION)
    images = s3.get_object(Bucket=settings.results_bucket, Key=settings.layout().images_key(name))["Body"]
    (image,) = json.loads(images.read())["images"]
    key = output_key_for(settings.layout(), name, image["staged_key"])  # the job read the staged copy
    s3.put_object(Bucket=settings.results_bucket, Key=key, Body=json.dumps(count_record(2)).encode())

    monkeypatch.setattr(collector, "get_runtime", lambda: collector.build_runtime(settings))
    event = job_event(name, "Completed", settings.results_bucket)
    for _ in range(3):
        collector.handler(event, context)

    table = boto3.resource("dynamodb", region_name=REGION).Table(settings.counts_table)
    records = table.query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "BIN#B7"})[
        "Items"
    ]
    image_sk, latest = sorted(str(item["sk"]) for item in records)
    assert image_sk.startswith("IMAGE#incoming/B7/photo 1.jpg#") and latest == "LATEST"
    delivered = drain(bus_queue)
    assert [(e["detail-type"], e["detail"]["count"]) for e in delivered] == [("Bin Count Updated", 2)]
