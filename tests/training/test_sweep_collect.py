"""The GPU sweep's collector: what comes back from a lent machine (8 files, 64 MiB at most)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from training.sweep import collect


def _fake_run(runs: Path, name: str, score: float | None, weight_bytes: int = 1000) -> None:
    (runs / f"{name}.log").write_text(f"training {name}\nresult ...\n")
    if score is None:  # killed before it finished: a log and nothing else
        return
    folder = runs / name
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"w" * weight_bytes)
    (folder / "config.json").write_text("{}")
    (folder / "metrics.json").write_text(json.dumps({"valid": {"score": score}}))
    (folder / "predictions.json").write_text(json.dumps({"temperature": 1.0, "splits": {}}))


def test_summary_ranks_finished_runs_and_weights_fit_the_return_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, out, prepared = tmp_path / "runs", tmp_path / "out", tmp_path / "prep"
    for folder in (runs, out, prepared):
        folder.mkdir()
    (prepared / "manifest.json").write_text(json.dumps({"seed": 0}))
    for i in range(10):
        _fake_run(runs, f"run{i}", score=i / 100)
    _fake_run(runs, "killed", score=None)
    monkeypatch.setattr(collect, "MAX_FILES", 3)
    collect.main(runs, prepared, out)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranked"][:3] == ["run9", "run8", "run7"] and "killed" not in summary["ranked"]
    assert summary["runs"]["killed"]["log_tail"][0] == "training killed"  # its log still comes back
    assert "predictions" in summary["runs"]["run0"] and summary["split_manifest"] == {"seed": 0}
    packed = sorted(p.name for p in out.glob("*.tar"))
    assert packed == ["run7.tar", "run8.tar", "run9.tar"]  # best first, within the file limit
    with tarfile.open(out / "run9.tar") as tar:
        assert sorted(tar.getnames()) == ["config.json", "model.pt"]


def test_weights_beyond_the_byte_budget_stay_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    out.mkdir()
    _fake_run(runs, "big", score=0.9, weight_bytes=5000)
    _fake_run(runs, "small", score=0.1, weight_bytes=1000)
    monkeypatch.setattr(collect, "MAX_BYTES", 4000)
    collect.main(runs, tmp_path / "no-prep", out)
    assert [p.name for p in out.glob("*.tar")] == ["small.tar"]


def test_pack_refuses_a_folder_without_labels_or_an_out_it_would_wipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.sweep import pack

    assert pack.main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "pack")]) == 2
    assert "no labels.csv" in capsys.readouterr().err
    data, precious = tmp_path / "data", tmp_path / "precious"
    data.mkdir()
    (data / "labels.csv").write_text("image,count\n")
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    assert pack.main(["--data", str(data), "--out", str(precious)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files" in err[0]
    assert (precious / "thesis.txt").is_file()
