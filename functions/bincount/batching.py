"""From a batch of image notifications to transform jobs: dedupe, chunk, name, describe.

Job names are a hash of the chunk's content, so the same images always make the same job: a
retried or duplicated delivery finds the job already there (``ResourceInUse``) instead of
starting a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bincount.uploads import ImageObject

MAX_JOB_NAME_LENGTH = 63
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
HASH_HEX_CHARS = 16


@dataclass(frozen=True)
class Chunk:
    """The images of one transform job (one bucket, one content type) and the messages behind them."""

    job_name: str
    bucket: str
    content_type: str
    images: tuple[ImageObject, ...]
    message_ids: frozenset[str] = field(default_factory=frozenset)
    attempt: int = 0  # whole retries of these images after transient failures (part of the job name)
    unknown_splits: int = 0  # splits for failures of unknown reason in this chunk's ancestry
    purpose: str = ""  # "recount": the photos have records; the collector re-counts them (bincount.recounts)
    target_model_version: str = ""  # a re-count's model version (part of its job names)
    # A photo the model server already answered, sent first in a re-driven job as a control: its
    # answer shows the server answering during this job's run (bincount.failures.Evidence).
    witness: ImageObject | None = None


def dedupe(images_by_message: Mapping[str, Sequence[ImageObject]]) -> dict[ImageObject, set[str]]:
    """Merge repeated notifications of one upload (object version); remember every message that
    named it. Two uploads of one key are two images (their versions differ).

    When repeats disagree on capture time (hand-made notifications without a version), the
    earliest wins so the outcome does not depend on delivery order.
    """
    by_identity: dict[tuple[str, str, str], ImageObject] = {}
    messages: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for message_id, images in images_by_message.items():
        for image in images:
            known = by_identity.get(image.identity)
            if known is None or image.captured_at < known.captured_at:
                by_identity[image.identity] = image
            messages[image.identity].add(message_id)
    return {image: messages[identity] for identity, image in by_identity.items()}


def sanitize_prefix(prefix: str) -> str:
    """Letters, digits and single hyphens only (SageMaker's name rule), at most 46 characters."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", prefix).strip("-")
    return cleaned[: MAX_JOB_NAME_LENGTH - HASH_HEX_CHARS - 1].rstrip("-") or "bincount"


def job_name(
    images: Iterable[ImageObject],
    prefix: str = "bincount",
    attempt: int = 0,
    witness: ImageObject | None = None,
) -> str:
    """``<prefix>-<16 hex of sha256 over sorted bucket/key/version>``: order-insensitive, ≤ 63 chars.

    A whole retry of the same images needs a new name (names stay taken): attempt ``n`` ends in
    ``-r<n>`` and gives up as many hex digits, so the name stays deterministic and ≤ 63 chars.
    A witness is part of the job's content, so of its name.
    """
    digest = hashlib.sha256()
    for bucket, key, version in sorted(image.identity for image in images):
        digest.update(f"{bucket}\0{key}\0{version}\n".encode())
    if witness is not None:
        bucket, key, version = witness.identity
        digest.update(f"witness\0{bucket}\0{key}\0{version}\n".encode())
    suffix = f"-r{attempt}" if attempt else ""
    name = f"{sanitize_prefix(prefix)}-{digest.hexdigest()[: HASH_HEX_CHARS - len(suffix)]}{suffix}"
    assert len(name) <= MAX_JOB_NAME_LENGTH and JOB_NAME_PATTERN.match(name), name
    return name


def plan_chunks(
    images: Mapping[ImageObject, set[str]] | Iterable[ImageObject], max_images: int, prefix: str = "bincount"
) -> list[Chunk]:
    """Group by (bucket, content type), sort by key, cut into chunks of at most ``max_images``.

    Sorting makes the chunks, and so the job names, a function of the set of images only.
    """
    if max_images < 1:
        raise ValueError("max_images must be >= 1")
    owners: Mapping[ImageObject, set[str]] = (
        images if isinstance(images, Mapping) else {image: set() for image in images}
    )
    groups: dict[tuple[str, str], list[ImageObject]] = defaultdict(list)
    for image in owners:
        groups[(image.bucket, image.content_type)].append(image)
    chunks: list[Chunk] = []
    for (bucket, content_type), members in sorted(groups.items()):
        members.sort(key=lambda image: (image.key, image.version))
        for start in range(0, len(members), max_images):
            part = tuple(members[start : start + max_images])
            chunks.append(
                Chunk(
                    job_name=job_name(part, prefix),
                    bucket=bucket,
                    content_type=content_type,
                    images=part,
                    message_ids=frozenset().union(*(owners[image] for image in part)),
                )
            )
    return chunks


def split_for_redrive(
    images: Sequence[ImageObject], prefix: str = "bincount", witness: ImageObject | None = None
) -> list[Chunk]:
    """Halve the images a failed job left without output, so a poison image ends up alone.

    Each half is a new deterministic job, with ``witness`` (a photo the server answered) sent
    first when there is one. The caller records a photo as failed only on evidence
    (bincount.failures.next_step), never by calling this.
    """
    if not images:
        raise ValueError("nothing to re-drive")
    ordered = sorted(images, key=lambda image: (image.key, image.version))
    middle = max(1, len(ordered) // 2)
    parts = [ordered] if len(ordered) == 1 else [ordered[:middle], ordered[middle:]]
    chunks: list[Chunk] = []
    for part in parts:
        chunks.extend(
            with_witness(chunk, witness, prefix)
            for chunk in plan_chunks(part, max_images=len(part), prefix=prefix)
        )
    return chunks


def with_witness(chunk: Chunk, witness: ImageObject | None, prefix: str) -> Chunk:
    """The chunk with ``witness`` sent first (renamed: the witness is content); unchanged without one,
    or when the witness cannot share its manifest (unstaged, or one of the chunk's own entries)."""
    if witness is None or not witness.staged_key or witness.bucket != chunk.bucket:
        return chunk
    if any(image.manifest_entry == witness.manifest_entry or not image.staged_key for image in chunk.images):
        return chunk
    name = job_name(chunk.images, prefix, chunk.attempt, witness)
    return replace(chunk, job_name=name, witness=witness)


def retry_chunk(
    images: Sequence[ImageObject],
    prefix: str,
    attempt: int,
    unknown_splits: int = 0,
    witness: ImageObject | None = None,
) -> Chunk:
    """The same images (whole, not split) under the job name of retry ``attempt``.

    The images come from the failed job's images.json, staged keys included, so the retry reads
    the same staged copies (never the ingest key, which may hold a newer upload by now).
    """
    if not images:
        raise ValueError("nothing to retry")
    ordered = tuple(sorted(images, key=lambda image: (image.key, image.version)))
    first = ordered[0]
    chunk = Chunk(
        job_name=job_name(ordered, prefix, attempt),
        bucket=first.bucket,
        content_type=first.content_type,
        images=ordered,
        attempt=attempt,
        unknown_splits=unknown_splits,
    )
    return with_witness(chunk, witness, prefix)


@dataclass(frozen=True)
class JobLayout:
    """Where a job's manifest, image list and outputs live in the results bucket."""

    results_bucket: str
    manifest_prefix: str = "manifests/"
    output_prefix: str = "transform-output/"
    staging_prefix: str = "staging/"

    def manifest_key(self, name: str) -> str:
        return f"{self.manifest_prefix}{name}/manifest.json"

    def images_key(self, name: str) -> str:
        """The image list with bin ids and capture times, which the collector needs and SageMaker not."""
        return f"{self.manifest_prefix}{name}/images.json"

    def output_prefix_for(self, name: str) -> str:
        return f"{self.output_prefix}{name}/"

    def output_uri(self, name: str) -> str:
        return f"s3://{self.results_bucket}/{self.output_prefix_for(name)}"

    def staging_uri(self) -> str:
        """Where the batcher copies each notified version (see bincount.staging)."""
        return f"s3://{self.results_bucket}/{self.staging_prefix}"

    def manifest_uri(self, name: str) -> str:
        return f"s3://{self.results_bucket}/{self.manifest_key(name)}"


def manifest_body(layout: JobLayout, chunk: Chunk) -> list[Any]:
    """SageMaker's ``ManifestFile``: a prefix entry then paths relative to it.

    Staged images (the batcher's): the staging area and each upload's immutable copy, so the job
    reads the version that was notified whatever happens at the key later. Unstaged ones (image
    lists written before staging existed): the source bucket and the key.
    """
    staged = [image.staged_key for image in chunk.images]
    if all(staged):
        # the witness first: it is answered before anything in the job can stop the job
        witness = [chunk.witness.staged_key] if chunk.witness is not None else []
        return [{"prefix": layout.staging_uri()}, *witness, *staged]
    if any(staged):
        raise ValueError(f"chunk {chunk.job_name} mixes staged and unstaged images")
    return [{"prefix": f"s3://{chunk.bucket}/"}, *(image.key for image in chunk.images)]


def output_key_for(layout: JobLayout, name: str, image_key: str) -> str:
    """Batch Transform writes ``<path relative to the manifest prefix>.out`` under the output path."""
    return f"{layout.output_prefix_for(name)}{image_key}.out"


def image_key_for_output(layout: JobLayout, name: str, output_key: str) -> str | None:
    # Returns the manifest entry (``ImageObject.manifest_entry``): the staged path or the key.
    """Inverse of :func:`output_key_for`; None for anything else under the prefix."""
    prefix = layout.output_prefix_for(name)
    if not output_key.startswith(prefix) or not output_key.endswith(".out"):
        return None
    return output_key[len(prefix) : -len(".out")]


@dataclass(frozen=True)
class TransformConfig:
    """The job-level settings of every transform job we start."""

    model_name: str
    instance_type: str
    instance_count: int
    max_concurrent_transforms: int
    max_payload_mb: int
    invocation_timeout_s: int
    invocation_max_retries: int
    environment: str


def create_transform_job_request(
    chunk: Chunk, layout: JobLayout, config: TransformConfig, parent_job: str | None = None
) -> dict[str, Any]:
    """The exact ``CreateTransformJob`` request for a chunk (pure, so tests assert it as data).

    One image per request (``SplitType=None``, ``SingleRecord``), JSON out, one ``.out`` per
    image (``AssembleWith=None``); tags carry the manifest so the job maps back to its images.
    """
    tags = [
        {"Key": "bincount:manifest", "Value": layout.manifest_uri(chunk.job_name)},
        {"Key": "bincount:images", "Value": str(len(chunk.images))},
        {"Key": "bincount:environment", "Value": config.environment},
    ]
    if parent_job:
        tags.append({"Key": "bincount:parent-job", "Value": parent_job})
    if chunk.attempt:
        tags.append({"Key": "bincount:attempt", "Value": str(chunk.attempt)})
    return {
        "TransformJobName": chunk.job_name,
        "ModelName": config.model_name,
        "MaxConcurrentTransforms": config.max_concurrent_transforms,
        "MaxPayloadInMB": config.max_payload_mb,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": config.invocation_timeout_s,
            "InvocationsMaxRetries": config.invocation_max_retries,
        },
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": layout.manifest_uri(chunk.job_name)}
            },
            "ContentType": chunk.content_type,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": layout.output_uri(chunk.job_name),
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": config.instance_type, "InstanceCount": config.instance_count},
        "Tags": tags,
    }


