"""The review queue's order with calibrated ranges (pure: cli/review/queue.py over table items)."""

from __future__ import annotations

from typing import Any

from bincount.count_ranges import bounds

from cli.review.queue import (
    BORDERLINE,
    CALIBRATED_DISCREPANCY,
    DISCREPANCY,
    LOW_CONFIDENCE,
    WIDE,
    build_queue,
    photo_view,
)

PROBABILITIES = [0.01, 0.3, 0.41, 0.2, 0.05, 0.03]


def latest(bin_id: str, key: str, expected: int | None) -> dict[str, Any]:
    return {
        "pk": f"BIN#{bin_id}",
        "sk": "LATEST",
        "bin_id": bin_id,
        "image_key": key,
        "image_version": "v1",
        "latest_version": "t",
        "expected_quantity": expected,
    }


def record(
    bin_id: str, p_values: list[float] | None, reason: str | None, captured: str = "2026-01-01"
) -> dict[str, Any]:
    """A count record as the collector writes it (p_values None: a model without a calibration)."""
    item: dict[str, Any] = {
        "pk": f"BIN#{bin_id}",
        "sk": f"IMAGE#incoming/{bin_id}/a.jpg#0",
        "bin_id": bin_id,
        "image_bucket": "ingest",
        "image_key": f"incoming/{bin_id}/a.jpg",
        "image_version": "v1",
        "captured_at": captured,
        "outcome": "count",
        "count": 2,
        "confidence": 0.41,
        "probabilities": PROBABILITIES,
        "count_is_lower_bound": False,
        "needs_review": reason is not None,
        "review_reason": reason,
    }
    if p_values is not None:
        at = bounds(p_values, 0.9)
        item.update(
            count_p_values=p_values,
            count_low=at.low,
            count_high=at.high,
            range_level=0.9,
            range_open=at.open,
            range_contiguous=at.contiguous,
            false_alarm_rate=0.05,
        )
    return item


def p_values_with(p_of_four: float) -> list[float]:
    return [0.004, 0.41, 0.83, 0.27, p_of_four, 0.03]


def test_photos_closest_to_the_decisions_edge_come_first() -> None:
    """Expected 4 everywhere: p(4) = 0.06 (just inside), 0.04 (just outside: a discrepancy a look
    may clear), 0.14 (inside, further), 0.001 (far outside); then the old model's unsure photo,
    then a wide range without an expected quantity."""
    items = []
    for bin_id, p, reason in (
        ("FAR", 0.001, None),
        ("IN14", 0.14, "borderline_discrepancy"),
        ("IN06", 0.06, "borderline_discrepancy"),
        ("OUT04", 0.04, None),
        ("WIDE", None, "wide_range"),
    ):
        if p is None:
            items += [
                record(bin_id, [0.004, 0.41, 0.83, 0.27, 0.5, 0.3], reason),
                latest(bin_id, f"incoming/{bin_id}/a.jpg", None),
            ]
        else:
            items += [record(bin_id, p_values_with(p), reason), latest(bin_id, f"incoming/{bin_id}/a.jpg", 4)]
    items += [record("OLD", None, "low_confidence", "2025-12-31"), latest("OLD", "incoming/OLD/a.jpg", None)]
    queue = build_queue(items)
    assert [(q.bin_id, q.reason) for q in queue] == [
        ("IN06", BORDERLINE),
        ("OUT04", CALIBRATED_DISCREPANCY),
        ("IN14", BORDERLINE),
        ("FAR", CALIBRATED_DISCREPANCY),  # p = 0.001: firmly outside, a look rarely clears it
        ("OLD", LOW_CONFIDENCE),
        ("WIDE", WIDE),
    ]
    # |ln(p / α)|: 0.06 and 0.04 are about equally close to 0.05, 0.001 is 50 times below it
    assert [round(q.margin, 2) for q in queue[:4]] == [0.18, 0.22, 1.03, 3.91]  # type: ignore[arg-type]
    assert queue[0].to_dict()["margin"] == 0.1823


def test_old_records_keep_the_old_reasons_and_the_fallback_rule() -> None:
    """No range: P(expected) ≤ α raises the discrepancy, a plausible expected quantity does not."""
    outside = [record("B1", None, None), latest("B1", "incoming/B1/a.jpg", 0)]  # P(0) = 0.01
    plausible = [record("B2", None, None), latest("B2", "incoming/B2/a.jpg", 3)]  # P(3) = 0.2
    assert [(q.bin_id, q.reason, q.margin) for q in build_queue(outside + plausible)] == [
        ("B1", DISCREPANCY, None)
    ]


def test_the_panel_shows_the_range_beside_the_count() -> None:
    items = [record("B1", p_values_with(0.3), None), latest("B1", "incoming/B1/a.jpg", None)]
    view = photo_view(items, items[0]["sk"], "/photo")
    assert view is not None and view["range_text"] == "1–4 at 90 %"
    old = [record("B2", None, None), latest("B2", "incoming/B2/a.jpg", None)]
    assert photo_view(old, old[0]["sk"], "/photo")["range_text"] == ""  # type: ignore[index]
