"""Discrepancy as a decision and review by its margin (bincount.count_decisions), through the
collector: boundaries (p-value = α, the top class, no expected quantity), the fallback for models
without a calibration, what the records and the events carry, and the share the review budget sends."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from typing import Any

import pytest
from bincount import serving_records
from bincount.batching import output_key_for, plan_chunks
from bincount.collection import Collector
from bincount.count_decisions import (
    BORDERLINE_DISCREPANCY,
    LOW_CONFIDENCE,
    WIDE_RANGE,
    DecisionRules,
    check_expected,
    review_reason,
)
from bincount.count_ranges import bounds
from bincount.count_records import LatestDecision, image_item, outcome_for
from bincount.inventory_events import (
    BinCountNeedsReview,
    BinCountUpdated,
    InventoryDiscrepancyDetected,
    from_detail,
    from_eventbridge_event,
)
from bincount.job_events import TransformJobEvent
from bincount.publishing import events_for
from bincount.serving_records import CountRange, CountResult, parse_record
from bincount.settings import Settings, SettingsError
from bincount.submission import Submitter
from bincount.uploads import ImageObject
from pipeline_fakes import (
    CONFIG,
    LAYOUT,
    FakeTransforms,
    MemoryCounts,
    MemoryJobs,
    MemoryObjects,
    RecordingSender,
)

ALPHA = 0.05
RULES = DecisionRules(false_alarm_rate=ALPHA, review_budget=0.10, range_width=4, confidence_threshold=0.5)
PROBABILITIES = (0.01, 0.3, 0.41, 0.2, 0.05, 0.03)
PHOTO = ImageObject("ingest", "incoming/B1/a.jpg", "e", 10, "B1", "2026-01-01T01:00:00.000Z", "image/jpeg")


def ranged(p_values: tuple[float, ...], count: int = 2, level: float = 0.9) -> CountResult:
    """A count whose model served a calibrated range (the range as the serving side builds it)."""
    served = bounds(p_values, level)
    span = CountRange(p_values, served.low, served.high, level, served.open, served.contiguous)
    return CountResult(count, PROBABILITIES[count], PROBABILITIES, count == 5, "m-cal", span)


def plain(count: int = 2, probabilities: tuple[float, ...] = PROBABILITIES) -> CountResult:
    """A count of an artifact without a calibration (no range)."""
    confidence = probabilities[count] if probabilities else 0.9
    return CountResult(count, confidence, probabilities, count == 5, "m-old")


# -- the decision at its boundaries -------------------------------------------------------------


def test_expected_at_the_edge_of_the_set_p_value_equal_to_alpha_is_a_discrepancy() -> None:
    """p-value ≤ α leaves the range at 1 - α: exactly α is outside, just above it is inside."""
    edge = ranged((0.004, 0.41, 0.83, 0.27, ALPHA, 0.03))
    check = check_expected(edge, 4, RULES)
    assert check is not None and check.outside and check.calibrated
    assert (check.range_low, check.range_high, check.range_level) == (1, 3, 0.95)
    assert check.expected_p_value == ALPHA and check.expected_probability == PROBABILITIES[4]
    inside = check_expected(ranged((0.004, 0.41, 0.83, 0.27, 0.0501, 0.03)), 4, RULES)
    assert inside is not None and not inside.outside and inside.range_high == 4


def test_top_class_holds_every_expected_quantity_from_it_upwards() -> None:
    """ "5 or more": an expected 9 is judged by the top class's p-value, and the range is open."""
    wide = ranged((0.0, 0.01, 0.2, 0.5, 0.7, 0.6), count=4)
    check = check_expected(wide, 9, RULES)
    assert check is not None and not check.outside
    assert (check.range_low, check.range_high, check.range_open) == (2, 5, True)
    assert check.expected_p_value == 0.6 and check.expected_probability == PROBABILITIES[5]
    shut = check_expected(ranged((0.3, 0.9, 0.4, 0.1, 0.02, 0.01), count=1), 12, RULES)
    assert shut is not None and shut.outside and shut.range_open is False


def test_no_expected_quantity_decides_nothing() -> None:
    assert check_expected(ranged((0.004, 0.41, 0.83, 0.27, 0.06, 0.03)), None, RULES) is None
    assert check_expected(plain(), None, RULES) is None


