"""``bincount recount`` against template.yaml created in moto: the batcher's path, resumable."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import boto3
import pytest
from bincount.count_records import image_sk
from bincount.recounts import recount_image
from bincount.staging import staged_name
from bincount.uploads import ImageObject
from cli_support import REGION, Run

from cli.stack import StackResources


def put_photo(
    stack: StackResources, bin_id: str, name: str, version: str = "m1", staged: bool = True
) -> dict[str, Any]:
    """An uploaded photo, counted by ``version``: its ingest object, its record, maybe its staged copy."""
    s3 = boto3.client("s3", region_name=REGION)
    key = f"{stack.ingest_prefix}{bin_id}/{name}.jpg"
    version_id = s3.put_object(Bucket=stack.ingest_bucket, Key=key, Body=b"jpeg bytes").get("VersionId", "")
    image = ImageObject(
        stack.ingest_bucket, key, "etag", 10, bin_id, "2026-11-26T10:00:00.000Z", "image/jpeg", version_id
    )
    item: dict[str, Any] = {
        "pk": f"BIN#{bin_id}",
        "sk": image_sk(key, image.version),
        "bin_id": bin_id,
        "image_bucket": stack.ingest_bucket,
        "image_key": key,
        "etag": "etag",
        "image_version": image.version,
        "captured_at": image.captured_at,
        "model_version": version,
        "outcome": "count",
        "count": 2,
        "confidence": Decimal("0.9"),
    }
    boto3.resource("dynamodb", region_name=REGION).Table(stack.counts_table).put_item(Item=item)
    if staged:
        s3.put_object(Bucket=stack.results_bucket, Key=f"staging/{staged_name(image)}", Body=b"jpeg bytes")
    return item


@pytest.fixture
def photos(deployed: StackResources) -> list[dict[str, Any]]:
    boto3.client("s3", region_name=REGION).put_bucket_versioning(
        Bucket=deployed.ingest_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    return [
        put_photo(deployed, "A-1", "p1"),
        put_photo(deployed, "A-1", "p2", staged=False),  # the copy is made again from the ingest bucket
        put_photo(deployed, "A-2", "p3", version="m2"),  # already counted by the target
    ]


def test_recount_submits_through_the_batch_path_and_a_second_run_submits_nothing(
    on_stack: Run, deployed: StackResources, photos: list[dict[str, Any]]
) -> None:
    result = on_stack("recount", "--model-version", "m2", "--json")

    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert (report["submitted"], report["already_current"], report["in_flight"], report["skipped"]) == (
        2,
        1,
        0,
        [],
    )
    (job,) = report["jobs"]
    s3 = boto3.client("s3", region_name=REGION)
    manifests = f"manifests/{job}/"
    document = json.loads(
        s3.get_object(Bucket=deployed.results_bucket, Key=f"{manifests}images.json")["Body"].read()
    )
    assert (document["purpose"], document["target_model_version"]) == ("recount", "m2")
    staged = [recount_image(item).staged_key for item in photos[:2]]
    assert sorted(image["staged_key"] for image in document["images"]) == sorted(staged)
    manifest = json.loads(
        s3.get_object(Bucket=deployed.results_bucket, Key=f"{manifests}manifest.json")["Body"].read()
    )
    assert manifest[0]["prefix"].endswith("/staging/") and sorted(manifest[1:]) == sorted(staged)
    s3.head_object(Bucket=deployed.results_bucket, Key=f"staging/{staged[1]}")  # copied again
    described = boto3.client("sagemaker", region_name=REGION).describe_transform_job(TransformJobName=job)
    assert described["ModelName"] == deployed.model_name

    again = json.loads(on_stack("recount", "--model-version", "m2", "--json").out)
    assert (again["submitted"], again["in_flight"], again["jobs"]) == (0, 2, [])


def test_recount_filters_and_dry_run_submit_nothing(
    on_stack: Run, deployed: StackResources, photos: list[dict[str, Any]]
) -> None:
    result = on_stack(
        "recount", "--model-version", "m2", "--bins", "A-1", "--since", "2026-11-27", "--dry-run"
    )
    assert result.code == 0 and "recount to m2: 0 would submit in 0 jobs, 0 already current" in result.out

    dry = json.loads(on_stack("recount", "--model-version", "m3", "--dry-run", "--json").out)
    assert (dry["submitted"], len(dry["jobs"]), dry["already_current"]) == (3, 1, 0)
    assert boto3.client("sagemaker", region_name=REGION).list_transform_jobs()["TransformJobSummaries"] == []


def test_a_photo_whose_version_is_gone_is_skipped_with_the_reason(
    on_stack: Run, deployed: StackResources, photos: list[dict[str, Any]]
) -> None:
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=deployed.ingest_bucket, Key=photos[1]["image_key"], VersionId=photos[1]["image_version"]
    )
    report = json.loads(on_stack("recount", "--model-version", "m2", "--json").out)

    assert report["submitted"] == 1
    (skipped,) = report["skipped"]
    assert skipped["key"] == photos[1]["image_key"] and "no staged copy" in skipped["reason"]


def test_a_full_cap_leaves_the_photos_and_says_run_again(
    on_stack: Run, deployed: StackResources, photos: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bincount.adapters.sagemaker import SageMakerTransformJobs

    monkeypatch.setattr(SageMakerTransformJobs, "count_in_progress", lambda self, prefix, limit: limit)
    result = on_stack("recount", "--model-version", "m2")

    assert result.code == 1
    assert "2 photos left; run again (MaxJobsInFlight 4 reached)" in result.out


def test_bad_options_are_one_line(on_stack: Run) -> None:
    bad_date = on_stack("recount", "--since", "yesterday")
    assert bad_date.code == 2 and bad_date.err.count("\n") == 1 and "--since" in bad_date.err
    no_endpoint = on_stack("recount")
    assert no_endpoint.code == 2 and "pass --model-version" in no_endpoint.err
