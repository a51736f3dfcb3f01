"""S3 notifications as SQS delivers them, read into ``bincount.uploads.ImageObject``.

S3 → SQS delivers at least once, one record per message in practice (several are allowed), keys
URL-encoded form-style, and an ``s3:TestEvent`` without ``Records`` when the notification is
configured: that one is acknowledged and dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from bincount.image_formats import content_type_for
from bincount.timefmt import canonical_time
from bincount.uploads import ImageObject, KeyRules, bin_and_capture_time, bin_and_name_time


class MalformedNotification(ValueError):
    """An SQS body that is neither an S3 notification nor the test event: it goes to the DLQ."""


@dataclass(frozen=True)
class Notification:
    """What one SQS message carried: the test event, or zero or more image objects."""

    is_test_event: bool
    images: tuple[ImageObject, ...]
    skipped_keys: tuple[str, ...] = ()


def image_from_record(record: dict[str, Any], key: str, rules: KeyRules) -> ImageObject:
    """One ``ObjectCreated`` record (key already decoded) as an image; unsupported suffixes too,
    so the batcher can give them an error record instead of dropping them."""
    s3_object = record["s3"]["object"]
    try:
        bin_id, captured = bin_and_capture_time(key, rules)
    except ValueError:  # no valid date in the name: ordered by upload time, rejected by admission
        bin_id, captured = bin_and_name_time(key, rules)[0], None
    uploaded_at = canonical_time(record["eventTime"])
    return ImageObject(
        bucket=record["s3"]["bucket"]["name"],
        key=key,
        etag=str(s3_object.get("eTag", s3_object.get("etag", ""))).strip('"'),
        size=int(s3_object.get("size", 0)),
        bin_id=bin_id,
        captured_at=captured or uploaded_at,
        content_type=content_type_for(key),
        version_id=str(s3_object.get("versionId") or ""),
        sequencer=str(s3_object.get("sequencer") or ""),
        uploaded_at=uploaded_at,
    )


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
            if not rules.is_ingested(key):
                skipped.append(key)
                continue
            images.append(image_from_record(record, key, rules))
        except (KeyError, TypeError, ValueError) as error:
            raise MalformedNotification(f"record is not an S3 notification: {error!r}") from error
    return Notification(is_test_event=False, images=tuple(images), skipped_keys=tuple(skipped))
