"""Count ranges at serving time: model.ranges reads p-values with the pipeline's one rule."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from bincount import count_ranges

from model.config import ModelConfig
from model.inference import SETTINGS, ServingSettings, count_record, load_model
from model.ranges import ALL, Conformal, range_of

CALIBRATION = Conformal(
    groups="predicted_count",
    scores={
        ALL: tuple(round(0.1 + 0.008 * i, 4) for i in range(100)),
        "2": tuple(0.3 + 0.01 * i for i in range(40)),
    },
)


def test_serving_reads_ranges_with_the_pipelines_rule() -> None:
    """One definition: the artifact carries bincount/count_ranges.py rather than a copy."""
    assert range_of is count_ranges.bounds


def test_a_calibrated_record_carries_p_values_and_its_range() -> None:
    config = ModelConfig(version="v", conformal=CALIBRATION.to_dict())
    record = count_record([0.01, 0.2, 0.45, 0.25, 0.06, 0.03], config, range_level=0.9)
    assert record["count"] == 2
    assert record["count_p_values"] == [round(p, 4) for p in CALIBRATION.p_values(record["probabilities"], 2)]
    bounds = count_ranges.bounds(record["count_p_values"], 0.9)
    assert (record["count_low"], record["count_high"]) == (bounds.low, bounds.high)
    assert record["count_low"] <= 2 <= record["count_high"]
    assert record["range_level"] == 0.9
    assert record["range_open"] is bounds.open and record["range_contiguous"] is bounds.contiguous


def test_a_predicted_count_without_its_own_pool_uses_all_photos() -> None:
    config = ModelConfig(version="v", conformal=CALIBRATION.to_dict())
    record = count_record([0.01, 0.6, 0.2, 0.1, 0.06, 0.03], config)
    assert record["count_p_values"] == [round(p, 4) for p in CALIBRATION.p_values(record["probabilities"], 0)]


def test_the_open_top_class_reads_or_more() -> None:
    config = ModelConfig(version="v", conformal=CALIBRATION.to_dict())
    record = count_record([0.0, 0.0, 0.01, 0.09, 0.3, 0.6], config)
    assert record["count_high"] == 5 and record["range_open"] is True
    closed = count_record([0.0, 0.0, 0.01, 0.09, 0.3, 0.6], replace(config, top_class_open=False))
    assert closed["range_open"] is False


def test_without_a_calibration_a_record_has_no_range_and_the_config_reads_as_before() -> None:
    config = ModelConfig(version="v")
    record = count_record([0.1, 0.5, 0.2, 0.1, 0.05, 0.05], config)
    assert not {"count_p_values", "count_low", "count_high", "range_level"} & set(record)
    assert "conformal" not in config.to_dict()
    calibrated = ModelConfig(version="v", conformal=CALIBRATION.to_dict())
    assert ModelConfig.from_json(calibrated.to_json()) == calibrated


def test_a_calibration_this_code_cannot_read_is_refused() -> None:
    with pytest.raises(ValueError, match="score"):
        ModelConfig(conformal={"score": "aps", "groups": "all", "scores": {ALL: [0.1]}})


@pytest.mark.parametrize(("raw", "level"), [("", 0.9), ("0.95", 0.95), ("1.5", 0.9), ("ninety", 0.9)])
def test_the_range_level_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, level: float
) -> None:
    monkeypatch.setenv("BINCOUNT_RANGE_LEVEL", raw)
    assert ServingSettings.from_env().range_level == level


@pytest.mark.slow
def test_an_artifact_without_calibration_says_so_once_at_load(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bincount.inference"):
        model = load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu", threads=2))
    assert model.ranges is None
    said = [r.getMessage() for r in caplog.records if "no range calibration" in r.getMessage()]
    assert said == ["this artifact has no range calibration: records carry no range"]
