"""`bincount upload` by bin layout with expected quantities, and people's labels in `history` / `bins`."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from bincount.count_records import image_sk
from cli_support import REGION, Run

from cli.photos import name_time, upload_key
from cli.stack import StackResources


def latest(table: str, bin_id: str) -> dict[str, Any]:
    item = (
        boto3.resource("dynamodb", region_name=REGION)
        .Table(table)
        .get_item(Key={"pk": f"BIN#{bin_id}", "sk": "LATEST"})
    )
    return dict(item.get("Item") or {})


def test_a_flat_folder_gives_each_photo_its_bin_and_the_labels_their_expected_quantity(
    on_stack: Run, deployed: StackResources, tmp_path: Path, bin_jpeg: bytes
) -> None:
    images = tmp_path / "abid" / "images"  # the ABID layout: images/ beside labels.csv
    images.mkdir(parents=True)
    for name in ("00001.jpg", "00002.jpg"):
        (images / name).write_bytes(bin_jpeg)
    labels = tmp_path / "abid" / "labels.csv"
    labels.write_text("image,count\nimages/00001.jpg,3\nimages/00002.jpg,0\n")
    result = on_stack("upload", str(images), "--expected", str(labels), "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [(row["bin_id"], row["expected"]) for row in rows] == [("00001", 3), ("00002", 0)]
    assert all(row["key"].startswith(f"incoming/{row['bin_id']}/") for row in rows)
    assert latest(deployed.counts_table, "00001")["expected_quantity"] == 3
    assert latest(deployed.counts_table, "00002")["expected_quantity"] == 0
    text = on_stack("upload", str(images / "00001.jpg"), "--expected", str(labels))
    assert "uploaded 1 photo(s) of 1 bin(s)" in text.out
    assert "expected quantities set for 1 bin(s)" in text.out


def test_bin_folders_name_the_bin_and_a_name_time_is_the_capture_time(
    on_stack: Run, deployed: StackResources, tmp_path: Path, bin_jpeg: bytes
) -> None:
    for relative in ("A-07/20261126T101500Z-cam1.jpg", "A-07/20261126T111500Z-cam1.jpg", "B-02/top.jpg"):
        (tmp_path / "bins" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bins" / relative).write_bytes(bin_jpeg)
    result = on_stack("upload", str(tmp_path / "bins"), "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    assert [(row["bin_id"], row["captured_at"]) for row in rows][:2] == [
        ("A-07", "2026-11-26T10:15:00.000Z"),
        ("A-07", "2026-11-26T11:15:00.000Z"),
    ]
    assert rows[0]["key"] == "incoming/A-07/20261126T101500Z-cam1.jpg"  # the stamp once, not twice
    assert rows[2]["bin_id"] == "B-02" and rows[2]["expected"] is None
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=deployed.ingest_bucket)
    assert listed["KeyCount"] == 3
    assert "expected quantities" not in on_stack("upload", str(tmp_path / "bins")).out


def test_photos_of_one_bin_with_one_capture_time_get_a_note(
    on_stack: Run, tmp_path: Path, bin_jpeg: bytes
) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(bin_jpeg)
    result = on_stack("upload", str(tmp_path), "--bin", "BIN-1", "--captured-at", "2026-11-26T10:00:00Z")
    assert result.code == 0 and "2 photos of BIN-1 share the capture time" in result.err


def test_a_bin_id_the_layout_cannot_make_is_one_line(on_stack: Run, tmp_path: Path, bin_jpeg: bytes) -> None:
    (tmp_path / "my photo!.jpg").write_bytes(bin_jpeg)
    result = on_stack("upload", str(tmp_path))
    assert result.code == 2 and "pass --bin BIN_ID" in result.err and result.err.count("\n") == 1


def test_name_time_and_keys() -> None:
    when = name_time("20261126T101500Z-cam1.jpg")
    assert when is not None and name_time("cam1.jpg") is None
    key = "incoming/A/20261126T101500Z-cam1.jpg"
    assert upload_key("incoming/", "A", when, "20261126T101500Z-cam1.jpg") == key
    assert upload_key("incoming/", "A", when, "cam1.jpg") == key


def put_labelled_bin(table: str) -> None:
    """BIN-L: two photos, the newer labelled 2 by alice (accepted) and LATEST following it; BIN-M: a
    model count nobody reviewed."""
    dynamodb = boto3.resource("dynamodb", region_name=REGION).Table(table)
    for index, label in ((0, None), (1, 2)):
        key = f"incoming/BIN-L/2026112{index}T100000Z-cam1.jpg"
        item: dict[str, Any] = {
            "pk": "BIN#BIN-L",
            "sk": image_sk(key, f"v{index}"),
            "bin_id": "BIN-L",
            "image_key": key,
            "etag": f"e{index}",
            "captured_at": f"2026-11-2{index}T10:00:00.000Z",
            "recorded_at": f"2026-11-2{index}T10:01:00.000Z",
            "outcome": "count",
            "count": 2,
            "confidence": Decimal("0.41"),
            "needs_review": True,
            "model_version": "m1",
        }
        if label is not None:
            item.update(
                human_count=label,
                human_count_is_lower_bound=False,
                label_source="accepted",
                reviewer="alice",
                reviewed_at="2026-12-07T01:02:03.000Z",
            )
        dynamodb.put_item(Item=item)
    common: dict[str, Any] = {
        "sk": "LATEST",
        "count": 2,
        "confidence": Decimal("0.41"),
        "model_version": "m1",
    }
    dynamodb.put_item(
        Item={
            "pk": "BIN#BIN-L",
            "bin_id": "BIN-L",
            **common,
            "needs_review": False,
            "human_label": {
                "reviewer": "alice",
                "reviewed_at": "2026-12-07T01:02:03.000Z",
                "model_count": 2,
                "label_source": "accepted",
            },
        }
    )
    dynamodb.put_item(Item={"pk": "BIN#BIN-M", "bin_id": "BIN-M", **common, "needs_review": True})


def test_history_shows_the_persons_label_beside_the_models_count(
    on_stack: Run, deployed: StackResources
) -> None:
    put_labelled_bin(deployed.counts_table)
    rows = json.loads(on_stack("history", "BIN-L", "--json").out)
    assert [(row["count"], row["label"], row["reviewer"], row["label_source"]) for row in rows] == [
        (2, None, None, None),
        (2, "2", "alice", "accepted"),
    ]
    assert rows[1]["reviewed_at"] == "2026-12-07T01:02:03.000Z"
    assert rows[1]["record_version"].startswith("e1|")
    table = on_stack("history", "BIN-L").out.splitlines()
    assert table[0].split()[:6] == ["captured", "photo", "model", "conf", "label", "by"]
    labelled = table[3]
    assert "alice, accepted" in labelled and "2026-12-07T01:02:03.000Z" in labelled
    assert "yes" not in labelled.split()  # reviewed: it no longer waits for a person
    assert "yes" in table[2].split()  # the unlabelled, unsure photo still does
    assert "2 photo(s) of BIN-L: 2 counted, 0 rejected, 1 labelled by a person" in table[-1]
    only = json.loads(on_stack("history", "BIN-L", "--reviewed", "no", "--json").out)
    assert [row["label"] for row in only] == [None]


@pytest.mark.parametrize(
    ("reviewed", "bins"), [(None, ["BIN-L", "BIN-M"]), ("yes", ["BIN-L"]), ("no", ["BIN-M"])]
)
def test_bins_says_whose_count_each_bin_holds(
    on_stack: Run, deployed: StackResources, reviewed: str | None, bins: list[str]
) -> None:
    put_labelled_bin(deployed.counts_table)
    argv = ["bins", "--json", *(["--reviewed", reviewed] if reviewed else [])]
    rows = json.loads(on_stack(*argv).out)
    assert [row["bin_id"] for row in rows] == bins
    by_bin = {row["bin_id"]: row for row in rows}
    if "BIN-L" in by_bin:
        row = by_bin["BIN-L"]
        assert (row["count_source"], row["reviewer"], row["label_source"], row["model_count"]) == (
            "person",
            "alice",
            "accepted",
            2,
        )
    if "BIN-M" in by_bin:
        assert (by_bin["BIN-M"]["count_source"], by_bin["BIN-M"]["reviewer"]) == ("model", None)
    text = on_stack("bins").out.splitlines()
    assert text[0].split()[:4] == ["bin", "count", "from", "model"]
    assert "alice, accepted" in text[2] and text[3].split()[:3] == ["BIN-M", "2", "model"]
