"""make loop-demo end to end on generated photos with a tiny training budget (two runs, ~2 min).

One run whose candidate is promoted (``--override-gate``: a 2-step fine-tune rarely beats the
current model beyond chance, and the promotion path is what is tested): the stack switches model
servers, every photo is re-counted by the new version, human labels survive. One run whose gate
is forced to refuse (``--accuracy-tolerance -1``: an accuracy gain of 1.0 demanded): the old model
keeps serving and nothing is re-counted.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from imaging import jpeg_photo
from processes import REPO, python_env

from training.promotion import registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = ["--base-photos", "30", "--epochs", "1", "--max-steps", "2", "--max-eval-images", "16"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int], Path]:
    """12 photos in 6 bins (8 of them labelled) and a 30-photo base set of count folders."""
    root = tmp_path_factory.mktemp("loop-photos")
    labels: dict[str, int] = {}
    for index in range(12):
        count = index % 6
        folder = root / "images" / f"BIN-{index // 2 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"p{index:02d}.jpg").write_bytes(jpeg_photo(count, seed=21 + index))
        if index < 8:
            labels[f"incoming/{folder.name}/p{index:02d}.jpg"] = count
    for index in range(30):
        count = index % 6
        folder = root / "base" / str(count)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"b{index}.jpg").write_bytes(jpeg_photo(count, seed=400 + index))
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "count"])
        writer.writerows((f"images/{key.removeprefix('incoming/')}", count) for key, count in labels.items())
    return root / "images", root / "labels.csv", labels, root / "base"


def run_loop(
    photos: tuple[Path, Path, dict[str, int], Path], shipped_artifact: Path, out: Path, *extra: str
) -> dict[str, Any]:
    images, labels, _, base = photos
    command = [sys.executable, "-m", "local.loop", "--images", str(images), "--labels", str(labels)]
    command += ["--model", str(shipped_artifact), "--base", str(base), "--out", str(out), *TINY, *extra]
    done = subprocess.run(command, cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "model before" in done.stdout  # the before/after table
    return dict(json.loads((out / "report.json").read_text()))


def check_shape(report: dict[str, Any], labels: dict[str, int]) -> None:
    assert {"model_before", "model_after", "promoted", "gate", "images"} <= set(report)
    assert len(report["images"]) == 12
    for image in report["images"]:
        assert set(image) == {
            "key", "bin_id", "first_count", "first_model_version", "count", "model_version", "human_count",
            "first_count_is_lower_bound", "count_is_lower_bound", "human_count_is_lower_bound",
        }  # fmt: skip
        assert image["first_model_version"] == report["model_before"]
        assert image["human_count"] == labels.get(image["key"])
        assert image["bin_id"] == image["key"].split("/")[1]


def test_a_promoted_candidate_recounts_everything_and_human_labels_survive(
    photos: tuple[Path, Path, dict[str, int], Path], shipped_artifact: Path, tmp_path: Path
) -> None:
    report = run_loop(photos, shipped_artifact, tmp_path / "loop", "--override-gate")
    check_shape(report, photos[2])
    assert report["promoted"] is True and report["model_after"] != report["model_before"]
    assert {image["model_version"] for image in report["images"]} == {report["model_after"]}
    assert registry.served_version(tmp_path / "loop" / "registry") == report["model_after"]


def test_a_refused_gate_leaves_the_old_model_serving(
    photos: tuple[Path, Path, dict[str, int], Path], shipped_artifact: Path, tmp_path: Path
) -> None:
    report = run_loop(photos, shipped_artifact, tmp_path / "loop", "--accuracy-tolerance", "-1")
    check_shape(report, photos[2])
    assert report["promoted"] is False and report["model_after"] == report["model_before"]
    assert report["gate"]["verdict"] == "refuse" and report["gate"]["reasons"]
    assert {image["model_version"] for image in report["images"]} == {report["model_before"]}
    assert [image["count"] for image in report["images"]] == [
        image["first_count"] for image in report["images"]
    ]
    assert registry.served_version(tmp_path / "loop" / "registry") == report["model_before"]