def test_without_a_calibration_the_models_probability_of_the_expected_quantity_decides() -> None:
    """Fallback for old artifacts: P(expected) ≤ α, flagged uncalibrated, no range."""
    probabilities = (0.01, 0.3, 0.41, 0.2, 0.05, 0.03)
    at_alpha = check_expected(plain(2, probabilities), 4, RULES)
    assert at_alpha is not None and at_alpha.outside and not at_alpha.calibrated
    assert (at_alpha.range_low, at_alpha.range_high, at_alpha.expected_p_value) == (None, None, None)
    differs_but_plausible = check_expected(plain(2, probabilities), 3, RULES)
    assert differs_but_plausible is not None and not differs_but_plausible.outside  # count 2 ≠ 3
    # no probabilities at all: the count itself (a lower bound contradicts only a smaller quantity)
    assert check_expected(plain(3, ()), 4, RULES).outside  # type: ignore[union-attr]
    assert not check_expected(CountResult(5, 0.9, (), True, "m"), 7, RULES).outside  # type: ignore[union-attr]


# -- review: where a look changes the answer ----------------------------------------------------


@pytest.mark.parametrize(
    ("p_expected", "reason"),
    [
        (ALPHA, None),  # already a discrepancy: nothing borderline about it
        (0.0501, BORDERLINE_DISCREPANCY),
        (ALPHA + 0.10, BORDERLINE_DISCREPANCY),  # the budget's edge is in
        (0.1501, None),
        (0.8, None),
    ],
)
def test_borderline_discrepancy_when_the_expected_quantity_is_close_to_leaving(
    p_expected: float, reason: str | None
) -> None:
    result = ranged((0.004, 0.41, 0.83, 0.27, p_expected, 0.03))
    assert review_reason(result, 4, RULES) == reason


def test_without_an_expected_quantity_a_wide_range_goes_to_review() -> None:
    narrow = ranged((0.004, 0.41, 0.83, 0.27, 0.06, 0.03))  # 1-3 at 90 %
    wide = ranged((0.004, 0.41, 0.83, 0.27, 0.16, 0.03))  # 1-4 at 90 %
    assert review_reason(narrow, None, RULES) is None
    assert review_reason(wide, None, RULES) == WIDE_RANGE
    confident_but_wide = ranged((0.004, 0.41, 0.83, 0.27, 0.16, 0.03), count=2)
    assert review_reason(confident_but_wide, None, DecisionRules(range_width=5)) is None


def test_without_a_calibration_the_confidence_threshold_still_decides() -> None:
    assert review_reason(plain(2), 7, RULES) == LOW_CONFIDENCE  # 0.41 < 0.5
    assert review_reason(plain(2), None, DecisionRules(confidence_threshold=0.35)) is None


def test_the_budget_sends_its_share_of_photos_whose_record_is_right() -> None:
    """The true count's conformal p-value is (super-)uniform: α < p ≤ α + budget holds for about
    ``budget`` of the right records, and p ≤ α (a false alarm) for about α. 20,000 draws."""
    draws = random.Random(7)
    borderline = alarms = 0
    n = 20_000
    for _ in range(n):
        p_true = draws.random()
        result = ranged((0.5, 0.5, 0.5, p_true, 0.5, 0.5), count=3)
        borderline += review_reason(result, 3, RULES) == BORDERLINE_DISCREPANCY
        alarms += check_expected(result, 3, RULES).outside  # type: ignore[union-attr]
    assert abs(borderline / n - 0.10) < 0.01
    assert abs(alarms / n - ALPHA) < 0.006


# -- events and records -------------------------------------------------------------------------


def test_discrepancy_event_carries_the_range_at_one_minus_alpha_and_the_evidence() -> None:
    result = ranged((0.004, 0.41, 0.83, 0.27, 0.03, 0.01))
    outcome = outcome_for(PHOTO, result, "job", RULES)
    events = events_for(outcome, LatestDecision.APPLY, 1, 4, RULES)
    updated = next(e for e in events if isinstance(e, BinCountUpdated))
    assert (updated.count_low, updated.count_high, updated.range_level, updated.range_open) == (
        1,
        3,
        0.9,
        False,
    )
    (event,) = [e for e in events if isinstance(e, InventoryDiscrepancyDetected)]
    assert (event.expected_quantity, event.difference) == (4, -2)
    assert (event.range_low, event.range_high, event.range_open, event.range_level) == (1, 3, False, 0.95)
    assert (event.expected_p_value, event.expected_probability) == (0.03, 0.05)
    assert (event.false_alarm_rate, event.calibrated) == (ALPHA, True)


