"""Pure logic of the CLI: tables and JSON, photo selection, keys, bin filters and sorting."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bincount.count_records import image_sk
from bincount.uploads import KeyRules, bin_and_capture_time

from cli.commands.bins import bin_row, select_bins, sort_bins
from cli.commands.history import history_rows
from cli.commands.redrive import keys_in_body
from cli.commands.status import jobs_in_flight, last_errors
from cli.output import Column, cell, count_text, table, to_json
from cli.photos import check_bin_id, parse_capture_time, select_photos, sniff_image, upload_key
from common.errors import UsageError


def test_table_aligns_columns_and_numbers_right() -> None:
    rows = [{"bin": "A", "count": 3, "conf": 0.456}, {"bin": "BIN-10", "count": 12, "conf": None}]
    text = table(rows, [Column("bin", "bin"), Column("count", "count", right=True), Column("conf", "conf")])
    lines = text.splitlines()
    assert lines[0] == "bin     count  conf"
    assert lines[2] == "A           3  0.46"
    assert lines[3] == "BIN-10     12"


def test_cells_and_json_turn_dynamodb_decimals_into_numbers() -> None:
    assert cell(Decimal("3")) == "3"
    assert cell(Decimal("0.8123")) == "0.81"
    assert cell(True) == "yes" and cell(False) == "" and cell(None) == ""
    assert json.loads(to_json({"n": Decimal("2"), "p": [Decimal("0.25")]})) == {"n": 2, "p": [0.25]}


def test_select_photos_expands_folders_and_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "a.PNG").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("image,count\n")
    explicit = tmp_path / "notes.txt"
    explicit.write_text("hello")
    selection = select_photos([str(tmp_path), str(explicit), str(tmp_path / "gone.jpg")])
    assert [p.name for p in selection.files] == ["a.PNG", "b.jpg", "notes.txt"]
    assert selection.missing == [str(tmp_path / "gone.jpg")]
    assert [p.name for p in selection.skipped] == ["labels.csv", "notes.txt"]


def test_sniff_image_knows_jpeg_and_png_only(bin_jpeg: bytes, bin_png: bytes) -> None:
    assert sniff_image(bin_jpeg[:16]) == "image/jpeg"
    assert sniff_image(bin_png[:16]) == "image/png"
    assert sniff_image(b"hello, bin") is None
    assert sniff_image(b"") is None


def test_upload_key_reads_back_as_bin_and_capture_time() -> None:
    captured = datetime(2026, 11, 26, 10, 15, 0, tzinfo=UTC)
    key = upload_key("incoming/", "BIN-1", captured, "shelf photo (1).JPG")
    assert key == "incoming/BIN-1/20261126T101500Z-shelf-photo-1.jpg"
    assert bin_and_capture_time(key, KeyRules(prefix="incoming/")) == ("BIN-1", "2026-11-26T10:15:00.000Z")


@pytest.mark.parametrize("bad", ["", "a/b", "-x", "with space", "x" * 129])
def test_bin_ids_that_would_break_the_key_layout_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="not a bin id"):
        check_bin_id(bad)


def test_capture_time_accepts_iso_and_names_a_bad_value() -> None:
    assert parse_capture_time("2026-11-26T10:15:00+01:00") == datetime(2026, 11, 26, 9, 15, tzinfo=UTC)
    with pytest.raises(UsageError, match="--captured-at 'yesterday'"):
        parse_capture_time("yesterday")


def latest(bin_id: str, count: int | None, **extra: object) -> dict[str, object]:
    item: dict[str, object] = {"pk": f"BIN#{bin_id}", "sk": "LATEST", "bin_id": bin_id}
    if count is not None:
        item.update(count=Decimal(count), confidence=Decimal("0.9"), updated_at=f"2026-11-2{count}")
    item.update(extra)
    return item


def test_discrepancy_respects_lower_bound_counts() -> None:
    assert bin_row(latest("A", 3, expected_quantity=Decimal(4)))["discrepancy"] is True
    assert (
        bin_row(latest("B", 5, expected_quantity=Decimal(7), count_is_lower_bound=True))["discrepancy"]
        is False
    )
    assert (
        bin_row(latest("C", 5, expected_quantity=Decimal(4), count_is_lower_bound=True))["discrepancy"]
        is True
    )
    assert bin_row(latest("D", 2))["discrepancy"] is False


def calibrated(bin_id: str, count: int, **extra: object) -> dict[str, object]:
    """A LATEST item as the collector writes it for a model that serves ranges (α = 0.05)."""
    return latest(
        bin_id,
        count,
        probabilities=[Decimal(p) for p in ("0.01", "0.3", "0.41", "0.2", "0.05", "0.03")],
        count_p_values=[Decimal(p) for p in ("0.004", "0.41", "0.83", "0.27", "0.06", "0.03")],
        count_low=Decimal(1),
        count_high=Decimal(3),
        range_level=Decimal("0.9"),
        range_open=False,
        range_contiguous=True,
        **{"false_alarm_rate": Decimal("0.05"), **extra},
    )


def test_a_calibrated_count_contradicts_only_an_expected_quantity_outside_its_range() -> None:
    """The collector's rule, not 'count differs': 4 is inside the 95 % range (p 0.06 > α)."""
    assert bin_row(calibrated("A", 2, expected_quantity=Decimal(4)))["discrepancy"] is False
    assert bin_row(calibrated("A", 2, expected_quantity=Decimal(0)))["discrepancy"] is True  # p 0.004
    assert (
        bin_row(calibrated("A", 2, expected_quantity=Decimal(9)))["discrepancy"] is True
    )  # top class, p 0.03
    # the α the collector used decides: at 0.1 the p-value 0.06 of 4 is outside
    assert (
        bin_row(calibrated("A", 2, expected_quantity=Decimal(4), false_alarm_rate=Decimal("0.1")))[
            "discrepancy"
        ]
        is True
    )


