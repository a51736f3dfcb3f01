"""The pure re-count rules: which records, which job names, what a result does to LATEST."""

from __future__ import annotations

from typing import Any

from bincount.batching import chunk_from_images_document, images_document, plan_chunks
from bincount.count_records import LatestDecision, image_item, latest_attributes, outcome_for
from bincount.recounts import (
    chunk_prefix,
    recount_chunks,
    recount_image,
    recount_latest,
    recount_prefix,
    select_records,
)
from bincount.serving_records import CountResult
from bincount.staging import staged_name
from bincount.uploads import ImageObject

PHOTO = ImageObject(
    "ingest", "incoming/B1/a.jpg", "e", 10, "B1", "2026-11-02T00:00:00.000Z", "image/jpeg", "v1"
)


def record(
    bin_id: str, key: str, captured_at: str, version: str = "m1", outcome: str = "count"
) -> dict[str, Any]:
    return {
        "sk": f"IMAGE#{key}#0",
        "bin_id": bin_id,
        "image_key": key,
        "captured_at": captured_at,
        "model_version": version,
        "outcome": outcome,
        "error_code": None if outcome == "count" else "corrupt_image",
    }


def test_select_filters_by_bin_and_capture_time_and_sorts_out_current_and_errors() -> None:
    items = [
        record("B1", "k1", "2026-11-01T00:00:00.000Z"),
        record("B1", "k2", "2026-11-03T00:00:00.000Z"),
        record("B1", "k3", "2026-11-03T00:00:00.000Z", version="m2"),
        record("B1", "k4", "2026-11-04T00:00:00.000Z", outcome="error"),
        record("B2", "k5", "2026-11-05T00:00:00.000Z"),
        {"sk": "LATEST", "bin_id": "B1", "model_version": "m1", "captured_at": "2026-11-03T00:00:00.000Z"},
    ]

    selection = select_records(items, "m2", since="2026-11-02T00:00:00.000Z", bins=["B1"])

    assert [item["image_key"] for item in selection.candidates] == ["k2"]
    assert selection.current == 1
    assert [(s.key, s.reason.split(" ")[0]) for s in selection.skipped] == [("k4", "error")]
    assert len(select_records(items, "m2").candidates) == 3  # no filters: every bin, every time


def test_recount_job_names_depend_on_the_version_and_differ_from_the_first_count() -> None:
    (first,) = plan_chunks([PHOTO], 10)
    (v2,) = recount_chunks([PHOTO], 10, "bincount", "m2")
    (again,) = recount_chunks([PHOTO], 10, "bincount", "m2")
    (v3,) = recount_chunks([PHOTO], 10, "bincount", "m3")

    assert v2.job_name == again.job_name and len({first.job_name, v2.job_name, v3.job_name}) == 3
    assert v2.job_name.startswith(f"{recount_prefix('bincount', 'm2')}-") and v2.job_name.startswith(
        "bincount-"
    )
    assert (
        chunk_prefix(v2, "bincount") == recount_prefix("bincount", "m2")
        and chunk_prefix(first, "bincount") == "bincount"
    )


def test_the_images_document_carries_the_purpose_and_a_normal_one_stays_as_it_was() -> None:
    (normal,) = plan_chunks([PHOTO], 10)
    (chunk,) = recount_chunks([PHOTO], 10, "bincount", "m2")

    assert "purpose" not in images_document(normal)
    restored = chunk_from_images_document(images_document(chunk))
    assert (restored.purpose, restored.target_model_version) == ("recount", "m2")


def test_recount_image_points_at_the_staged_copy_the_batcher_made() -> None:
    outcome = outcome_for(PHOTO, CountResult(2, 0.9, (0.1,), False, "m1"), "job", 0.5)
    image = recount_image(image_item(outcome, "t"))

    assert image.identity == PHOTO.identity and image.content_type == "image/jpeg"
    assert image.staged_key == staged_name(PHOTO)


def latest_holding(image: ImageObject, count: int, **extra: Any) -> dict[str, Any]:
    held = outcome_for(image, CountResult(count, 0.9, (0.1,), False, "m1"), "job-1", 0.5)
    return {**latest_attributes(held, None, "t0"), **extra}


def test_latest_moves_only_for_the_photo_it_holds_without_a_human_label() -> None:
    new = outcome_for(PHOTO, CountResult(4, 0.8, (0.2,), False, "m2"), "job-2", 0.5)
    older = ImageObject(
        "ingest", "incoming/B1/0.jpg", "e", 10, "B1", "2026-11-01T00:00:00.000Z", "image/jpeg", "v0"
    )

    write, decision, previous = recount_latest(latest_holding(PHOTO, 3), new, "t1")
    assert decision is LatestDecision.APPLY and previous == 3 and write is not None
    assert (
        write.attributes["count"],
        write.attributes["previous_count"],
        write.attributes["model_version"],
    ) == (
        4,
        3,
        "m2",
    )
    assert recount_latest(latest_holding(older, 3), new, "t1")[:2] == (None, LatestDecision.STALE)
    labelled = latest_holding(PHOTO, 3, human_label={"reviewer": "ana"})
    assert recount_latest(labelled, new, "t1")[:2] == (None, LatestDecision.STALE)
    already = latest_holding(PHOTO, 3, model_version="m2", previous_count=3)
    assert recount_latest(already, new, "t1") == (None, LatestDecision.ALREADY_APPLIED, 3)
    assert recount_latest(None, new, "t1")[:2] == (None, LatestDecision.STALE)
