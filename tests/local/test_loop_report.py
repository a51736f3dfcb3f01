"""make loop-demo's pure parts: the reviewer's answers, the review plan, the report, bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.errors import UsageError
from common.files import sha256_file
from local.loop import base_subset, main
from local.loop_report import (
    LoopUpload,
    build_report,
    latest_record,
    read_labels,
    render_table,
    review_plan,
)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images" / "BIN-1"
    folder.mkdir(parents=True)
    paths = [folder / f"p{i}.jpg" for i in range(3)]
    for path in paths:
        path.write_bytes(b"jpeg")
    return paths


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_are_read_relative_to_the_csv(tmp_path: Path, photos: list[Path]) -> None:
    labels = write_csv(
        tmp_path / "labels.csv", "image,count,note\nimages/BIN-1/p0.jpg,3,x\nimages/BIN-1/p2.jpg,0,\n"
    )
    assert read_labels(labels, photos) == {photos[0].resolve(): 3, photos[2].resolve(): 0}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("picture,count\nimages/BIN-1/p0.jpg,3\n", "no column image"),
        ("image,count\nimages/BIN-1/p0.jpg,three\n", "line 2: count 'three'"),
        ("image,count\nimages/BIN-1/p0.jpg,-1\n", "not a whole number"),
        ("image,count\nimages/BIN-1/typo.jpg,1\n", "'images/BIN-1/typo.jpg' names no photo"),
        ("image,count\n", "labels no photo"),
    ],
)
def test_bad_labels_are_one_line(tmp_path: Path, photos: list[Path], text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        read_labels(write_csv(tmp_path / "labels.csv", text), photos)


def test_a_labels_file_may_cover_more_photos_than_images(tmp_path: Path, photos: list[Path]) -> None:
    """One data set's labels.csv serves any of its subfolders; labelling none of IMAGES is refused."""
    other = tmp_path / "images" / "BIN-2" / "q.jpg"
    other.parent.mkdir()
    other.write_bytes(b"jpeg")
    labels = write_csv(tmp_path / "labels.csv", "image,count\nimages/BIN-2/q.jpg,2\nimages/BIN-1/p1.jpg,4\n")
    assert read_labels(labels, photos) == {photos[1].resolve(): 4}
    with pytest.raises(UsageError, match="labels no photo of IMAGES"):
        read_labels(write_csv(tmp_path / "only-other.csv", "image,count\nimages/BIN-2/q.jpg,2\n"), photos)


def test_a_missing_labels_file_is_refused(tmp_path: Path, photos: list[Path]) -> None:
    with pytest.raises(UsageError, match="no such file"):
        read_labels(tmp_path / "nope.csv", photos)


def test_the_plan_reviews_only_labelled_uploads_in_upload_order(photos: list[Path]) -> None:
    uploads = [LoopUpload(path, f"incoming/BIN-1/{path.name}", "BIN-1") for path in photos]
    plan = review_plan(uploads, {photos[2]: 5, photos[0]: 1})
    assert [(r.key, r.count) for r in plan] == [("incoming/BIN-1/p0.jpg", 1), ("incoming/BIN-1/p2.jpg", 5)]


def test_the_newest_record_of_a_key_wins() -> None:
    records = [
        {"image_key": "k", "recorded_at": "2026-12-01T10:00:00Z", "count": 1},
        {"image_key": "k", "recorded_at": "2026-12-01T11:00:00Z", "count": 2},
        {"image_key": "j", "recorded_at": "2026-12-01T09:00:00Z", "count": 3},
    ]
    assert {k: r["count"] for k, r in latest_record(records).items()} == {"k": 2, "j": 3}


