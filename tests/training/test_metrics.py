"""Metric functions against hand-computed expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.reporting.metrics import (
    ABID_CHALLENGE_PER_CLASS_ACCURACY,
    PUBLIC_BASELINES,
    challenge_comparison,
    challenge_expected_on_mix,
    compute_metrics,
    constant_baseline,
    expected_calibration_error,
    trivial_baselines,
)


def test_confusion_accuracy_rmse_mae_by_hand() -> None:
    y_true = [0, 0, 1, 2, 2, 3]
    y_pred = [0, 1, 1, 2, 4, 3]
    m = compute_metrics(y_true, y_pred, num_classes=6)
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    # errors: 0, 1, 0, 0, 2, 0 -> squared 0+1+0+0+4+0 = 5
    assert m.rmse == pytest.approx(math.sqrt(5 / 6))
    assert m.mae == pytest.approx(3 / 6)
    assert m.off_by_one_or_less == pytest.approx(5 / 6)
    assert m.confusion[0] == [1, 1, 0, 0, 0, 0]
    assert m.confusion[2] == [0, 0, 1, 0, 1, 0]
    assert m.confusion[4] == [0] * 6
    assert m.per_class_accuracy == {0: 0.5, 1: 1.0, 2: 0.5, 3: 1.0, 4: None, 5: None}
    # class 1 predicted twice, right once; class 4 predicted once, never right
    assert m.precision[1] == pytest.approx(0.5)
    assert m.precision[4] == 0.0
    assert m.precision[5] is None
    assert m.support == {0: 2, 1: 1, 2: 2, 3: 1, 4: 0, 5: 0}


def test_to_dict_is_json_ready() -> None:
    d = compute_metrics([1, 2], [1, 1], 3).to_dict()
    assert d["per_class_accuracy"] == {"0": None, "1": 1.0, "2": 0.0}
    assert d["confusion"] == [[0, 0, 0], [0, 1, 0], [0, 1, 0]]


def test_out_of_range_and_length_mismatch_are_errors() -> None:
    with pytest.raises(ValueError, match="outside"):
        compute_metrics([0, 6], [0, 1], 6)
    with pytest.raises(ValueError, match="items"):
        compute_metrics([0, 1], [0], 6)


def test_empty_input_gives_zero_not_nan() -> None:
    m = compute_metrics([], [], 6)
    assert m.n == 0 and m.accuracy == 0.0 and m.rmse == 0.0


def test_ece_toy_case_by_hand() -> None:
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right); 10 bins
    probs = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]]
    labels = [0, 1, 1, 0]
    # bin (0.8, 0.9]: acc 0.5, conf 0.9 -> 0.5 * 0.4 ; bin (0.5, 0.6]: acc 1.0, conf 0.6 -> 0.5 * 0.4
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)
    assert expected_calibration_error(np.array(probs), labels, n_bins=10) == pytest.approx(0.4)


def test_ece_is_zero_when_perfectly_calibrated_and_confident() -> None:
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == pytest.approx(0.0)


def test_ece_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error([0.5, 0.5], [0])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        expected_calibration_error([[0.5, 0.5]], [0, 1])


def test_trivial_baselines() -> None:
    y = [0, 1, 1, 1, 2, 5]
    base = trivial_baselines(y, num_classes=6)
    assert base["majority"].constant == 1
    assert base["majority"].accuracy == pytest.approx(0.5)
    # always 1: errors -1,0,0,0,1,4 -> rmse sqrt(18/6)
    assert base["majority"].rmse == pytest.approx(math.sqrt(18 / 6))
    # best constant for RMSE is the one nearest the mean (10/6 = 1.67) -> 2: errors -2,-1,-1,-1,0,3 -> 16/6
    assert base["best_rmse_constant"].constant == 2
    assert base["best_rmse_constant"].rmse == pytest.approx(math.sqrt(16 / 6))
    assert constant_baseline([3, 3], 3).accuracy == 1.0


def test_issue7_trivial_figures_on_shared_abid_mix() -> None:
    # the 52 ABID evaluation photos' mix: 10 x 0, 21 x 1, 20 x 2, 1 x 3
    # -> "always 1" gives 40 %, RMSE 0.81 (issue 7)
    y = [0] * 10 + [1] * 21 + [2] * 20 + [3]
    always_one = constant_baseline(y, 1)
    assert always_one.accuracy == pytest.approx(21 / 52)
    assert always_one.rmse == pytest.approx(0.81, abs=0.005)


def test_challenge_constants_and_mix() -> None:
    assert [ABID_CHALLENGE_PER_CLASS_ACCURACY[k] for k in range(6)] == [97.7, 83.4, 67.2, 54.9, 42.6, 44.9]
    by_name = {b.name: b for b in PUBLIC_BASELINES}
    assert by_name["abid-challenge-resnet34"].accuracy == pytest.approx(0.5567)
    assert by_name["abid-challenge-resnet34"].rmse == pytest.approx(0.930)
    assert by_name["frozen-resnet50-10k-subset"].accuracy == pytest.approx(0.3158)
    # the 52 ABID evaluation photos' mix: issue 7 quotes "about 79 %" for the baseline's per-class rates
    mix = challenge_expected_on_mix({0: 10, 1: 21, 2: 20, 3: 1})
    assert mix == pytest.approx((10 * 0.977 + 21 * 0.834 + 20 * 0.672 + 0.549) / 52)
    assert mix == pytest.approx(0.79, abs=0.01)
    rows = challenge_comparison(compute_metrics([0, 1], [0, 0], 6))
    assert rows[0] == {
        "count": 0,
        "support": 1,
        "accuracy": 1.0,
        "abid_challenge_accuracy": pytest.approx(0.977),
    }
    assert rows[1]["accuracy"] == 0.0 and rows[4]["accuracy"] is None


def test_plots_write_pngs(tmp_path) -> None:
    from training.reporting.plots import plot_confusion, plot_training_curves

    conf = compute_metrics([0, 1, 2], [0, 2, 2], 6).confusion
    png = plot_confusion(conf, tmp_path / "c.png", title="t")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        plot_confusion(conf, tmp_path / "x.png", labels=["a"])
    history = [
        {"epoch": 1, "train_loss": 1.2, "valid_loss": 1.3, "valid_accuracy": 0.3, "valid_rmse": 1.1},
        {"epoch": 2, "train_loss": 0.9, "valid_loss": 1.1, "valid_accuracy": 0.4},
    ]
    curves = plot_training_curves(history, tmp_path / "curves" / "h.png")
    assert curves.read_bytes()[:4] == b"\x89PNG"
