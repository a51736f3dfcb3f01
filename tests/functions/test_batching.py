"""Dedupe, chunking, job names, manifests and the CreateTransformJob request (pure)."""

from __future__ import annotations

import re
from dataclasses import replace

from bincount.batching import (
    JOB_NAME_PATTERN,
    JobLayout,
    TransformConfig,
    create_transform_job_request,
    dedupe,
    image_key_for_output,
    job_name,
    manifest_body,
    output_key_for,
    plan_chunks,
    split_for_redrive,
)
from bincount.uploads import ImageObject


def image(
    key: str, etag: str = "e1", bucket: str = "ingest", captured: str = "2026-01-01T00:00:00.000Z"
) -> ImageObject:
    content_type = "image/png" if key.endswith(".png") else "image/jpeg"
    return ImageObject(bucket, key, etag, 10, key.split("/")[1], captured, content_type)


def test_job_name_is_deterministic_order_insensitive_and_valid() -> None:
    a, b = image("incoming/B1/a.jpg"), image("incoming/B2/b.jpg")
    assert job_name([a, b]) == job_name([b, a])
    assert job_name([a]) != job_name([a, b])
    assert job_name([image("incoming/B1/a.jpg", etag="other")]) != job_name([a])  # new content, new job
    reuploaded = replace(a, version_id="v2")
    assert job_name([reuploaded]) != job_name([replace(a, version_id="v1")])  # same bytes, new upload
    name = job_name([a], prefix="Bin_Count.prod " + "x" * 80)
    assert len(name) <= 63 and JOB_NAME_PATTERN.match(name)
    assert re.fullmatch(r"bincount-dev-[0-9a-f]{16}", job_name([a], prefix="bincount-dev"))


def test_dedupe_merges_repeats_and_remembers_messages() -> None:
    early = image("incoming/B1/a.jpg", captured="2026-01-01T00:00:00.000Z")
    late = image("incoming/B1/a.jpg", captured="2026-01-02T00:00:00.000Z")
    merged = dedupe({"m1": [late], "m2": [early], "m3": [early, image("incoming/B2/b.jpg")]})
    assert len(merged) == 2
    assert merged[early] == {"m1", "m2", "m3"}  # earliest capture time wins


def test_chunks_split_by_content_type_and_size_and_keep_owners() -> None:
    images = {image(f"incoming/B{i}/x.jpg"): {f"m{i}"} for i in range(5)}
    images[image("incoming/B9/y.png")] = {"m9"}
    chunks = plan_chunks(images, max_images=2)
    assert [(c.content_type, len(c.images)) for c in chunks] == [
        ("image/jpeg", 2),
        ("image/jpeg", 2),
        ("image/jpeg", 1),
        ("image/png", 1),
    ]
    assert chunks[0].message_ids == {"m0", "m1"} and chunks[3].message_ids == {"m9"}
    again = plan_chunks(dict(reversed(list(images.items()))), max_images=2)
    assert [c.job_name for c in again] == [c.job_name for c in chunks]


def test_manifest_and_output_keys() -> None:
    images = [image("incoming/B1/a b.jpg"), image("incoming/B2/c.jpg")]
    (unstaged,) = plan_chunks(images, max_images=5)
    assert manifest_body(JobLayout("results"), unstaged) == [
        {"prefix": "s3://ingest/"},
        "incoming/B1/a b.jpg",
        "incoming/B2/c.jpg",
    ]
    (staged,) = plan_chunks([replace(i, staged_key=f"{n}.jpg") for n, i in enumerate(images)], max_images=5)
    assert manifest_body(JobLayout("results"), staged) == [
        {"prefix": "s3://results/staging/"},
        "0.jpg",
        "1.jpg",
    ]
    assert [i.manifest_entry for i in staged.images] == ["0.jpg", "1.jpg"]
    layout = JobLayout("results")
    out = output_key_for(layout, "job-1", "incoming/B1/a b.jpg")
    assert out == "transform-output/job-1/incoming/B1/a b.jpg.out"
    assert image_key_for_output(layout, "job-1", out) == "incoming/B1/a b.jpg"
    assert image_key_for_output(layout, "job-1", "transform-output/job-1/_SUCCESS") is None


def test_create_transform_job_request_shape() -> None:
    chunk = plan_chunks([image("incoming/B1/a.jpg")], max_images=10, prefix="bincount-dev")[0]
    config = TransformConfig("model-1", "ml.g4dn.xlarge", 1, 4, 20, 600, 1, "dev")
    request = create_transform_job_request(
        chunk, JobLayout("results"), config, parent_job="bincount-dev-parent"
    )
    name = chunk.job_name
    assert request["TransformInput"] == {
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "ManifestFile",
                "S3Uri": f"s3://results/manifests/{name}/manifest.json",
            }
        },
        "ContentType": "image/jpeg",
        "CompressionType": "None",
        "SplitType": "None",
    }
    assert request["TransformOutput"] == {
        "S3OutputPath": f"s3://results/transform-output/{name}/",
        "Accept": "application/json",
        "AssembleWith": "None",
    }
    assert request["BatchStrategy"] == "SingleRecord"
    assert request["MaxConcurrentTransforms"] * request["MaxPayloadInMB"] <= 100
    assert {"Key": "bincount:parent-job", "Value": "bincount-dev-parent"} in request["Tags"]


def test_redrive_halves_until_one_image() -> None:
    images = [image(f"incoming/B{i}/x.jpg") for i in range(5)]
    halves = split_for_redrive(images)
    assert [len(c.images) for c in halves] == [2, 3]
    assert sorted(i for c in halves for i in c.images) == sorted(images)
    assert [len(c.images) for c in split_for_redrive(images[:1])] == [1]
