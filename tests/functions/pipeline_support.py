"""Helpers for the pipeline tests (importable by name: tests/functions is on sys.path under pytest)."""

from __future__ import annotations

import json
from typing import Any

import boto3

REGION = "us-east-1"


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every event delivered to the listener queue so far (detail decoded)."""
    sqs = boto3.client("sqs", region_name=REGION)
    delivered: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return delivered
        for message in messages:
            delivered.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def s3_notification(
    bucket: str,
    key: str,
    etag: str,
    event_time: str = "2026-11-26T10:15:03.412Z",
    size: int = 1000,
    version_id: str | None = None,
    sequencer: str = "0A1B",
) -> dict[str, Any]:
    """An S3 → SQS message body as S3 writes it (the key URL-encoded form-style)."""
    from urllib.parse import quote_plus

    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": event_time,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag,
                        **({"versionId": version_id} if version_id else {}),
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


def uploaded(
    bucket: str, key: str, body: bytes, event_time: str = "2026-11-26T10:15:03.412Z", sequencer: str = "0A1B"
) -> dict[str, Any]:
    """Put ``body`` at ``key`` (moto) and return the notification S3 sends for that version."""
    response = boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=body)
    return s3_notification(
        bucket,
        key,
        str(response["ETag"]).strip('"'),
        event_time=event_time,
        size=len(body),
        version_id=response.get("VersionId"),
        sequencer=sequencer,
    )


def sqs_event(*bodies: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A Lambda SQS event from (message id, body) pairs."""
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795687200000"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:bincount-ingest-dev",
                "awsRegion": REGION,
            }
            for message_id, body in bodies
        ]
    }


def stage_job(
    images: list[Any], outputs: dict[str, Any], job_prefix: str = "bincount-dev"
) -> tuple[str, dict[str, Any]]:
    """Write a job's manifest, image list and jobs-table record the way the batcher does, and its
    ``.out`` files the way Batch Transform does (``outputs``: image key → record dict or raw bytes).

    Returns the job name and a ``Completed`` state-change event for it.
    """
    from bincount.adapters.dynamodb import DynamoJobStore
    from bincount.adapters.s3 import S3ObjectStore
    from bincount.batching import output_key_for, plan_chunks
    from bincount.settings import Settings
    from bincount.submission import Submitter
    from pipeline_fakes import FakeTransforms

    settings = Settings.from_env()
    (chunk,) = plan_chunks(images, max_images=len(images), prefix=job_prefix)
    s3 = boto3.client("s3", region_name=REGION)
    submitter = Submitter(
        objects=S3ObjectStore(s3),
        transforms=FakeTransforms(),
        jobs=DynamoJobStore(boto3.resource("dynamodb", region_name=REGION).Table(settings.jobs_table)),
        layout=settings.layout(),
        config=settings.transform_config(),
    )
    submitter.submit(chunk)
    for image_key, record in outputs.items():
        body = record if isinstance(record, bytes) else json.dumps(record).encode()
        key = output_key_for(settings.layout(), chunk.job_name, image_key)
        s3.put_object(Bucket=settings.results_bucket, Key=key, Body=body)
    return chunk.job_name, job_event(chunk.job_name, "Completed", settings.results_bucket)


def job_event(name: str, status: str, results_bucket: str, failure_reason: str = "") -> dict[str, Any]:
    """The sample state-change event from events/, retargeted at ``name``."""
    import copy
    from pathlib import Path

    sample = "transform_job_completed.json" if status == "Completed" else "transform_job_failed.json"
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / sample).read_text())
    event = copy.deepcopy(event)
    detail = event["detail"]
    detail["TransformJobName"] = name
    detail["TransformJobStatus"] = status
    detail["TransformJobArn"] = f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{name}"
    manifest = f"s3://{results_bucket}/manifests/{name}/manifest.json"
    detail["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = manifest
    detail["TransformOutput"]["S3OutputPath"] = f"s3://{results_bucket}/transform-output/{name}/"
    if isinstance(detail.get("Tags"), list):
        detail["Tags"] = [t for t in detail["Tags"] if t["Key"] != "bincount:manifest"]
        detail["Tags"].append({"Key": "bincount:manifest", "Value": manifest})
    if failure_reason:
        detail["FailureReason"] = failure_reason
    event["resources"] = [detail["TransformJobArn"]]
    return event


def count_record(
    count: int, confidence: float = 0.9, version: str = "v1", lower_bound: bool = False
) -> dict[str, Any]:
    probabilities = [0.0] * 6
    probabilities[min(count, 5)] = confidence
    return {
        "count": count,
        "confidence": confidence,
        "probabilities": probabilities,
        "count_is_lower_bound": lower_bound,
        "model_version": version,
    }
