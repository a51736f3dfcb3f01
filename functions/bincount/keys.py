"""S3 notifications as SQS delivers them, and what an image key says about its bin.

S3 → SQS delivers at least once, one record per message in practice (several are allowed), keys
URL-encoded form-style, and an ``s3:TestEvent`` without ``Records`` when the notification is
configured: that one is acknowledged and dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote_plus

# The image suffixes and content types live in image_formats; re-exported under their old names.
from bincount.image_formats import CONTENT_TYPES as CONTENT_TYPES
from bincount.image_formats import FALLBACK_CONTENT_TYPE, content_type_for
from bincount.image_formats import IMAGE_SUFFIXES as DEFAULT_IMAGE_SUFFIXES
from bincount.timefmt import canonical_time

# Applied to the key relative to the ingest prefix: `<bin_id>/<anything>.<ext>`; a file name that
# starts with a compact UTC timestamp (`20261126T101500Z-...`) gives the capture time.
DEFAULT_KEY_PATTERN = (
    r"^(?P<bin_id>[^/]+)/(?:.*/)?(?:(?P<captured_at>\d{8}T\d{6}(?:\.\d+)?Z)[^/]*|[^/]+)\.[A-Za-z0-9]+$"
)


class MalformedNotification(ValueError):
    """An SQS body that is neither an S3 notification nor the test event: it goes to the DLQ."""


@dataclass(frozen=True, order=True)
class ImageObject:
    """One uploaded photo with everything the pipeline derives from its notification.

    ``captured_at`` orders photos of one bin; it comes from the key when the key pattern captures
    it, else from the S3 event time (upload time).
    """

    bucket: str
    key: str
    etag: str
    size: int
    bin_id: str
    captured_at: str
    content_type: str

    @property
    def identity(self) -> tuple[str, str, str]:
        """Two notifications of the same object version name the same image."""
        return (self.bucket, self.key, self.etag)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "bin_id": self.bin_id,
            "captured_at": self.captured_at,
            "content_type": self.content_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageObject:
        return cls(
            bucket=str(data["bucket"]),
            key=str(data["key"]),
            etag=str(data.get("etag", "")),
            size=int(data.get("size", 0)),
            bin_id=str(data["bin_id"]),
            captured_at=str(data["captured_at"]),
            content_type=str(data.get("content_type", FALLBACK_CONTENT_TYPE)),
        )


@dataclass(frozen=True)
class Notification:
    """What one SQS message carried: the test event, or zero or more image objects."""

    is_test_event: bool
    images: tuple[ImageObject, ...]
    skipped_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyRules:
    """How keys are read: the ingest prefix, the accepted suffixes and the bin pattern."""

    prefix: str = "incoming/"
    suffixes: tuple[str, ...] = DEFAULT_IMAGE_SUFFIXES
    pattern: str = DEFAULT_KEY_PATTERN

    def is_image(self, key: str) -> bool:
        return key.lower().endswith(self.suffixes) and key.startswith(self.prefix)


def bin_and_capture_time(key: str, rules: KeyRules) -> tuple[str, str | None]:
    """The bin id and (if the key holds one) the capture time of an image key.

    Fallback when the pattern does not match (e.g. a photo directly under the prefix, as ABID
    names them, ``incoming/00123.jpg``): the file name without suffix is the bin id.
    """
    relative = key[len(rules.prefix) :] if rules.prefix and key.startswith(rules.prefix) else key
    match = re.match(rules.pattern, relative)
    if match and match.group("bin_id"):
        captured = match.groupdict().get("captured_at")
        return match.group("bin_id"), canonical_time(captured) if captured else None
    return PurePosixPath(relative).stem or relative, None


def parse_notification(body: str, rules: KeyRules) -> Notification:
    """Parse one SQS message body written by S3 (raw message delivery, no SNS envelope)."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedNotification(f"body is not JSON: {error}") from error
    if not isinstance(message, dict):
        raise MalformedNotification("body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return Notification(is_test_event=True, images=())
    records = message.get("Records")
    if not isinstance(records, list):
        raise MalformedNotification("no Records and not an s3:TestEvent")
    images: list[ImageObject] = []
    skipped: list[str] = []
    for record in records:
        try:
            if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
                continue
            s3 = record["s3"]
            key = unquote_plus(s3["object"]["key"])
            if not rules.is_image(key):
                skipped.append(key)
                continue
            bin_id, captured = bin_and_capture_time(key, rules)
            images.append(
                ImageObject(
                    bucket=s3["bucket"]["name"],
                    key=key,
                    etag=str(s3["object"].get("eTag", s3["object"].get("etag", ""))).strip('"'),
                    size=int(s3["object"].get("size", 0)),
                    bin_id=bin_id,
                    captured_at=captured or canonical_time(record["eventTime"]),
                    content_type=content_type_for(key),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedNotification(f"record is not an S3 notification: {error!r}") from error
    return Notification(is_test_event=False, images=tuple(images), skipped_keys=tuple(skipped))
