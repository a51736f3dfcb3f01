"""The conformal calibration of the count ranges: its coverage guarantee, the set rule, the groups."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from bincount.count_ranges import range_counts

from model.ranges import ALL, Conformal, score_of
from training.uncertainty import conformal

CLASSES = 6


def draws(n: int, seed: int, sharpness: float = 1.0) -> tuple[list[list[float]], list[int]]:
    """Photos from a known distribution: a model's probabilities, and a true class drawn from a
    distortion of them (the model is miscalibrated, which conformal coverage must not care about)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(CLASSES, 0.7), size=n)
    truth_probs = probs**sharpness
    truth_probs /= truth_probs.sum(axis=1, keepdims=True)
    uniform = rng.random((n, 1))
    labels = np.minimum((truth_probs.cumsum(axis=1) < uniform).sum(axis=1), CLASSES - 1)
    return probs.tolist(), labels.tolist()


def argmax(rows: list[list[float]]) -> list[int]:
    return [int(np.argmax(r)) for r in rows]


def covered(calibration: Conformal, rows: list[list[float]], labels: list[int], level: float) -> float:
    hits = [
        label in range_counts(conformal.p_values(calibration, row, guess), level)
        for row, label, guess in zip(rows, labels, argmax(rows), strict=True)
    ]
    return sum(hits) / len(hits)


@pytest.mark.parametrize("groups", ["all", "predicted_count"])
@pytest.mark.parametrize(("level", "sharpness"), [(0.8, 0.5), (0.9, 1.0), (0.95, 2.0), (0.9, 0.3)])
def test_ranges_hold_the_true_count_at_least_at_the_level(
    groups: str, level: float, sharpness: float
) -> None:
    cal_rows, cal_labels = draws(10_000, seed=1, sharpness=sharpness)
    rows, labels = draws(15_000, seed=2, sharpness=sharpness)
    calibration = conformal.calibrate(cal_rows, cal_labels, argmax(cal_rows), groups)
    got = covered(calibration, rows, labels, level)
    assert got >= level - 0.01
    assert got <= level + 0.03  # valid without being trivially wide


def test_the_p_value_counts_calibration_scores_at_least_as_large() -> None:
    calibration = Conformal(groups="all", scores={ALL: (0.1, 0.3, 0.5, 0.7)})
    # scores of the counts: 0.8, 0.5, 0.3, 0.9 -> #{>=}: 0, 2, 3, 0 of n=4
    assert calibration.p_values([0.2, 0.5, 0.7, 0.1], predicted=2) == [1 / 5, 3 / 5, 4 / 5, 1 / 5]


def test_a_count_is_in_the_set_exactly_when_its_probability_reaches_a_threshold() -> None:
    """The least-ambiguous-set rule: sets are upper sets of the probabilities, never grown around the mode."""
    cal_rows, cal_labels = draws(500, seed=3)
    calibration = conformal.calibrate(cal_rows, cal_labels, argmax(cal_rows), "all")
    rows, _ = draws(500, seed=4)
    for row in rows:
        printed = [round(p, 4) for p in row]
        inside = set(range_counts(conformal.p_values(calibration, row, 0), 0.9))
        outside = set(range(CLASSES)) - inside
        if outside and len(inside) > 1:
            assert min(printed[k] for k in inside) >= max(printed[k] for k in outside)


def test_a_set_may_skip_a_count_that_a_grown_interval_would_hold() -> None:
    calibration = Conformal(groups="all", scores={ALL: tuple(sorted([0.6] * 9 + [0.95]))})
    p = calibration.p_values([0.02, 0.45, 0.04, 0.45, 0.02, 0.02], predicted=1)
    assert range_counts(p, 0.8) == [1, 3]


