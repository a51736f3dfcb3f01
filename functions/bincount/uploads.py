"""One uploaded photo and what its key says: upload identity, bin id and capture time.

An upload is one object version (:class:`ImageObject`); two notifications of it name the same
image, a re-upload of the key is another one. Keys follow the layout ``<prefix><bin_id>/...``
(:class:`KeyRules`), the file name may start with the capture time. Reading S3 notifications
into these objects is ``notifications``' job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bincount.image_formats import FALLBACK_CONTENT_TYPE, IMAGE_SUFFIXES
from bincount.timefmt import canonical_time

# Applied to the key relative to the ingest prefix: `<bin_id>/<anything>.<ext>`; a file name that
# starts with a compact UTC timestamp (`20261126T101500Z-...`) gives the capture time.
DEFAULT_KEY_PATTERN = (
    r"^(?P<bin_id>[^/]+)/(?:.*/)?(?:(?P<captured_at>\d{8}T\d{6}(?:\.\d+)?Z)[^/]*|[^/]+)\.[A-Za-z0-9]+$"
)


@dataclass(frozen=True, order=True)
class ImageObject:
    """One uploaded photo (one object version) with everything the pipeline derives from its notification.

    ``captured_at`` orders photos of one bin; it comes from the key when the key pattern captures
    it, else from the S3 event time (``uploaded_at``). ``version_id`` and ``sequencer`` come from
    the notification; ``staged_key`` is where the batcher copied this version in the results
    bucket (empty: not staged, the job reads the key itself).
    """

    bucket: str
    key: str
    etag: str
    size: int
    bin_id: str
    captured_at: str
    content_type: str
    version_id: str = ""
    sequencer: str = ""
    uploaded_at: str = ""
    staged_key: str = ""

    @property
    def version(self) -> str:
        """Which upload of the key this is: the S3 version id, else the sequencer, else the ETag.

        A versioned bucket names every upload with a version id; without versioning (or for the
        ``null`` version of a suspended bucket) the notification's sequencer still differs per
        upload of a key; the ETag is the last resort of hand-made notifications.
        """
        if self.version_id and self.version_id != "null":
            return self.version_id
        if self.sequencer:
            return f"sequencer:{self.sequencer}"
        return f"etag:{self.etag}"

    @property
    def identity(self) -> tuple[str, str, str]:
        """Two notifications of the same upload name the same image; a re-upload is another image."""
        return (self.bucket, self.key, self.version)

    @property
    def manifest_entry(self) -> str:
        """The path the transform job reads, relative to the manifest prefix (and names its output)."""
        return self.staged_key or self.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "etag": self.etag,
            "size": self.size,
            "bin_id": self.bin_id,
            "captured_at": self.captured_at,
            "content_type": self.content_type,
            "version_id": self.version_id,
            "sequencer": self.sequencer,
            "uploaded_at": self.uploaded_at,
            "staged_key": self.staged_key,
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
            version_id=str(data.get("version_id") or ""),
            sequencer=str(data.get("sequencer") or ""),
            uploaded_at=str(data.get("uploaded_at") or ""),
            staged_key=str(data.get("staged_key") or ""),
        )


@dataclass(frozen=True)
class KeyRules:
    """How keys are read: the ingest prefix, the accepted suffixes and the bin pattern."""

    prefix: str = "incoming/"
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    pattern: str = DEFAULT_KEY_PATTERN

    def is_image(self, key: str) -> bool:
        return self.has_image_suffix(key) and key.startswith(self.prefix)

    def has_image_suffix(self, key: str) -> bool:
        """Case-insensitive: ``.Jpg`` and ``.PNG`` are photos too (S3's filters are case-sensitive,
        so the template filters on the prefix only and this decides)."""
        return key.lower().endswith(tuple(suffix.lower() for suffix in self.suffixes))

    def is_ingested(self, key: str) -> bool:
        """Under the prefix and not a folder marker: every such object ends as a count or an error."""
        return key.startswith(self.prefix) and not key.endswith("/")


def bin_and_name_time(key: str, rules: KeyRules) -> tuple[str, str | None]:
    """The bin id and the capture-time text the key holds, as written (not yet parsed).

    Fallback when the pattern does not match (e.g. a photo directly under the prefix, as ABID
    names them, ``incoming/00123.jpg``): the file name without suffix is the bin id.
    """
    relative = key[len(rules.prefix) :] if rules.prefix and key.startswith(rules.prefix) else key
    match = re.match(rules.pattern, relative)
    if match and match.group("bin_id"):
        return match.group("bin_id"), match.groupdict().get("captured_at") or None
    return PurePosixPath(relative).stem or relative, None


def bin_and_capture_time(key: str, rules: KeyRules) -> tuple[str, str | None]:
    """The bin id and (if the key holds one) the capture time of an image key.

    Raises ValueError for a time that is no date (``20261399T...``); the batcher rejects those
    uploads with ``invalid_capture_time`` instead of failing their message.
    """
    bin_id, text = bin_and_name_time(key, rules)
    return bin_id, canonical_time(text) if text else None
