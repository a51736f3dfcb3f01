"""The review tools' one seam to a stack: queue, photo panels, photo bytes and corrections.

The console's HTTP API, ``bincount correct`` and the model-lifecycle loop all save through
:meth:`ReviewService.correct` (one code path: :class:`bincount.corrections.Corrector`).
Photos reach the browser through the console itself (``proxy``, the local stack: the moto
endpoint is not the browser's to call) or as presigned GetObject URLs (``presign``, AWS): the
bucket is never made readable. Either way the bytes are the reviewed upload's: the object version
its record names (bincount.adapters.labels.S3Photos).

A photo is one record (``bin_id`` + its sort key ``sk``); ``bincount correct`` names it by S3 key
and optional version, which :meth:`ReviewService.resolve` turns into that record.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from io import BytesIO
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import boto3
from bincount.adapters.dynamodb import DynamoCountStore
from bincount.adapters.labels import DynamoLabelStore, S3Photos
from bincount.corrections import (
    TYPED,
    CorrectionRefused,
    CorrectionResult,
    Corrector,
    MalformedRecord,
    PhotoGone,
    image_of,
    label_source_of,
)
from bincount.image_formats import sniff_content_type
from bincount.uploads import KeyRules, bin_and_capture_time

from cli.review.chart import probability_bars
from cli.review.queue import QueueItem, bin_queue, build_queue, is_image, photo_view
from cli.stack import StackResources

PhotoMode = Literal["proxy", "presign"]
#: Pillow's names of the formats :func:`bincount.image_formats.sniff_content_type` knows.
PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


class UnreadableRecord(CorrectionRefused):
    """A record whose fields are not what the pipeline writes: one line naming it, nothing shown."""

    status = 422


class NotAPhoto(CorrectionRefused):
    """The stored bytes are no supported image (whatever their name or Content-Type say)."""

    status = 415


def photo_type(body: bytes) -> str | None:
    """The image type of ``body`` judged by its content: the leading bytes name a supported format
    and Pillow reads the file's structure as that format (``verify``: no pixels decoded)."""
    content_type = sniff_content_type(body)
    if content_type is None:
        return None
    try:
        from PIL import Image
    except ImportError:  # the console's own dependencies: the magic bytes alone
        return content_type
    try:
        with Image.open(BytesIO(body)) as image:
            image.verify()
            read_as = image.format
    except Exception:  # Pillow raises many kinds for malformed files: any of them means "not a photo"
        return None
    return content_type if read_as == PILLOW_FORMATS[content_type] else None


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
        corrector = Corrector(counts=counts, labels=labels, photo_exists=photos.exists)
        mode: PhotoMode = photo_mode or ("proxy" if resources.endpoint_url else "presign")
        return cls(resources, reviewer, counts, labels, photos, corrector, mode)

    # -- reading ----------------------------------------------------------------------------------

    def queue(self, bin_id: str = "", problems: list[str] | None = None) -> list[QueueItem]:
        """The review queue (one Scan), or every photo of the bin a reviewer picked (one Query);
        malformed records are left out, one line each in ``problems``."""
        if bin_id:
            return bin_queue(self.labels.bin_items(bin_id), problems)
        return build_queue(self.labels.scan(), problems)

    def photo_url(self, record: dict[str, Any]) -> str:
        if self.photo_mode == "presign":
            return self.photos.presigned_url(image_of(record))
        params = {"bin_id": str(record["bin_id"]), "sk": str(record["sk"]), "v": str(record.get("etag", ""))}
        return "/photo?" + urlencode(params)

    def view(self, bin_id: str, sk: str) -> dict[str, Any]:
        """One upload's panel; PhotoGone when its record no longer exists."""
        items = self.labels.bin_items(bin_id)
        record = next((item for item in items if item.get("sk") == sk), None)
        if record is None or not is_image(record):
            raise PhotoGone(f"photo {sk} of bin {bin_id} no longer exists")
        try:
            view = photo_view(items, sk, self.photo_url(record))
        except MalformedRecord as error:
            raise UnreadableRecord(str(error)) from error
        except KeyError as error:  # photo_url of a record without its bucket, key or bin
            raise UnreadableRecord(f"record {bin_id} {sk}: no {error}") from error
        assert view is not None
        view["bars"] = probability_bars(view["probabilities"], view["model_count"])
        if view["label"] is not None:
            view["label"]["source"] = label_source_of(record)
        return view

    def photo(self, bin_id: str, sk: str) -> tuple[bytes, str]:
        """An upload's bytes for the proxy: only photos that have a record, that record's version,
        and only when the bytes are a supported image; the type is the content's, never the one
        its uploader stored (NotAPhoto otherwise)."""
        record = self.counts.get_image(bin_id, sk)
        if record is None:
            raise PhotoGone(f"photo {sk} of bin {bin_id} has no record")
        body, _stored_type = self.photos.get(image_of(record))
        content_type = photo_type(body)
        if content_type is None:
            raise NotAPhoto(f"{record.get('image_key')} is not a JPEG or PNG image: not shown")
        return body, content_type

    @cached_property
    def photo_origin(self) -> str:
        """Where the browser loads photos from besides the console: the presigned URLs' origin
        (the ingest bucket's S3 endpoint) in ``presign`` mode, nothing in ``proxy`` mode."""
        if self.photo_mode != "presign":
            return ""
        url = self.photos.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.resources.ingest_bucket, "Key": "origin"}, ExpiresIn=60
        )
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def bin_of(self, key: str) -> str:
        """The bin an ingest key belongs to (the pipeline's own key rules)."""
        return bin_and_capture_time(key, KeyRules(prefix=self.resources.ingest_prefix))[0]

    def resolve(self, key: str, version: str | None = None, bin_id: str = "") -> tuple[str, str]:
        """(bin_id, record sort key) of the upload of ``key`` named by ``version``.

        ``version`` is the S3 version id (or the record's ``image_version``); without it the key
        must have exactly one upload: with several, the reviewer must say which photo they saw.
        """
        bin_id = bin_id or self.bin_of(key)
        uploads = [
            item for item in self.labels.bin_items(bin_id) if is_image(item) and item.get("image_key") == key
        ]
        if version:
            uploads = [item for item in uploads if item.get("image_version") == version]
        if not uploads:
            which = f" version {version}" if version else ""
            raise PhotoGone(f"no record of photo {key}{which} in bin {bin_id}")
        if len(uploads) > 1:
            listed = ", ".join(
                f"{item.get('image_version')} (uploaded {item.get('uploaded_at') or '?'})"
                for item in sorted(uploads, key=lambda item: str(item.get("uploaded_at") or ""))
            )
            raise CorrectionRefused(f"{key} has {len(uploads)} uploads: {listed}; pass --version")
        return bin_id, str(uploads[0]["sk"])

    # -- writing ----------------------------------------------------------------------------------

    def correct(
        self, bin_id: str, sk: str, count: object, seen: str | None = None, source: str = TYPED
    ) -> CorrectionResult:
        """Save a human count on one upload's record (raises CorrectionRefused with the reviewer's
        line); ``source`` ``accepted`` when the person confirmed the model's count."""
        return self.corrector.correct(bin_id, sk, count, self.reviewer, seen, source)
