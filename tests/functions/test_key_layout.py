"""What an ingest key says: its bin, its capture time and the content type it is sent with (pure)."""

from __future__ import annotations

import pytest
from bincount.image_formats import content_type_for, sniff_content_type
from bincount.uploads import KeyRules, bin_and_capture_time

RULES = KeyRules()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/BIN-7/a.jpg", ("BIN-7", None)),
        ("incoming/BIN-7/cam/2/a.jpg", ("BIN-7", None)),
        ("incoming/BIN-7/20261126T101500Z_x.jpg", ("BIN-7", "2026-11-26T10:15:00.000Z")),
        ("incoming/00123.jpg", ("00123", None)),  # fallback: ABID style, the file name is the bin
    ],
)
def test_bin_and_capture_time_default_pattern(key: str, expected: tuple[str, str | None]) -> None:
    assert bin_and_capture_time(key, RULES) == expected


def test_custom_pattern() -> None:
    rules = KeyRules(prefix="p/", pattern=r"^site-\w+/(?P<bin_id>\w+)-(?P<captured_at>\d{8}T\d{6}Z)\.jpg$")
    assert bin_and_capture_time("p/site-a/B9-20260101T000001Z.jpg", rules) == (
        "B9",
        "2026-01-01T00:00:01.000Z",
    )


def test_content_types() -> None:
    assert content_type_for("a.JPEG") == "image/jpeg"
    assert content_type_for("a.png") == "image/png"
    assert content_type_for("a.webp") == "application/x-image"


def test_image_type_is_read_from_the_bytes_not_the_name() -> None:
    assert sniff_content_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_content_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    for other in (b"<!doctype html>", b"GIF89a", b"\xff\xd8", b""):
        assert sniff_content_type(other) is None