def test_counts_are_shown_with_their_range_where_the_model_served_one() -> None:
    row = bin_row(calibrated("A", 2))
    assert (row["count_low"], row["count_high"], row["range_level"]) == (1, 3, 0.9)
    assert count_text(row["count"], row["count_is_lower_bound"], row) == "2, 1–3 at 90 %"
    assert count_text(5, True, {"count_low": 3, "count_high": 5, "range_level": 0.9, "range_open": True}) == (
        "5+, 3–5+ at 90 %"
    )
    assert count_text(2, False, bin_row(latest("B", 2))) == "2"  # an artifact without a range
    assert history_rows([{**calibrated("A", 2), "sk": "IMAGE#x", "outcome": "count"}])[0]["count_high"] == 3


def test_bin_filters_and_sorting() -> None:
    rows = [
        bin_row(latest("C", 1, needs_review=True)),
        bin_row(latest("A", 3, expected_quantity=Decimal(2))),
        bin_row(latest("B", 2, confidence=None)),
        bin_row(latest("X", None, expected_quantity=Decimal(2))),  # inventory only, no count yet
    ]
    assert [r["bin_id"] for r in select_bins(rows)] == ["C", "A", "B"]
    assert [r["bin_id"] for r in select_bins(rows, needs_review=True)] == ["C"]
    assert [r["bin_id"] for r in select_bins(rows, discrepancy=True)] == ["A"]
    kept = select_bins(rows)
    assert [r["bin_id"] for r in sort_bins(kept, "bin")] == ["A", "B", "C"]
    assert [r["bin_id"] for r in sort_bins(kept, "count", descending=True)] == ["A", "B", "C"]
    assert [r["bin_id"] for r in sort_bins(kept, "confidence")] == ["A", "C", "B"]  # blanks last


def test_history_is_oldest_first_and_shows_errors() -> None:
    items: list[dict[str, object]] = [
        {
            "image_key": "incoming/A/2.jpg",
            "captured_at": "2026-11-26T10:00:02.000Z",
            "outcome": "count",
            "count": 2,
        },
        {
            "image_key": "incoming/A/1.jpg",
            "captured_at": "2026-11-26T10:00:01.000Z",
            "outcome": "error",
            "error_code": "corrupt_image",
            "error_message": "cannot identify image file",
        },
    ]
    rows = history_rows(items)
    assert [r["photo"] for r in rows] == ["1.jpg", "2.jpg"]
    assert rows[0]["error"] == "corrupt_image: cannot identify image file" and rows[0]["count"] is None


def test_history_lists_each_upload_of_a_key_in_upload_order() -> None:
    """A re-upload is a record of its own (``IMAGE#<key>#<version digest>``), shown after the first."""
    key, captured = "incoming/A/20261126T100000Z-cam.jpg", "2026-11-26T10:00:00.000Z"
    uploads = [("v2", "2026-11-26T10:09:00.000Z", 5), ("v1", "2026-11-26T10:01:00.000Z", 3)]
    items = [
        {"sk": image_sk(key, version), "image_key": key, "captured_at": captured, "uploaded_at": at}
        | {"image_version": version, "outcome": "count", "count": count}
        for version, at, count in uploads
    ]
    rows = history_rows(items)
    assert [(r["image_version"], r["count"]) for r in rows] == [("v1", 3), ("v2", 5)]


def test_jobs_in_flight_and_last_errors_newest_first() -> None:
    jobs = [
        {"pk": "j1", "status": "InProgress", "created_at": "2"},
        {"pk": "j2", "status": "Completed", "created_at": "1"},
        {
            "pk": "j3",
            "status": "Failed",
            "failure_reason": "CapacityError",
            "updated_at": "2026-11-26T10:00:09Z",
        },
    ]
    assert [j["pk"] for j in jobs_in_flight(jobs)] == ["j1"]
    errors = [
        {
            "image_key": "k",
            "error_code": "empty_body",
            "error_message": "empty",
            "recorded_at": "2026-11-26T10:00:05Z",
        }
    ]
    entries = last_errors(errors, [jobs[2]], limit=5)
    assert [e["what"] for e in entries] == ["job j3", "photo k"]
    assert entries[0]["error"] == "Failed: CapacityError"
    assert last_errors(errors, [jobs[2]], limit=1) == entries[:1]


def test_keys_in_body_reads_s3_notifications_only() -> None:
    body = json.dumps({"Records": [{"s3": {"object": {"key": "incoming/BIN-1/a+b%3A1.jpg"}}}]})
    assert keys_in_body(body) == ["incoming/BIN-1/a b:1.jpg"]
    assert keys_in_body(json.dumps({"Event": "s3:TestEvent"})) == []
    assert keys_in_body("not json") == []
