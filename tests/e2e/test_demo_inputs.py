"""``make demo IMAGES=...``: what counts as photos, and one line at once when nothing does.

The error cases run ``python -m local.demo`` as a subprocess, as ``make demo`` does, and check
that nothing started: one line on stderr, exit code 2, no traceback and no log folder written
(the demo creates it only once the inputs passed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from processes import python_env

from cli.inventory import expected_quantities
from common.errors import UsageError
from local.report import (
    Upload,
    count_quality,
    discrepancy_lines,
    discrepancy_summary,
    mark_discrepancies,
    quality_lines,
    results_table,
)
from local.uploads import find_photos, photo_uploads

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"")  # only its presence is checked before the inputs
    env = python_env()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "local.demo",
            "--model",
            str(model),
            "--out",
            str(tmp_path / "out/r.json"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *phrases: str, tmp_path: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("local.demo: error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for phrase in phrases:
        assert phrase in lines[0]
    assert not (tmp_path / "out").exists(), "the demo started before checking its inputs"


@pytest.fixture
def photo(tmp_path: Path, bin_jpeg: bytes) -> Path:
    path = tmp_path / "photos" / "BIN-7.jpg"
    path.parent.mkdir()
    path.write_bytes(bin_jpeg)
    return path


def test_missing_folder(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--images", str(tmp_path / "nowhere"))
    assert_one_line(result, "no such file or folder", "a folder of photos", tmp_path=tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_demo(tmp_path, "--images", str(tmp_path / "empty"))
    assert_one_line(result, "is empty", "leave IMAGES empty", tmp_path=tmp_path)


def test_folder_without_photos(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("no photos here")
    (folder / "sub" / "more.csv").write_text("a,b")
    result = run_demo(tmp_path, "--images", str(folder))
    assert_one_line(result, "holds no photos", ".jpg", tmp_path=tmp_path)


def test_a_file_that_is_not_a_photo(tmp_path: Path) -> None:
    text = tmp_path / "list.txt"
    text.write_text("BIN-1")
    result = run_demo(tmp_path, "--images", str(text))
    assert_one_line(result, "is not a photo", tmp_path=tmp_path)


def test_missing_model_artifact(tmp_path: Path) -> None:
    result = run_demo(tmp_path, "--model", str(tmp_path / "none.tar.gz"))
    assert_one_line(result, "python -m model.package --onnx", tmp_path=tmp_path)


def test_a_single_photo_is_its_own_bin(photo: Path) -> None:
    (photo.parent / "labels.csv").write_text("image,count\nBIN-7.jpg,3\n")
    [found] = find_photos(photo)
    assert (found.path, found.bin_id, found.expected) == (photo, "BIN-7", 3)


def test_flat_folder_and_bin_subfolders(tmp_path: Path, bin_jpeg: bytes) -> None:
    root = tmp_path / "images"
    for relative in ("A-1.jpg", "BIN-9/front.jpg", "BIN-9/back.png", "BIN-9/notes.txt"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(bin_jpeg)
    # labels.csv beside the folder, image paths relative to the CSV (the ABID layout)
    (tmp_path / "labels.csv").write_text("image,count\nimages/A-1.jpg,0\nimages/BIN-9/front.jpg,4\n")
    photos = find_photos(root)
    assert [(p.path.relative_to(root).as_posix(), p.bin_id, p.expected) for p in photos] == [
        ("A-1.jpg", "A-1", 0),
        ("BIN-9/back.png", "BIN-9", None),
        ("BIN-9/front.jpg", "BIN-9", 4),
    ]
    keys = [u.key for u in photo_uploads(photos, "incoming/")]
    assert keys == ["incoming/A-1/A-1.jpg", "incoming/BIN-9/back.png", "incoming/BIN-9/front.jpg"]
    assert len(find_photos(root, limit=2)) == 2


def test_a_broken_labels_file_is_one_line(photo: Path) -> None:
    (photo.parent / "labels.csv").write_text("image,count\nBIN-7.jpg,three\n")
    with pytest.raises(UsageError, match="image,count"):
        find_photos(photo.parent)


def test_quality_beside_the_most_common_count() -> None:
    entries: list[dict[str, Any]] = [
        {"count": 1, "expected": 1},
        {"count": 1, "expected": 1},
        {"count": 2, "expected": 1},
        {"count": 3, "expected": 3},
        {"count": 0, "expected": 2},
        {"error": {"code": "corrupt_image"}, "expected": 4},  # not counted: not scored
        {"count": 2},  # no label: not scored
    ]
    quality = count_quality(entries)
    assert quality is not None
    assert quality["n"] == 5 and quality["accuracy"] == 0.6
    assert quality["rmse"] == pytest.approx(((1 + 4) / 5) ** 0.5, abs=1e-3)
    assert quality["baseline"]["name"].startswith("always 1")
    assert quality["baseline"]["accuracy"] == 0.6
    assert quality["baseline"]["rmse"] == pytest.approx(((4 + 1) / 5) ** 0.5, abs=1e-3)
    lines = quality_lines(quality, 0.35)
    assert "accuracy 60.0%" in lines[0] and "always 1" in lines[0]
    assert lines[1] == (
        "On these photos the model is no better than always 1 at exact counts: "
        "read its ranges, not its exact counts."
    )
    assert "below 0.35" in lines[2] and "needs review" in lines[2]
    better = {**quality, "accuracy": 0.8}
    assert quality_lines(better, None)[1] == (
        "On these photos the model is exactly right more often than always 1, by 20.0%."
    )
    assert count_quality([{"count": 1}]) is None


def test_expected_quantity_per_bin_is_the_newest_photos_label() -> None:
    uploads = [
        Upload("in/A/1.jpg", "A", b"", expected=2),
        Upload("in/A/2.jpg", "A", b"", expected=3),
        Upload("in/B/1.jpg", "B", b""),
        Upload("in/C/1.jpg", "C", b"", expected=0),
    ]
    assert expected_quantities(uploads) == {"A": 3, "C": 0}


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--count", "0"], "--count 0: give a whole number above 0"),
        (["--images-per-job", "-2"], "--images-per-job -2"),
        (["--window", "-1"], "--window -1"),
        (["--timeout", "0"], "--timeout 0"),
    ],
)
def test_pipeline_benchmark_checks_its_arguments_first(
    args: list[str], phrase: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from local.bench import pipeline_bench as bench

    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"")
    assert bench.main(["--model", str(model), "--out", str(tmp_path / "out/r.json"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("local.bench.pipeline_bench: error: ") and phrase in err[0]
    assert not (tmp_path / "out").exists()
    assert bench.main(["--model", str(tmp_path / "none.tar.gz")]) == 2
    assert "is missing" in capsys.readouterr().err


def test_make_demo_refuses_a_missing_images_path_before_installing_anything(tmp_path: Path) -> None:
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "demo", f"IMAGES={tmp_path / 'nowhere'}"],  # -n: even a passing check runs nothing
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        # run under `make test`: not a sub-make (it would print "Entering directory" on stdout)
        env={k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no such file or folder" in lines[0] and not result.stdout


@pytest.mark.parametrize("goal", ["train", "retrain", "loop-demo"])
def test_make_training_goals_refuse_a_missing_data_folder(goal: str) -> None:
    """DATA has no default (users' photos live wherever they downloaded them): one line, nothing run."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", goal, "DATA="],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "DATA")},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"make {goal} needs DATA=" in lines[0] and not result.stdout


def event(detail_type: str, bin_id: str, **detail: Any) -> dict[str, Any]:
    key = f"incoming/{bin_id}/a.jpg"
    return {"detail-type": detail_type, "detail": {"bin_id": bin_id, "image": {"key": key}, **detail}}


def test_the_demo_says_how_many_discrepancy_events_to_expect_false() -> None:
    """α × counts checked (bins with an expected quantity whose LATEST moved), beside the events
    whose expected quantity equals the label (false for sure); repeats of an event count once."""
    rows = (("A", 2, 2, 1, 3), ("B", 3, 0, 2, 4), ("C", 1, 4, 0, 2), ("D", 2, None, 1, 3))
    entries: list[dict[str, Any]] = [
        {"key": f"incoming/{b}/a.jpg", "bin_id": b, "count": c, "expected": e}
        | {"count_low": lo, "count_high": hi, "range_level": 0.9, "range_open": False}
        for b, c, e, lo, hi in rows
    ]
    events = [event("Bin Count Updated", b) for b in "ABCD"]
    discrepancies = [
        event("Inventory Discrepancy Detected", "B", expected_quantity=0, calibrated=True),
        event("Inventory Discrepancy Detected", "C", expected_quantity=5, calibrated=True),
    ]
    events += discrepancies + discrepancies[:1]  # at-least-once delivery
    summary = discrepancy_summary(events, entries, 0.05)
    assert summary == {
        "false_alarm_rate": 0.05,
        "checked": 3,
        "events": 2,
        "calibrated_events": 2,
        "expected_false_at_most": 0.15,
        "measured_false": 1,  # B: expected 0 is its label; C's record (5) is off from the label 4
    }
    lines = discrepancy_lines(summary)
    assert "2 of 3 counts checked" in lines[0] and "0.05 × 3 ≈ 0.15" in lines[1]
    mark_discrepancies(entries, events)
    table = results_table(entries)
    assert "3, 2–4 at 90 %" in table and "discrepancy event" in table
    assert [e["discrepancy_event"] for e in entries] == [False, True, True, False]
    uncalibrated = discrepancy_summary(
        [event("Bin Count Updated", "B"), event("Inventory Discrepancy Detected", "B", expected_quantity=0)],
        entries,
        0.05,
    )
    assert any("not guaranteed" in line for line in discrepancy_lines(uncalibrated))


def test_alpha_option_follows_the_template_parameter(tmp_path: Path) -> None:
    """``--alpha`` takes what DiscrepancyFalseAlarmRate takes, and becomes that parameter."""
    from local.demo import ALPHA_RANGE, decision_parameters
    from local.emulator.template import load_template

    declared = load_template(REPO_ROOT / "template.yaml")["Parameters"]["DiscrepancyFalseAlarmRate"]
    assert (declared["MinValue"], declared["MaxValue"]) == ALPHA_RANGE
    assert (
        decision_parameters(0.1) == {"DiscrepancyFalseAlarmRate": "0.1"} and decision_parameters(None) == {}
    )
    refused = run_demo(tmp_path, "--alpha", "0.7")
    assert refused.returncode == 2 and "--alpha" in refused.stderr
