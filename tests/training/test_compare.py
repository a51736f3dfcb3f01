"""Comparing runs and ensembles from saved logits (no photos, no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.promotion import compare

COUNTS = [0, 1, 2, 3]


def _write_run(folder: Path, logits: list[list[float]], ids: list[str] | None = None) -> Path:
    folder.mkdir(parents=True)
    split = {"ids": ids or ["a", "b", "c", "d"], "counts": COUNTS, "logits": logits}
    (folder / compare.PREDICTIONS_FILE).write_text(
        json.dumps({"temperature": 1.0, "splits": {"valid": split, "test": split}})
    )
    return folder


def _logits(predicted: list[int], strengths: list[float]) -> list[list[float]]:
    return [[s if k == p else 0.0 for k in range(6)] for p, s in zip(predicted, strengths, strict=True)]


def test_single_runs_and_their_ensemble_are_scored_on_each_split(tmp_path: Path) -> None:
    # each run is sure where it is right and hesitant where it is wrong
    a = _write_run(tmp_path / "a", _logits([0, 1, 5, 5], [6, 6, 1, 1]))
    b = _write_run(tmp_path / "b", _logits([5, 5, 2, 3], [1, 1, 6, 6]))
    rows = compare.compare(compare.load_runs([a, b]), max_members=2)
    by_members = {" + ".join(r["members"]): r for r in rows}
    assert by_members["a"]["valid"]["accuracy"] == 0.5 and by_members["b"]["test"]["accuracy"] == 0.5
    # averaged probabilities: each photo goes to the surer member, here always the right one
    ensemble = by_members["a + b"]["valid"]
    assert ensemble["accuracy"] == 1.0 and ensemble["rmse"] == 0.0
    assert by_members["a"]["valid"]["score"] == pytest.approx(0.5 - 0.25 * by_members["a"]["valid"]["rmse"])


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("training.promotion.compare: error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out
    return lines[0]


def test_runs_on_different_photos_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "a", _logits([0, 1, 2, 3], [5, 5, 5, 5]))
    b = _write_run(tmp_path / "b", _logits([0, 1, 2, 3], [5, 5, 5, 5]), ids=["a", "b", "c", "x"])
    assert compare.main([str(a), str(b)]) == 1
    assert "not comparable" in _one_line(capsys)
    assert compare.main([str(tmp_path)]) == 2
    assert "predictions.json" in _one_line(capsys)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"runs": {"killed": {"log_tail": ["timeout"]}}}))
    assert compare.main([str(summary)]) == 2
    assert "no runs with predictions" in _one_line(capsys)


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare.main([str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in _one_line(capsys)
    (tmp_path / "notes.txt").write_text("not json")
    assert compare.main([str(tmp_path / "notes.txt")]) == 2
    assert "is not a sweep summary.json" in _one_line(capsys)
    a = _write_run(tmp_path / "a", _logits([0, 1, 2, 3], [5, 5, 5, 5]))
    assert compare.main([str(a), "--ensembles", "0"]) == 2
    assert "--ensembles 0" in _one_line(capsys)