def images_document(chunk: Chunk, parent_job: str | None = None) -> dict[str, Any]:
    """The ``images.json`` written next to the manifest."""
    document: dict[str, Any] = {
        "job_name": chunk.job_name,
        "bucket": chunk.bucket,
        "content_type": chunk.content_type,
        "parent_job": parent_job,
        "attempt": chunk.attempt,
        "unknown_splits": chunk.unknown_splits,
        "images": [image.to_dict() for image in chunk.images],
    }
    if chunk.purpose:  # only re-counts say it: a normal job's document stays as it was
        document.update(purpose=chunk.purpose, target_model_version=chunk.target_model_version)
    if chunk.witness is not None:
        document["witness"] = chunk.witness.to_dict()
    return document


def chunk_from_images_document(document: Mapping[str, Any]) -> Chunk:
    images = tuple(ImageObject.from_dict(item) for item in document["images"])
    return Chunk(
        job_name=str(document["job_name"]),
        bucket=str(document["bucket"]),
        content_type=str(document["content_type"]),
        images=images,
        attempt=int(document.get("attempt") or 0),
        unknown_splits=int(document.get("unknown_splits") or 0),
        purpose=str(document.get("purpose") or ""),
        target_model_version=str(document.get("target_model_version") or ""),
        witness=ImageObject.from_dict(document["witness"]) if document.get("witness") else None,
    )