def test_the_report_has_one_entry_per_upload_with_before_after_and_human(photos: list[Path]) -> None:
    uploads = [LoopUpload(path, f"incoming/BIN-1/{path.name}", "BIN-1") for path in photos]
    first: dict[str, dict[str, Any]] = {
        "incoming/BIN-1/p0.jpg": {"count": 2, "model_version": "v1"},
        "incoming/BIN-1/p1.jpg": {"count": 1, "model_version": "v1"},
        "incoming/BIN-1/p2.jpg": {"outcome": "error", "model_version": "v1"},
    }
    final = {
        "incoming/BIN-1/p0.jpg": {"count": 3, "model_version": "v2", "human_count": 3},
        "incoming/BIN-1/p1.jpg": {"count": 1, "model_version": "v2"},
    }
    summary = {"model_before": "v1", "model_after": "v2", "promoted": True, "gate": {"verdict": "promote"}}
    report = build_report(uploads, first, final, summary)
    assert report["model_before"] == "v1" and report["model_after"] == "v2" and report["promoted"] is True
    flags = {
        "first_count_is_lower_bound": False,
        "count_is_lower_bound": False,
        "human_count_is_lower_bound": False,
    }
    assert report["images"] == [
        {"key": "incoming/BIN-1/p0.jpg", "bin_id": "BIN-1", "first_count": 2, "first_model_version": "v1",
         "count": 3, "model_version": "v2", "human_count": 3, **flags},
        {"key": "incoming/BIN-1/p1.jpg", "bin_id": "BIN-1", "first_count": 1, "first_model_version": "v1",
         "count": 1, "model_version": "v2", "human_count": None, **flags},
        {"key": "incoming/BIN-1/p2.jpg", "bin_id": "BIN-1", "first_count": None, "first_model_version": "v1",
         "count": None, "model_version": "v1", "human_count": None, **flags},
    ]  # fmt: skip
    table = render_table(report)
    assert "reviewed (acc.)  n=1     before   0%  after 100%" in table
    assert "unreviewed       n=2     before    -  after 0 changed" in table
    assert "err" in table


def test_the_open_top_class_is_right_for_a_label_beyond_it(photos: list[Path]) -> None:
    """A reviewer answers ``+`` (more than 5) for 7 objects; the model's "5 or more" is right by
    it, an exact 5 would not be; the table shows ``5+`` and ``>5``."""
    uploads = [LoopUpload(path, f"incoming/BIN-1/{path.name}", "BIN-1") for path in photos[:2]]
    five_or_more = {"count": 5, "count_is_lower_bound": True, "model_version": "v1"}
    first = {
        "incoming/BIN-1/p0.jpg": five_or_more,
        "incoming/BIN-1/p1.jpg": {"count": 4, "model_version": "v1"},
    }
    beyond = {"human_count": 6, "human_count_is_lower_bound": True}
    final = {key: {**record, **beyond} for key, record in first.items()}
    report = build_report(
        uploads, first, final, {"model_before": "v1", "model_after": "v1", "promoted": False}
    )
    table = render_table(report)
    assert "reviewed (acc.)  n=2     before  50%  after 50%" in table
    assert "5+" in table and ">5" in table


def test_bad_images_are_one_line_before_anything_starts(
    tmp_path: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    labels = write_csv(tmp_path / "labels.csv", "image,count\nimages/BIN-1/p0.jpg,1\n")
    out = tmp_path / "out"
    code = main(["--images", str(tmp_path / "missing"), "--labels", str(labels), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no such file or folder" in err
    code = main(
        ["--images", str(tmp_path / "images"), "--labels", str(tmp_path / "x.csv"), "--out", str(out)]
    )
    assert code == 2 and "LABELS=" in capsys.readouterr().err
    assert not (out / "stack").exists() and not (out / "registry").exists()


def test_no_base_data_is_one_line_before_anything_starts(
    tmp_path: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    labels = write_csv(tmp_path / "labels.csv", "image,count\nimages/BIN-1/p0.jpg,1\n")
    out = tmp_path / "out"
    argv = ["--images", str(tmp_path / "images"), "--labels", str(labels), "--model", str(labels)]
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--base" in err
    assert not (out / "stack").exists()


def test_the_base_subset_leaves_out_the_loops_own_photos(tmp_path: Path) -> None:
    """A photo the loop uploads (and may review into the gate set) never reaches training through
    the base data, even when IMAGES were taken from the base folder."""
    base = tmp_path / "base" / "images"
    for count in ("1", "2"):
        (base / count).mkdir(parents=True)
        for i in range(4):
            (base / count / f"{count}-{i}.jpg").write_bytes(f"photo {count}-{i}".encode())
    uploaded = frozenset({sha256_file(base / "1" / "1-0.jpg"), sha256_file(base / "2" / "2-3.jpg")})

    kept = base_subset(base.parent, tmp_path / "subset", limit=100, exclude=uploaded)

    names = sorted(p.name for p in kept.rglob("*.jpg"))
    assert names == ["1-1.jpg", "1-2.jpg", "1-3.jpg", "2-0.jpg", "2-1.jpg", "2-2.jpg"]
    assert len(list(base_subset(base.parent, tmp_path / "all", limit=100).rglob("*.jpg"))) == 8
