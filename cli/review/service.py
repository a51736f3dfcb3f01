"""The review tools' one seam to a stack: queue, photo panels, photo bytes and corrections.

The console's HTTP API, ``bincount correct`` and the model-lifecycle loop all save through
:meth:`ReviewService.correct` (one code path: :class:`bincount.corrections.Corrector`).
Photos reach the browser through the console itself (``proxy``, the local stack: the moto
endpoint is not the browser's to call) or as presigned GetObject URLs (``presign``, AWS): the
bucket is never made readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import boto3
from bincount.adapters.dynamodb import DynamoCountStore
from bincount.adapters.eventbridge import EventBridgeSender
from bincount.adapters.labels import DynamoLabelStore, S3Photos
from bincount.corrections import CorrectionResult, Corrector, PhotoGone
from bincount.keys import KeyRules, bin_and_capture_time

from cli.review.queue import QueueItem, bin_queue, build_queue, photo_view
from cli.stack import StackResources

PhotoMode = Literal["proxy", "presign"]


def counts_table(resources: StackResources) -> Any:
    """The counts table as a boto3 resource (the local stack: its moto endpoint, dummy keys)."""
    kwargs: dict[str, Any] = {"region_name": resources.region}
    if resources.endpoint_url:
        kwargs.update(
            endpoint_url=resources.endpoint_url, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
    return boto3.resource("dynamodb", **kwargs).Table(resources.counts_table)


@dataclass
class ReviewService:
    resources: StackResources
    reviewer: str
    counts: DynamoCountStore
    labels: DynamoLabelStore
    photos: S3Photos
    corrector: Corrector
    photo_mode: PhotoMode

    @classmethod
    def for_stack(
        cls, resources: StackResources, reviewer: str, photo_mode: PhotoMode | None = None
    ) -> ReviewService:
        table = counts_table(resources)
        counts = DynamoCountStore(table)
        labels = DynamoLabelStore(table)
        photos = S3Photos(resources.client("s3"))
        corrector = Corrector(
            counts=counts,
            labels=labels,
            sender=EventBridgeSender(resources.client("events")),
            bus_name=resources.event_bus,
            photo_exists=photos.exists,
        )
        mode: PhotoMode = photo_mode or ("proxy" if resources.endpoint_url else "presign")
        return cls(resources, reviewer, counts, labels, photos, corrector, mode)

    # -- reading ----------------------------------------------------------------------------------

    def queue(self, bin_id: str = "") -> list[QueueItem]:
        """The review queue (one Scan), or every photo of the bin a reviewer picked (one Query)."""
        if bin_id:
            return bin_queue(self.labels.bin_items(bin_id))
        return build_queue(self.labels.scan())

    def photo_url(self, bin_id: str, key: str, bucket: str, etag: str) -> str:
        if self.photo_mode == "presign":
            return self.photos.presigned_url(bucket, key)
        return "/photo?" + urlencode({"bin_id": bin_id, "key": key, "v": etag})

    def view(self, bin_id: str, key: str) -> dict[str, Any]:
        """One photo's panel; PhotoGone when its record no longer exists."""
        items = self.labels.bin_items(bin_id)
        record = next((item for item in items if item.get("image_key") == key), None)
        if record is None:
            raise PhotoGone(f"photo {key} of bin {bin_id} no longer exists")
        url = self.photo_url(bin_id, key, str(record["image_bucket"]), str(record.get("etag", "")))
        view = photo_view(items, key, url)
        assert view is not None
        return view

    def photo(self, bin_id: str, key: str) -> tuple[bytes, str]:
        """A photo's bytes for the proxy: only photos that have a record, from the record's bucket."""
        record = self.counts.get_image(bin_id, key)
        if record is None:
            raise PhotoGone(f"photo {key} of bin {bin_id} has no record")
        body, content_type, _ = self.photos.get(str(record["image_bucket"]), key)
        return body, content_type

    def bin_of(self, key: str) -> str:
        """The bin an ingest key belongs to (the pipeline's own key rules)."""
        return bin_and_capture_time(key, KeyRules(prefix=self.resources.ingest_prefix))[0]

    # -- writing ----------------------------------------------------------------------------------

    def correct(
        self, key: str, count: object, version: str | None = None, bin_id: str = ""
    ) -> CorrectionResult:
        """Save a human count (raises CorrectionRefused with the reviewer's one line)."""
        return self.corrector.correct(bin_id or self.bin_of(key), key, count, self.reviewer, version)
