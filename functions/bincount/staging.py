"""Pinning the notified version: an immutable copy per upload that the transform job reads.

A Batch Transform manifest names keys, never versions, so a job pointed at the ingest key would
read whatever is there when it runs: a re-upload between notification and job would be counted
twice and the first bytes never. The batcher therefore copies the notified version (CopyObject
with ``VersionId``; without versioning, ``CopySourceIfMatch`` on the notified ETag) to
``<staging prefix><sha256 of the upload's identity>.<ext>`` in the results bucket and points the
manifest there. The staged name is a function of the upload only, so redeliveries, re-drives and
retries of any job share one copy, and the collector maps outputs back by it (images.json keeps
key, version and staged name together).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Protocol

from bincount.admission import IMAGE_UNAVAILABLE
from bincount.serving_records import ErrorResult
from bincount.uploads import ImageObject

STAGED_NAME_HEX = 32


class VersionGone(Exception):
    """The notified version no longer exists (deleted, or overwritten in an unversioned bucket)."""


class VersionCopier(Protocol):
    def exists(self, bucket: str, key: str) -> bool:
        """Whether the staged copy is already there (a redelivery: no second copy)."""
        ...

    def copy_version(self, image: ImageObject, bucket: str, key: str) -> None:
        """Copy exactly the notified version to ``bucket/key``; VersionGone when it is gone."""
        ...


def staged_name(image: ImageObject) -> str:
    """``<32 hex of sha256(bucket, key, version)><suffix>``: short (any key fits), one per upload."""
    bucket, key, version = image.identity
    digest = hashlib.sha256(f"{bucket}\0{key}\0{version}".encode()).hexdigest()[:STAGED_NAME_HEX]
    suffix = PurePosixPath(key).suffix.lower()
    return f"{digest}{suffix}" if suffix.isascii() and suffix[1:].isalnum() else digest


@dataclass
class StagingReport:
    staged: list[ImageObject] = field(default_factory=list)  # with staged_key set
    unavailable: list[tuple[ImageObject, ErrorResult]] = field(default_factory=list)
    failed: list[tuple[ImageObject, Exception]] = field(default_factory=list)  # transient: retry the message


def stage_images(
    images: Sequence[ImageObject], copier: VersionCopier, results_bucket: str, prefix: str, workers: int = 16
) -> StagingReport:
    """Stage every image (concurrently); sort the outcomes into staged, gone for good, and failed."""
    report = StagingReport()

    def stage(image: ImageObject) -> tuple[ImageObject, ImageObject | ErrorResult | Exception]:
        name = staged_name(image)
        try:
            if not copier.exists(results_bucket, prefix + name):
                copier.copy_version(image, results_bucket, prefix + name)
        except VersionGone as error:
            return image, ErrorResult(IMAGE_UNAVAILABLE, f"the notified version is gone: {error}"[:1000])
        except Exception as error:  # throttling, access, network: the message is retried
            return image, error
        return image, replace(image, staged_key=name)

    if not images:
        return report
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(images)))) as pool:
        for image, outcome in pool.map(stage, images):
            if isinstance(outcome, ImageObject):
                report.staged.append(outcome)
            elif isinstance(outcome, ErrorResult):
                report.unavailable.append((image, outcome))
            else:
                report.failed.append((image, outcome))
    return report
