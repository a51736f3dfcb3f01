"""Which notified uploads may become transform-job inputs, and the error record for the rest.

The batcher decides here, before any job exists, so that a photo no job could handle gets its
error record at once instead of failing a job (and every photo with it) later. Every rule is
pure: it reads the notification only (key, size, times), never the object.

Error codes the batcher assigns (docs/pipeline.md, "Error codes"):

``unsupported_suffix``     not one of ``IMAGE_SUFFIXES`` (compared case-insensitively)
``key_too_long``           the counts table's sort key for this key would exceed 1024 bytes
``object_too_large``       larger than ``MaxPayloadInMB``: the transform request would fail
``capture_time_in_future`` the time in the file name is later than upload time + the allowed skew
``invalid_capture_time``   the file name holds a capture time that is no date (``20261399T...``)
``image_unavailable``      the notified version was deleted or overwritten before it was staged

A notification naming another bucket is no image of ours: it is *refused* (the message goes to
the ingest DLQ), not recorded, because a record would let anyone who can send to the queue write
counts and events for any bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bincount.count_records import sort_key_fits
from bincount.serving_records import ErrorResult
from bincount.timefmt import format_time, parse_time
from bincount.uploads import ImageObject, KeyRules, bin_and_capture_time

UNSUPPORTED_SUFFIX = "unsupported_suffix"
KEY_TOO_LONG = "key_too_long"
OBJECT_TOO_LARGE = "object_too_large"
CAPTURE_TIME_IN_FUTURE = "capture_time_in_future"
INVALID_CAPTURE_TIME = "invalid_capture_time"
IMAGE_UNAVAILABLE = "image_unavailable"

BATCHER_ERROR_CODES = frozenset(
    {
        UNSUPPORTED_SUFFIX,
        KEY_TOO_LONG,
        OBJECT_TOO_LARGE,
        CAPTURE_TIME_IN_FUTURE,
        INVALID_CAPTURE_TIME,
        IMAGE_UNAVAILABLE,
    }
)

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class AdmissionRules:
    """``ingest_bucket`` empty: any bucket is accepted (tests); the template always sets it."""

    keys: KeyRules
    ingest_bucket: str = ""
    max_payload_mb: int = 20
    max_capture_skew_s: int = 900

    def is_foreign(self, image: ImageObject) -> bool:
        return bool(self.ingest_bucket) and image.bucket != self.ingest_bucket


def capture_time_error(image: ImageObject, max_skew_s: int) -> str | None:
    """Why the capture time cannot be trusted, or None.

    Rejected rather than clamped: a name that claims a future time comes from a wrong camera
    clock or a crafted name, and LATEST only moves forward in capture time, so one such photo
    would freeze the bin's latest count until that date. An error record (and the
    ``Bin Image Rejected`` event) tells whoever runs the camera; a re-upload with a right name
    is counted.
    """
    if not image.uploaded_at or image.captured_at <= image.uploaded_at:
        return None
    latest_allowed = parse_time(image.uploaded_at) + timedelta(seconds=max_skew_s)
    if parse_time(image.captured_at) <= latest_allowed:
        return None
    return (
        f"capture time {image.captured_at} from the file name is later than the upload time "
        f"{image.uploaded_at} + {max_skew_s} s (latest allowed {format_time(latest_allowed)}): "
        "fix the camera clock or the name and upload again"
    )


def rejection_for(image: ImageObject, rules: AdmissionRules) -> ErrorResult | None:
    """The error record an upload gets from the batcher, or None when a job may read it."""
    if not rules.keys.has_image_suffix(image.key):
        allowed = ", ".join(rules.keys.suffixes)
        message = f"not a photo suffix ({allowed}, any letter case): {image.key}"
        return ErrorResult(UNSUPPORTED_SUFFIX, message)
    if not sort_key_fits(image.key):
        size = len(image.key.encode())
        return ErrorResult(
            KEY_TOO_LONG, f"key of {size} bytes is too long for the counts table's sort key (1024 bytes)"
        )
    if image.size > rules.max_payload_mb * MEGABYTE:
        return ErrorResult(
            OBJECT_TOO_LARGE,
            f"photo of {image.size} bytes exceeds MaxPayloadInMB={rules.max_payload_mb}",
        )
    try:
        bin_and_capture_time(image.key, rules.keys)
    except ValueError as error:
        return ErrorResult(INVALID_CAPTURE_TIME, f"the capture time in the file name is no date: {error}")
    future = capture_time_error(image, rules.max_capture_skew_s)
    if future:
        return ErrorResult(CAPTURE_TIME_IN_FUTURE, future)
    return None
