"""The demo's report with a model that serves calibrated ranges (test-only stand-in).

Until the shipped artifact carries a conformal calibration, a stand-in adds one to every answer of
the real model server: the invoker between the local Batch Transform and the server appends
``count_p_values`` (a fixed synthetic calibration: p-value of count k = the share of calibration
scores at least 1 - P(k)) and the range at 90 %, as the serving contract writes them. The rest is
the real pipeline: the collector decides, the records and events carry the ranges, and the
report shows them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.demo import run
from local.emulator.model_swap import SwitchingInvoker
from local.emulator.pipeline import PipelineOptions
from local.report import Upload, discrepancy_lines, results_table
from local.uploads import synthetic_uploads

pytestmark = pytest.mark.e2e

LEVEL = 0.9
ALPHA = 0.1  # the run's --alpha: the template parameter travels to the collector
#: 1 - P(true count) of a synthetic calibration set: spread over [0, 1), so p(k) ≈ P(k)
CALIBRATION_SCORES = [i / 200 for i in range(200)]


def with_range(record: dict[str, Any]) -> dict[str, Any]:
    """A count record plus the fields of a calibrated artifact (serving_record.schema.json)."""
    from bincount.count_ranges import bounds

    if "count" not in record:
        return record
    n = len(CALIBRATION_SCORES)
    p_values = [
        round((1 + sum(s >= 1.0 - p for s in CALIBRATION_SCORES)) / (n + 1), 4)
        for p in record["probabilities"]
    ]
    at = bounds(p_values, LEVEL)
    return {
        **record,
        "count_p_values": p_values,
        "count_low": at.low,
        "count_high": at.high,
        "range_level": LEVEL,
        "range_open": at.open,
        "range_contiguous": at.contiguous,
    }


class CalibratedInvoker(SwitchingInvoker):
    def __call__(self, body: bytes, content_type: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
        status, payload = super().__call__(body, content_type, accept, timeout_s)
        if status != 200:
            return status, payload
        answer = json.loads(payload)
        ranged = [with_range(r) for r in answer] if isinstance(answer, list) else with_range(answer)
        return status, json.dumps(ranged).encode()


@pytest.fixture(scope="module")
def report(shipped_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    uploads: list[Upload] = []

    def make_uploads(prefix: str) -> list[Upload]:
        uploads.extend(synthetic_uploads(4, prefix, seed=11))
        return uploads

    options = PipelineOptions(
        model_artifact=shipped_artifact,
        stack_name="bincount-e2e-ranges",
        parameters={"DiscrepancyFalseAlarmRate": str(ALPHA)},
        batching_window_s=1.0,
        torch_threads=2,
        log_dir=tmp_path_factory.mktemp("logs-ranges"),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("local.emulator.pipeline.SwitchingInvoker", CalibratedInvoker)
        result = run(options, make_uploads, timeout_s=120, inventory=True)
    result["uploads"] = uploads
    yield result


def test_counted_photos_carry_their_range_in_the_report(report: dict[str, Any]) -> None:
    counted = [entry for entry in report["results"] if "count" in entry]
    assert len(counted) == 4 and report["accounting"]["every_image_exactly_one_record"]
    for entry in counted:
        assert entry["range_level"] == LEVEL
        assert entry["count_low"] <= entry["count"] <= entry["count_high"] or entry["count_is_lower_bound"]
        assert entry["review_reason"] in (None, "borderline_discrepancy", "wide_range")
    table = results_table(report["results"])
    assert all(f"{e['count']}, " in table for e in counted) and "at 90 %" in table


def test_events_carry_the_range_and_the_decision(report: dict[str, Any]) -> None:
    """Every Bin Count Updated carries the served range; a discrepancy fires exactly when the
    expected quantity's p-value is at most α (the run's α), and says so with calibrated fields."""
    from bincount.count_ranges import p_value_of

    by_key = {entry["key"]: entry for entry in report["results"]}
    expected = {u.bin_id: u.expected for u in report["uploads"] if u.expected is not None}
    updated = [e["detail"] for e in report["events"] if e["detail-type"] == "Bin Count Updated"]
    assert updated and all(d["range_level"] == LEVEL and d["count_low"] is not None for d in updated)
    raised = {
        e["detail"]["image"]["key"]: e["detail"]
        for e in report["events"]
        if e["detail-type"] == "Inventory Discrepancy Detected"
    }
    for detail in updated:
        quantity = expected.get(detail["bin_id"])
        if quantity is None:
            assert detail["image"]["key"] not in raised
            continue
        p_expected = p_value_of(by_key[detail["image"]["key"]]["count_p_values"], quantity)
        assert (detail["image"]["key"] in raised) is (p_expected <= ALPHA)
    for event in raised.values():
        assert event["calibrated"] is True and event["false_alarm_rate"] == ALPHA
        assert event["range_level"] == pytest.approx(1 - ALPHA) and event["range_low"] is not None
        assert event["expected_p_value"] <= ALPHA
    summary = report["discrepancies"]
    assert summary["calibrated_events"] == summary["events"] == len(raised)
    assert summary["expected_false_at_most"] == pytest.approx(ALPHA * summary["checked"])
    assert any("expected false: at most" in line for line in discrepancy_lines(summary))
