"""End to end: generated photos through moto, the real handlers and the real serving code.

A small version of ``make demo``: four generated photos, three bad uploads (corrupt JPEG, empty
file, text named .png) and one duplicate upload go through template.yaml's stack, the batcher,
the local Batch Transform with our model artifact, and the collector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.demo import run
from local.emulator.pipeline import PipelineOptions
from local.report import Upload
from local.uploads import synthetic_uploads

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def report(shipped_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    uploads: list[Upload] = []

    def make_uploads(prefix: str) -> list[Upload]:
        uploads.extend(synthetic_uploads(4, prefix, seed=7))
        return uploads

    options = PipelineOptions(
        model_artifact=shipped_artifact,
        stack_name="bincount-e2e",
        batching_window_s=1.0,
        torch_threads=2,
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    result = run(options, make_uploads, timeout_s=120, inventory=True)
    result["uploads"] = uploads
    return result


def test_every_image_is_exactly_one_count_or_error_record(report: dict[str, Any]) -> None:
    distinct = {upload.key for upload in report["uploads"]}
    assert len(report["uploads"]) == len(distinct) + 1  # one duplicate upload
    assert report["accounting"] == {
        "every_image_exactly_one_record": True,
        "missing": [],
        "more_than_one_record": [],
    }
    assert {entry["key"] for entry in report["results"]} == distinct
    for entry in report["results"]:
        assert ("count" in entry) != ("error" in entry), entry
        assert entry["records"] == 1


def test_good_photos_are_counted_and_bad_ones_rejected(report: dict[str, Any]) -> None:
    by_note = {entry.get("note", ""): entry for entry in report["results"]}
    assert by_note["corrupt JPEG"]["error"]["code"] == "corrupt_image"
    assert by_note["empty file"]["error"]["code"] == "empty_body"
    assert "error" in by_note["text"]
    counted = [entry for entry in report["results"] if "count" in entry]
    assert len(counted) == 4
    assert all(entry["count"] >= 0 and 0.0 <= float(entry["confidence"]) <= 1.0 for entry in counted)
    assert report["totals"]["counted"] == 4 and report["totals"]["rejected"] == 3


def test_downstream_consumer_received_inventory_events(report: dict[str, Any]) -> None:
    received = report["events_received"]
    assert received.get("Bin Image Rejected") == 3
    assert received.get("Bin Count Updated", 0) + received.get("Bin Count Needs Review", 0) >= 2  # 2 bins
    assert all(event["source"] == "bincount" for event in report["events"])
    assert not report["worker_errors"]


def test_expected_quantities_raise_discrepancy_events_by_the_decision_rule(report: dict[str, Any]) -> None:
    """The demo writes each bin's expected quantity as an inventory system would (before upload):
    one number per bin, the label of its newest photo; a count that lands on LATEST raises
    ``Inventory Discrepancy Detected`` exactly when the collector's rule says the expected quantity
    contradicts the photo. The shipped model serves no calibrated range: the fallback rule
    (P(expected) ≤ α, ``calibrated: false``) decides, and the events say so."""
    uploads = [u for u in report["uploads"] if u.expected is not None]
    expected = {u.bin_id: u.expected for u in uploads}  # upload order: the last label wins
    assert report["expected_quantities_written"] == len(expected) == 2
    updated = [e["detail"] for e in report["events"] if e["detail-type"] == "Bin Count Updated"]
    discrepancies = [
        e["detail"] for e in report["events"] if e["detail-type"] == "Inventory Discrepancy Detected"
    ]
    assert sorted((d["bin_id"], d["image"]["key"]) for d in discrepancies) == sorted(
        (d["bin_id"], d["image"]["key"])
        for d in updated
        if rule_says_outside(report, d, expected[d["bin_id"]])
    )
    for detail in discrepancies:
        assert detail["expected_quantity"] == expected[detail["bin_id"]]
        assert detail["difference"] == detail["count"] - detail["expected_quantity"]
        assert detail["false_alarm_rate"] == 0.05 and detail["range_level"] == 0.95
        assert detail["calibrated"] is (detail["range_low"] is not None)
    summary = report["discrepancies"]
    assert summary["false_alarm_rate"] == 0.05 and summary["events"] == len(
        {d["image"]["key"] for d in discrepancies}
    )
    assert summary["checked"] == len({d["image"]["key"] for d in updated})
    assert report["totals"]["uploaded"] == 7 and report["totals"]["same_object_uploaded_again"] == 1


def rule_says_outside(report: dict[str, Any], detail: dict[str, Any], expected: int) -> bool:
    """The collector's decision, recomputed from what the photo's record holds (report entry)."""
    from bincount.count_decisions import DecisionRules, check_expected
    from bincount.serving_records import CountRange, CountResult

    entry = next(e for e in report["results"] if e["key"] == detail["image"]["key"])
    served = None
    if entry.get("count_p_values") is not None:
        served = CountRange(
            tuple(entry["count_p_values"]),
            entry["count_low"],
            entry["count_high"],
            float(entry["range_level"]),
            bool(entry["range_open"]),
            True,
        )
    result = CountResult(
        detail["count"],
        detail["confidence"],
        tuple(entry["probabilities"]),
        detail["count_is_lower_bound"],
        "",
        served,
    )
    check = check_expected(result, expected, DecisionRules(false_alarm_rate=0.05))
    return check is not None and check.outside


def test_each_counted_photo_carries_its_range_fields(report: dict[str, Any]) -> None:
    """``count_low``, ``count_high``, ``range_level`` on every counted entry: null from a model
    without a calibration (the shipped one, until its calibration lands), which the table shows
    as the count alone."""
    from local.report import results_table

    counted = [entry for entry in report["results"] if "count" in entry]
    for entry in counted:
        assert {"count_low", "count_high", "range_level"} <= entry.keys()
        if entry["range_level"] is None:
            assert entry["count_low"] is None and entry["count_high"] is None
            assert entry["review_reason"] in (None, "low_confidence")
    assert "count" in results_table(report["results"])


def test_the_real_sagemaker_serving_stack_gives_the_same_records(
    shipped_artifact: Path, report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """TorchServe + sagemaker-pytorch-inference (the container's code path) serve our handlers."""
    from local.emulator.torchserve_server import torchserve_unavailable

    reason = torchserve_unavailable()
    if reason:
        pytest.skip(reason)

    def make_uploads(prefix: str) -> list[Upload]:
        return list(synthetic_uploads(4, prefix, seed=7))

    options = PipelineOptions(
        model_artifact=shipped_artifact,
        stack_name="bincount-e2e-ts",
        batching_window_s=1.0,
        log_dir=tmp_path_factory.mktemp("logs-ts"),
        server="torchserve",
    )
    served = run(options, make_uploads, timeout_s=180)
    assert served["model_server"] == "torchserve"
    assert served["accounting"]["every_image_exactly_one_record"]

    def by_name(result: dict[str, Any]) -> dict[str, Any]:
        return {entry["key"].rsplit("/", 1)[-1]: entry for entry in result["results"]}

    fallback, real = by_name(report), by_name(served)
    assert real.keys() == fallback.keys()
    for name, entry in real.items():
        if "error" in entry:
            assert entry["error"]["code"] == fallback[name]["error"]["code"]
        else:
            assert entry["count"] == fallback[name]["count"]
            assert float(entry["confidence"]) == pytest.approx(float(fallback[name]["confidence"]), abs=1e-3)
