"""S3 notifications from SQS read into uploads (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bincount.notifications import MalformedNotification, parse_notification
from bincount.uploads import KeyRules
from pipeline_support import s3_notification

RULES = KeyRules()
BUCKET = "ingest"


def test_test_event_is_recognised_and_carries_no_images(event_file: Any) -> None:
    body = event_file("sqs_s3_test_event.json")["Records"][0]["body"]
    notification = parse_notification(body, RULES)
    assert notification.is_test_event and notification.images == ()


def test_sample_event_keys_are_url_decoded_form_style(event_file: Any) -> None:
    records = event_file("sqs_s3_object_created.json")["Records"]
    first = parse_notification(records[0]["body"], RULES).images[0]
    second = parse_notification(records[1]["body"], RULES).images[0]
    assert (first.bin_id, first.captured_at) == ("BIN-0042", "2026-11-26T10:15:00.000Z")
    assert first.etag == "9b2cf535f27731c974343645a3985328" and first.content_type == "image/jpeg"
    assert second.key == "incoming/BIN 0043/photo=1.jpg"  # '+' is a space, %3D is '='
    assert second.bin_id == "BIN 0043"
    assert second.captured_at == "2026-11-26T10:16:41.007Z"  # no time in the key: the event time


def test_several_records_per_message_and_what_is_skipped() -> None:
    """Everything under the prefix is an upload to account for (a .txt gets an error record later);
    keys elsewhere and folder markers are not uploads of photos at all."""
    message: dict[str, Any] = {"Records": []}
    keys = (
        "incoming/B1/a.jpg",
        "incoming/B1/notes.txt",
        "incoming/B2/b.PNG",
        "elsewhere/B3/c.jpg",
        "incoming/B4/",
    )
    for key in keys:
        message["Records"] += s3_notification(BUCKET, key, "e")["Records"]
    notification = parse_notification(json.dumps(message), RULES)
    assert [image.key for image in notification.images] == [
        "incoming/B1/a.jpg",
        "incoming/B1/notes.txt",
        "incoming/B2/b.PNG",
    ]
    assert notification.images[2].content_type == "image/png"
    assert [RULES.has_image_suffix(image.key) for image in notification.images] == [True, False, True]
    assert notification.skipped_keys == ("elsewhere/B3/c.jpg", "incoming/B4/")


def test_version_sequencer_and_upload_time_come_from_the_notification(event_file: Any) -> None:
    record = event_file("sqs_s3_object_created.json")["Records"][0]
    image = parse_notification(record["body"], RULES).images[0]
    assert image.version_id == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH"
    assert image.sequencer == "0066C4A1B2C3D4E5F6"
    assert image.uploaded_at == "2026-11-26T10:15:03.412Z"
    assert image.identity == (image.bucket, image.key, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH")


def test_removal_events_are_ignored() -> None:
    message = s3_notification(BUCKET, "incoming/B1/a.jpg", "e")
    message["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    assert parse_notification(json.dumps(message), RULES).images == ()


@pytest.mark.parametrize(
    "body", ["not json", "[]", '{"Records": "x"}', '{"Records": [{"eventName": "ObjectCreated:Put"}]}']
)
def test_malformed_bodies_raise(body: str) -> None:
    with pytest.raises(MalformedNotification):
        parse_notification(body, RULES)
