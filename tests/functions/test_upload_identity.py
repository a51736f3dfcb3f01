"""Which upload an image is, what the batcher refuses before any job, and the order LATEST moves in
(pure: no AWS)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from bincount.admission import BATCHER_ERROR_CODES, AdmissionRules, rejection_for
from bincount.count_records import (
    MAX_SORT_KEY_BYTES,
    LatestDecision,
    LatestState,
    decide_latest,
    image_sk,
    sort_key_fits,
    version_token,
)
from bincount.intake import Staging, plan_intake
from bincount.notifications import parse_notification
from bincount.staging import VersionGone, staged_name
from bincount.uploads import ImageObject, KeyRules
from pipeline_support import s3_notification

UPLOADED = "2026-11-26T10:15:03.412Z"
RULES = AdmissionRules(keys=KeyRules(), ingest_bucket="ingest", max_payload_mb=20, max_capture_skew_s=900)


def upload(
    key: str = "incoming/B1/a.jpg",
    version_id: str = "v1",
    captured: str = UPLOADED,
    uploaded: str = UPLOADED,
    size: int = 1000,
    sequencer: str = "0A",
) -> ImageObject:
    return ImageObject(
        "ingest", key, "etag", size, "B1", captured, "image/jpeg", version_id, sequencer, uploaded
    )


# -- identity ------------------------------------------------------------------------------------


def test_version_id_then_sequencer_then_etag_name_the_upload() -> None:
    assert upload(version_id="v1").version == "v1"
    assert upload(version_id="null", sequencer="0B").version == "sequencer:0B"  # suspended versioning
    assert upload(version_id="", sequencer="").version == "etag:etag"
    assert upload(version_id="v1").identity != upload(version_id="v2").identity
    assert (
        upload(version_id="v1").identity
        == upload(version_id="v1", captured="2027-01-01T00:00:00.000Z").identity
    )


def test_sort_key_is_per_upload_and_always_fits() -> None:
    first, second = image_sk("incoming/B1/a.jpg", "v1"), image_sk("incoming/B1/a.jpg", "v2")
    assert (
        first != second
        and first.startswith("IMAGE#incoming/B1/a.jpg#")
        and second.startswith("IMAGE#incoming/B1/a.jpg#")
    )
    assert image_sk("incoming/B1/a.jpg", "v1") == first  # deterministic: a replay finds its record
    assert image_sk("k", "x" * 5000).startswith("IMAGE#k#")  # any version id length
    longest = "k" * (MAX_SORT_KEY_BYTES - len("IMAGE##") - 16)
    assert sort_key_fits(longest) and not sort_key_fits(longest + "k")
    assert not sort_key_fits("é" * 501)  # bytes, not characters
    hashed = image_sk(longest + "k", "v1")
    assert hashed.startswith("IMAGE#~sha256:") and len(hashed.encode()) <= MAX_SORT_KEY_BYTES


def test_staged_name_is_one_per_upload() -> None:
    assert staged_name(upload(version_id="v1")) == staged_name(upload(version_id="v1"))
    assert staged_name(upload(version_id="v1")) != staged_name(upload(version_id="v2"))
    assert staged_name(upload(key="incoming/B1/A.JPEG")).endswith(".jpeg")
    assert len(staged_name(upload(key="incoming/B1/" + "x" * 1000 + ".png"))) == 32 + len(".png")


# -- admission -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["incoming/B1/a.Jpg", "incoming/B1/a.JPEG", "incoming/B1/a.PNG", "incoming/B1/a.jpg"]
)
def test_suffix_case_does_not_matter(key: str) -> None:
    assert rejection_for(upload(key=key), RULES) is None


@pytest.mark.parametrize("key", ["incoming/B1/notes.txt", "incoming/B1/a.gif", "incoming/B1/jpg"])
def test_other_suffixes_get_an_error_record(key: str) -> None:
    error = rejection_for(upload(key=key), RULES)
    assert error is not None and error.code == "unsupported_suffix"


def test_keys_too_long_for_the_sort_key_are_rejected() -> None:
    error = rejection_for(upload(key="incoming/B1/" + "x" * 1000 + ".jpg"), RULES)
    assert error is not None and error.code == "key_too_long"


def test_photos_over_the_payload_limit_are_rejected() -> None:
    assert rejection_for(upload(size=20 * 1024 * 1024), RULES) is None
    error = rejection_for(upload(size=20 * 1024 * 1024 + 1), RULES)
    assert error is not None and error.code == "object_too_large" and "MaxPayloadInMB=20" in error.message


@pytest.mark.parametrize(
    ("captured", "rejected"),
    [
        ("2099-12-31T00:00:00.000Z", True),
        ("2026-11-26T10:30:03.413Z", True),  # 1 ms beyond 15 minutes of skew
        ("2026-11-26T10:30:03.412Z", False),  # exactly the skew: a drifting camera clock is fine
        ("2020-01-01T00:00:00.000Z", False),
    ],
)
def test_capture_time_may_not_lie_in_the_future(captured: str, rejected: bool) -> None:
    error = rejection_for(upload(captured=captured), RULES)
    assert (error is not None) == rejected
    if error is not None:
        assert error.code == "capture_time_in_future" and UPLOADED in error.message


def test_a_name_time_that_is_no_date_is_an_error_record_not_a_malformed_message() -> None:
    body = json.dumps(s3_notification("ingest", "incoming/B1/20261399T250000Z-x.jpg", "e", version_id="v1"))
    (image,) = parse_notification(body, KeyRules()).images
    assert (image.bin_id, image.captured_at) == ("B1", UPLOADED)  # ordered by upload time meanwhile
    error = rejection_for(image, RULES)
    assert error is not None and error.code == "invalid_capture_time"


# -- the order LATEST moves in ------------------------------------------------------------------


def held(image: ImageObject) -> LatestState:
    return LatestState(
        version_token(image),
        image.captured_at,
        image.key,
        image.etag,
        uploaded_at=image.uploaded_at,
        sequencer=image.sequencer,
        version_id=image.version,
    )


def test_a_re_upload_of_a_named_photo_moves_latest_and_the_old_upload_never_comes_back() -> None:
    """Same key, same capture time from the name: the later upload wins, whatever arrives first."""
    first = upload(
        version_id="v1", captured="2026-11-26T10:15:00.000Z", uploaded=UPLOADED, sequencer="0066C4A1"
    )
    second = replace(first, version_id="v2", uploaded_at="2026-11-26T10:21:47.903Z", sequencer="0066C4A3F0")
    assert decide_latest(held(first), second) is LatestDecision.APPLY
    assert decide_latest(held(second), first) is LatestDecision.STALE
    assert decide_latest(held(second), second) is LatestDecision.ALREADY_APPLIED
    same_ms = replace(
        second, sequencer="0066C4A3F1", version_id="v3"
    )  # one millisecond: the sequencer decides
    assert decide_latest(held(second), same_ms) is LatestDecision.APPLY
    assert decide_latest(held(same_ms), second) is LatestDecision.STALE


# -- one batch sorted into jobs, error records, refusals, retries -------------------------------


class FakeCopier:
    def __init__(self, gone: set[str] = frozenset(), broken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.gone, self.broken = gone, broken
        self.copies: list[tuple[str, str]] = []

    def exists(self, bucket: str, key: str) -> bool:
        return False

    def copy_version(self, image: ImageObject, bucket: str, key: str) -> None:
        if image.key in self.gone:
            raise VersionGone("NoSuchVersion")
        if image.key in self.broken:
            raise RuntimeError("SlowDown")
        self.copies.append((image.version, key))


def test_intake_sorts_every_upload_into_exactly_one_place() -> None:
    def body(key: str, bucket: str = "ingest", version: str = "v1", event_time: str = UPLOADED) -> str:
        return json.dumps(s3_notification(bucket, key, "e", event_time=event_time, version_id=version))

    messages = {
        "ok": body("incoming/B1/a.Jpg"),
        "ok-again": body("incoming/B1/a.Jpg"),  # the same upload notified twice
        "reupload": body("incoming/B1/a.Jpg", version="v2"),
        "future": body("incoming/B2/20991231T000000Z-x.jpg"),
        "text": body("incoming/B3/notes.txt"),
        "gone": body("incoming/B4/deleted.jpg"),
        "slow": body("incoming/B5/throttled.jpg"),
        "foreign": body("incoming/B6/theirs.jpg", bucket="someone-elses-bucket"),
        "malformed": "{",
    }
    copier = FakeCopier(gone={"incoming/B4/deleted.jpg"}, broken={"incoming/B5/throttled.jpg"})
    plan = plan_intake(
        messages, RULES, Staging(copier, "results", "staging/"), max_images=10, prefix="bincount"
    )

    (chunk,) = plan.chunks
    assert sorted(image.version for image in chunk.images) == ["v1", "v2"]  # two uploads, one copy each
    assert chunk.message_ids == {"ok", "ok-again", "reupload"}
    assert all(image.staged_key for image in chunk.images) and len(copier.copies) == 2
    assert {r.image.key: r.error.code for r in plan.rejections} == {
        "incoming/B2/20991231T000000Z-x.jpg": "capture_time_in_future",
        "incoming/B3/notes.txt": "unsupported_suffix",
        "incoming/B4/deleted.jpg": "image_unavailable",
    }
    assert plan.failed_messages == {"slow"}
    assert (
        set(plan.refused_messages) == {"foreign"}
        and "someone-elses-bucket" in plan.refused_messages["foreign"]
    )
    assert set(plan.malformed) == {"malformed"}


def test_the_re_upload_sample_is_two_images_of_one_key(event_file: Any) -> None:
    first, second = (
        parse_notification(record["body"], KeyRules()).images[0]
        for record in event_file("sqs_s3_object_reuploaded.json")["Records"]
    )
    assert first.key == second.key and first.captured_at == second.captured_at  # the time is in the name
    assert first.identity != second.identity and staged_name(first) != staged_name(second)
    assert decide_latest(held(first), second) is LatestDecision.APPLY  # uploaded later


def test_every_batcher_error_code_is_documented() -> None:
    from pathlib import Path

    documented = (Path(__file__).resolve().parents[2] / "docs" / "pipeline.md").read_text()
    assert all(f"| `{code}` | batcher |" in documented for code in BATCHER_ERROR_CODES)