def test_a_count_that_differs_from_a_plausible_expected_quantity_raises_nothing() -> None:
    """The model says 2, the record says 3: 3 is in the range, so no cycle count is asked for."""
    result = ranged((0.004, 0.41, 0.83, 0.27, 0.03, 0.01))
    events = events_for(outcome_for(PHOTO, result, "job", RULES), LatestDecision.APPLY, None, 3, RULES)
    assert [type(e) for e in events] == [BinCountUpdated]


def test_old_artifact_discrepancy_event_is_flagged_uncalibrated() -> None:
    events = events_for(outcome_for(PHOTO, plain(2), "job", RULES), LatestDecision.APPLY, None, 0, RULES)
    (event,) = [e for e in events if isinstance(e, InventoryDiscrepancyDetected)]
    assert event.calibrated is False and event.expected_probability == 0.01
    assert (event.range_low, event.range_high, event.expected_p_value) == (None, None, None)
    review = next(e for e in events if isinstance(e, BinCountNeedsReview))
    assert review.review_reason == LOW_CONFIDENCE and review.threshold == 0.5


def test_old_consumers_read_new_events_and_new_consumers_read_old_events(event_file: Any) -> None:
    """Fields are only added: a detail without them parses (defaults None), and the sample of the
    discrepancy event has exactly the class's fields."""
    sample = event_file("inventory_discrepancy_detected.json")
    delivered = from_eventbridge_event(sample)
    assert isinstance(delivered, InventoryDiscrepancyDetected) and delivered.calibrated
    assert set(sample["detail"]) == {f.name for f in fields(InventoryDiscrepancyDetected)}
    updated = event_file("bin_count_updated.json")
    assert set(updated["detail"]) == {f.name for f in fields(BinCountUpdated)}
    old_fields = ("expected_quantity", "count", "count_is_lower_bound", "difference")
    old = {k: v for k, v in sample["detail"].items() if k in old_fields or k in ("bin_id", "image")}
    old |= {"captured_at": "t", "model_version": "m", "job_name": "j"}
    parsed = from_detail("Inventory Discrepancy Detected", old)
    assert isinstance(parsed, InventoryDiscrepancyDetected) and parsed.calibrated is None


def test_records_keep_the_served_range_and_the_reason() -> None:
    result = ranged((0.004, 0.41, 0.83, 0.27, 0.16, 0.03))
    item = image_item(outcome_for(PHOTO, result, "job", RULES), "2026-01-01T02:00:00.000Z")
    assert (item["count_low"], item["count_high"], item["range_open"], item["range_contiguous"]) == (
        1,
        4,
        False,
        True,
    )
    assert float(item["range_level"]) == 0.9 and item["review_reason"] == WIDE_RANGE
    assert [float(p) for p in item["count_p_values"]] == [0.004, 0.41, 0.83, 0.27, 0.16, 0.03]
    old = image_item(outcome_for(PHOTO, plain(2), "job", RULES), "2026-01-01T02:00:00.000Z")
    assert (
        old["count_low"] is None and old["count_p_values"] is None and old["review_reason"] == LOW_CONFIDENCE
    )


# -- through the collector ----------------------------------------------------------------------


def stage(objects: MemoryObjects, records: dict[ImageObject, dict[str, Any]]) -> str:
    (chunk,) = plan_chunks(list(records), max_images=len(records))
    Submitter(objects, FakeTransforms(), MemoryJobs(), LAYOUT, CONFIG).submit(chunk)
    for image, record in records.items():
        key = output_key_for(LAYOUT, chunk.job_name, image.key)
        objects.put_bytes("results", key, json.dumps(record).encode())
    return chunk.job_name


def served(p_values: list[float], count: int) -> dict[str, Any]:
    """A serving record with a range, as the schema's example writes one."""
    at = bounds(p_values, 0.9)
    return {
        "count": count,
        "confidence": PROBABILITIES[count],
        "probabilities": list(PROBABILITIES),
        "count_is_lower_bound": False,
        "model_version": "m-cal",
        "count_p_values": p_values,
        "count_low": at.low,
        "count_high": at.high,
        "range_level": 0.9,
        "range_open": at.open,
        "range_contiguous": at.contiguous,
    }


def photo(bin_id: str) -> ImageObject:
    return ImageObject(
        "ingest", f"incoming/{bin_id}/a.jpg", "e", 10, bin_id, "2026-01-01T01:00:00.000Z", "image/jpeg"
    )