def test_mondrian_groups_cover_each_predicted_count_where_one_pool_does_not() -> None:
    """Photos predicted 0 are harder than their probabilities say; a shared pool under-covers them."""
    rows, labels = [], []
    for seed, sharpness, predicted_zero in ((5, 3.0, False), (6, 0.2, True)):
        r, lab = draws(6000, seed=seed, sharpness=sharpness)
        keep = [i for i, row in enumerate(r) if (int(np.argmax(row)) == 0) == predicted_zero]
        rows += [r[i] for i in keep]
        labels += [lab[i] for i in keep]
    order = np.random.default_rng(7).permutation(len(rows))
    rows, labels = [rows[i] for i in order], [labels[i] for i in order]
    half = len(rows) // 2
    zero = [i for i in range(half, len(rows)) if int(np.argmax(rows[i])) == 0]
    test_rows, test_labels = [rows[i] for i in zero], [labels[i] for i in zero]
    pooled = conformal.calibrate(rows[:half], labels[:half], argmax(rows[:half]), "all")
    mondrian = conformal.calibrate(rows[:half], labels[:half], argmax(rows[:half]), "predicted_count")
    assert covered(pooled, test_rows, test_labels, 0.9) < 0.85
    assert covered(mondrian, test_rows, test_labels, 0.9) >= 0.89


def test_a_predicted_count_with_few_calibration_photos_uses_the_shared_pool() -> None:
    rows = [[0.9, 0.02, 0.02, 0.02, 0.02, 0.02]] * 5 + [[0.02, 0.9, 0.02, 0.02, 0.02, 0.02]] * 40
    calibration = conformal.calibrate(rows, [0] * 5 + [1] * 40, argmax(rows), "predicted_count", min_group=30)
    assert set(calibration.scores) == {ALL, "1"}
    assert calibration.group_scores(0) == calibration.scores[ALL]
    assert len(calibration.group_scores(1)) == 40


def test_scores_are_sorted_rounded_and_survive_the_config() -> None:
    rows, labels = draws(300, seed=8)
    calibration = conformal.calibrate(rows, labels, argmax(rows), "predicted_count")
    data = calibration.to_dict()
    assert all(s == round(s, 4) for pool in data["scores"].values() for s in pool)
    assert Conformal.from_dict(data) == calibration
    assert data["n"][ALL] == 300
    assert score_of(0.12344) == 0.8766


def test_unknown_groupings_and_unsorted_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="groups"):
        Conformal(groups="per_bin", scores={ALL: (0.1,)})
    with pytest.raises(ValueError, match="sorted"):
        Conformal(groups="all", scores={ALL: (0.3, 0.1)})
    with pytest.raises(ValueError, match="fields"):
        Conformal.from_dict({"groups": "all", "scores": {ALL: [0.1]}, "level": 0.9})


def test_halves_are_stratified_deterministic_and_disjoint() -> None:
    items = [(f"id{i:03d}", c) for i, c in enumerate([1] * 40 + [2] * 21 + [7] + [9] + [13])]
    cal, test = conformal.calibration_halves(items, lambda x: x[1], lambda x: x[0], seed=0)
    again, _ = conformal.calibration_halves(list(reversed(items)), lambda x: x[1], lambda x: x[0], seed=0)
    other, _ = conformal.calibration_halves(items, lambda x: x[1], lambda x: x[0], seed=1)
    assert cal == again and cal != other
    assert not set(cal) & set(test) and len(cal) + len(test) == len(items)
    by_count = Counter(c for _, c in cal)
    assert by_count[1] == 20 and by_count[2] in (10, 11)
    assert 1 <= sum(by_count[c] for c in (7, 9, 13)) <= 2  # single photos alternate between halves


def test_coverage_reports_each_true_count_and_the_counts_above_the_top() -> None:
    rows = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    got = conformal.coverage(rows, [1, 2, 5, 2], level=0.9, top=2)
    assert got.coverage == 0.75 and got.mean_width == 1.0
    assert got.per_true_count == {
        "1": {"n": 1, "coverage": 1.0, "mean_width": 1.0},
        "2": {"n": 2, "coverage": 0.5, "mean_width": 1.0},
        "3+": {"n": 1, "coverage": 1.0, "mean_width": 1.0},
    }
    assert conformal.harder_mix_coverage(got.per_true_count, {"1": 1.0, "2": 3.0}) == pytest.approx(0.625)
