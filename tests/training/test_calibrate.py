"""``python -m training.calibrate``: the held-out photos of a finished run, rebuilt from its config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from common.errors import UsageError
from model.config import ModelConfig
from training.calibrate import held_out_samples
from training.data import discover_local, stratified_split


def _folder(root: Path, counts: dict[int, int]) -> Path:
    for count, n in counts.items():
        folder = root / "images" / str(count)
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"c{count}-{i:02d}.jpg").write_bytes(b"not decoded here")
    return root


def _config_of_a_run(root: Path, trained_counts: set[int], seed: int = 0) -> ModelConfig:
    """The config a run records: its seed, and the split counts of the photos it saw."""
    samples, _ = discover_local(root)
    split = stratified_split([s for s in samples if s.count in trained_counts], seed)
    recorded = {
        name: {str(k): v for k, v in sorted(Counter(s.count for s in photos).items())}
        for name, photos in split.items()
    }
    return ModelConfig(training={"data": {"split_counts": recorded}, "hyperparameters": {"seed": seed}})


def test_held_out_photos_are_the_test_split_and_the_counts_the_run_never_saw(tmp_path: Path) -> None:
    root = _folder(tmp_path, {1: 20, 2: 20, 3: 10, 7: 4, 12: 1})
    config = _config_of_a_run(root, {1, 2, 3})
    held, rule = held_out_samples(root, config)
    samples, _ = discover_local(root)
    test = stratified_split([s for s in samples if s.count <= 3], 0)["test"]
    assert {s.id for s in held} == {s.id for s in test} | {s.id for s in samples if s.count > 3}
    assert "seed 0" in rule and "5 photos with counts the split never held" in rule


def test_a_folder_that_does_not_rebuild_the_recorded_split_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path, {1: 20, 2: 20})
    config = _config_of_a_run(root, {1, 2})
    (root / "images" / "2" / "extra.jpg").write_bytes(b"one photo more than the run had")
    with pytest.raises(UsageError, match="is not the recorded"):
        held_out_samples(root, config)


def test_a_config_without_a_recorded_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="records no split"):
        held_out_samples(_folder(tmp_path, {1: 3}), ModelConfig())


def test_a_run_with_its_own_calibration_split_is_left_alone(tmp_path: Path) -> None:
    root = _folder(tmp_path, {1: 20})
    config = _config_of_a_run(root, {1})
    config.training["data"]["split_counts"]["calibration"] = {"1": 1}
    with pytest.raises(UsageError, match="already carries its ranges"):
        held_out_samples(root, config)