def test_the_collector_decides_against_each_bins_expected_quantity() -> None:
    """Three bins, one photo each, expected 4 in all: outside (event), borderline (review), inside."""
    objects, counts, sender = MemoryObjects(), MemoryCounts(), RecordingSender()
    for bin_id in ("OUT", "EDGE", "IN"):
        counts.items[(f"BIN#{bin_id}", "LATEST")] = {
            "pk": f"BIN#{bin_id}",
            "sk": "LATEST",
            "expected_quantity": 4,
        }
    name = stage(
        objects,
        {
            photo("OUT"): served([0.004, 0.41, 0.83, 0.27, 0.02, 0.01], 2),
            photo("EDGE"): served([0.004, 0.41, 0.83, 0.27, 0.09, 0.01], 2),
            photo("IN"): served([0.004, 0.41, 0.83, 0.27, 0.5, 0.01], 2),
            photo("NONE"): served([0.004, 0.41, 0.83, 0.27, 0.5, 0.3], 2),
        },
    )
    submitter = Submitter(objects, FakeTransforms(), MemoryJobs(), LAYOUT, CONFIG)
    collector = Collector(objects, counts, MemoryJobs(), sender, submitter, LAYOUT, "bus", RULES, "bincount")
    report = collector.collect(TransformJobEvent(name, "Completed"))

    assert report.discrepancies == 1  # the DiscrepanciesRaised metric
    delivered = [(e["DetailType"], json.loads(e["Detail"])) for e in sender.delivered]
    discrepancies = [d["bin_id"] for t, d in delivered if t == "Inventory Discrepancy Detected"]
    reviews = {d["bin_id"]: d["review_reason"] for t, d in delivered if t == "Bin Count Needs Review"}
    assert discrepancies == ["OUT"]
    assert reviews == {"EDGE": BORDERLINE_DISCREPANCY, "NONE": WIDE_RANGE}  # NONE: 1-5+ wide, no expected
    edge = next(d for t, d in delivered if t == "Bin Count Needs Review" and d["bin_id"] == "EDGE")
    assert (edge["expected_quantity"], edge["expected_p_value"], edge["review_budget"]) == (4, 0.09, 0.1)
    latest = counts.get_latest("EDGE")
    assert latest is not None and latest["review_reason"] == BORDERLINE_DISCREPANCY and latest["needs_review"]
    assert (latest["count_low"], latest["count_high"], latest["range_open"]) == (1, 3, False)
    assert latest["expected_quantity"] == 4  # kept
    images = {item["bin_id"]: item for item in counts.images()}
    assert images["IN"]["needs_review"] is False and images["IN"]["review_reason"] is None


def test_settings_read_the_decision_parameters() -> None:
    base = {
        "RESULTS_BUCKET": "r",
        "COUNTS_TABLE": "c",
        "JOBS_TABLE": "j",
        "EVENT_BUS_NAME": "b",
        "MODEL_NAME": "m",
    }
    rules = Settings.from_env(
        base | {"DISCREPANCY_FALSE_ALARM_RATE": "0.1", "REVIEW_BUDGET": "0.2", "REVIEW_RANGE_WIDTH": "3"}
    ).decision_rules()
    assert rules == DecisionRules(
        false_alarm_rate=0.1, review_budget=0.2, range_width=3, confidence_threshold=0.5
    )
    assert Settings.from_env(base).decision_rules() == DecisionRules()
    for bad in ({"DISCREPANCY_FALSE_ALARM_RATE": "0"}, {"REVIEW_BUDGET": "1"}, {"REVIEW_RANGE_WIDTH": "0"}):
        with pytest.raises(SettingsError):
            Settings.from_env(base | bad)


def test_the_schema_example_with_a_range_parses_into_a_decision() -> None:
    ranged = [x for x in serving_records.SCHEMA["examples"] if "count_p_values" in x]
    assert len(ranged) == 1
    example = parse_record(ranged[0])
    assert isinstance(example, CountResult)
    assert check_expected(example, 0, RULES).outside  # type: ignore[union-attr]
    assert review_reason(example, 4, RULES) == BORDERLINE_DISCREPANCY  # p = 0.06


def test_a_range_as_people_read_it() -> None:
    from bincount.count_ranges import count_with_range, range_text

    assert count_with_range(3, False, 2, 4, 0.9) == "3, 2–4 at 90 %"
    assert count_with_range(5, True, 3, 5, 0.95, open_top=True) == "5+, 3–5+ at 95 %"
    assert range_text(2, 2, 0.9) == "2 at 90 %"
    assert count_with_range(3, False, None, None, None) == "3"  # no calibration: the count alone
