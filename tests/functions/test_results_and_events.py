"""Result records, transform job events, inventory events and LATEST rules (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bincount.count_records import LatestDecision, LatestState, decide_latest, is_discrepancy, version_token
from bincount.inventory_events import (
    BinCountUpdated,
    ImageRef,
    from_eventbridge_entry,
    from_eventbridge_event,
)
from bincount.job_events import NotATransformJobEvent, parse_job_event, parse_tags
from bincount.serving_records import CountResult, ErrorResult, parse_result_body
from bincount.timefmt import canonical_time
from bincount.uploads import ImageObject

COUNT = {
    "count": 3,
    "confidence": 0.71,
    "probabilities": [0.0, 0.02, 0.1, 0.71, 0.15, 0.02],
    "count_is_lower_bound": False,
    "model_version": "v1",
}


def test_count_and_error_records() -> None:
    parsed = parse_result_body(json.dumps(COUNT).encode())
    assert parsed == CountResult(3, 0.71, (0.0, 0.02, 0.1, 0.71, 0.15, 0.02), False, "v1")
    error = {
        "error": {"code": "corrupt_image", "message": "cannot identify image file"},
        "model_version": "v1",
    }
    assert parse_result_body(json.dumps(error)) == ErrorResult(
        "corrupt_image", "cannot identify image file", "v1"
    )
    assert parse_result_body(json.dumps(COUNT) + "\n") == parsed  # jsonlines


@pytest.mark.parametrize(
    "body", [b"", b"<html>502</html>", b'{"count": -1, "confidence": 0.5}', b'{"count": 2, "confidence": 7}']
)
def test_broken_records_become_invalid_output(body: bytes) -> None:
    result = parse_result_body(body)
    assert isinstance(result, ErrorResult) and result.code == "invalid_output"


def test_times_in_every_form_agree() -> None:
    expected = "2026-11-26T10:20:00.000Z"
    for value in ("2026-11-26T10:20:00Z", "2026-11-26T10:20:00.000+00:00", 1795688400000, "1795688400000"):
        assert canonical_time(value) == expected


def test_tags_in_every_form() -> None:
    assert parse_tags({}) == {} and parse_tags(None) == {}
    assert parse_tags({"a": "1"}) == {"a": "1"}
    assert parse_tags([{"Key": "a", "Value": "1"}, {"Key": "b"}]) == {"a": "1", "b": ""}


def test_sample_job_events_parse(event_file: Any) -> None:
    done = parse_job_event(event_file("transform_job_completed.json"))
    assert done.status == "Completed" and done.is_terminal
    assert done.tags["bincount:images"] == "2"
    assert done.latency_s == pytest.approx(467.0)
    failed = parse_job_event(event_file("transform_job_failed.json"))
    assert failed.status == "Failed" and failed.failure_reason.startswith("ClientError")
    assert failed.created_at == "2026-11-26T10:20:00.000Z" and failed.latency_s == pytest.approx(190.0)
    assert failed.tags == {}
    with pytest.raises(NotATransformJobEvent):
        parse_job_event({"detail-type": "Something Else", "detail": {}})


def test_inventory_event_round_trip(event_file: Any) -> None:
    delivered = from_eventbridge_event(event_file("bin_count_updated.json"))
    assert isinstance(delivered, BinCountUpdated)
    assert (delivered.bin_id, delivered.count, delivered.previous_count) == ("BIN-0042", 3, 4)
    entry = delivered.to_eventbridge_entry("bus")
    assert entry["Source"] == "bincount" and entry["DetailType"] == "Bin Count Updated"
    assert from_eventbridge_entry(entry) == delivered
    assert isinstance(delivered.image, ImageRef)
    assert delivered.image.version_id == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH"  # which upload was counted


def _img(captured: str, key: str = "incoming/B1/a.jpg", etag: str = "e") -> ImageObject:
    return ImageObject("b", key, etag, 1, "B1", captured, "image/jpeg")


def test_latest_only_moves_forward() -> None:
    newer, older = _img("2026-01-02T00:00:00.000Z", "k2"), _img("2026-01-01T00:00:00.000Z", "k1")
    held = LatestState(version_token(newer), newer.captured_at, newer.key, newer.etag, count=3)
    assert decide_latest(None, older) is LatestDecision.APPLY
    assert decide_latest(LatestState(version=None, expected_quantity=4), older) is LatestDecision.APPLY
    assert decide_latest(held, older) is LatestDecision.STALE
    assert decide_latest(held, newer) is LatestDecision.ALREADY_APPLIED
    assert decide_latest(held, _img("2026-01-03T00:00:00.000Z")) is LatestDecision.APPLY


def test_discrepancy_respects_lower_bound() -> None:
    assert not is_discrepancy(None, 3, False)
    assert is_discrepancy(4, 3, False) and not is_discrepancy(3, 3, False)
    assert not is_discrepancy(7, 5, True)  # "5 or more" does not contradict 7
    assert is_discrepancy(3, 5, True)
