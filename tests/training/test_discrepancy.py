"""The simulated discrepancy decision: false alarms, catches, the open top class, the review band."""

from __future__ import annotations

import pytest

from training.uncertainty.discrepancy import (
    Photo,
    expected_quantities,
    in_review_band,
    raised_share,
    trade_off,
)

#: p-values of a photo whose range is 2-3 at most levels: 0.01 far off, 0.12 borderline at 4
PHOTO = [0.01, 0.03, 0.6, 0.4, 0.12, 0.01]


def test_simulated_records_are_right_or_off_either_way_never_below_zero() -> None:
    assert expected_quantities(3, 0) == [3]
    assert expected_quantities(3, 2) == [5, 1]
    assert expected_quantities(1, 2) == [3, 0]  # clipped at 0
    assert expected_quantities(0, 2) == [2]  # clipped to the truth: no discrepancy


def test_an_event_fires_exactly_when_the_expected_p_value_is_at_most_alpha() -> None:
    photos = [Photo(PHOTO, 2)]
    assert raised_share(photos, 0, 0.05) == 0.0
    assert raised_share(photos, 1, 0.05) == 0.5  # 3 stays in the range, 1 (p 0.03) leaves it
    assert raised_share(photos, 2, 0.05) == 0.5  # 4 is borderline (p 0.12), 0 leaves (p 0.01)
    assert raised_share(photos, 2, 0.12) == 1.0  # at the edge: p = alpha fires


def test_above_the_open_top_class_a_wrong_record_cannot_be_told_apart() -> None:
    photos = [Photo([0.0, 0.0, 0.0, 0.01, 0.2, 0.9], 7)]
    assert raised_share(photos, 1, 0.05) == 0.0  # 8 and 6 are "5 or more" like 7: missed
    six = [Photo([0.0, 0.0, 0.0, 0.01, 0.2, 0.9], 6)]
    assert raised_share(six, 3, 0.05) == 0.5  # 3 (p 0.01) is caught; 9 is "5 or more" like 6: missed
    assert raised_share(six, 3, 0.05, visible_only=True) == 1.0  # of those the model could see
    closed = [Photo([0.0, 0.0, 0.0, 0.01, 0.2, 0.9], 5)]
    assert raised_share(closed, 1, 0.05, top_class_open=False) == 0.5  # 6 fits no class: outside


def test_the_review_band_is_alpha_exclusive_to_alpha_plus_budget_inclusive() -> None:
    assert in_review_band(PHOTO, 4, 0.05, 0.10, True)
    assert not in_review_band(PHOTO, 4, 0.12, 0.10, True)  # raised instead
    assert in_review_band(PHOTO, 4, 0.02, 0.10, True)  # 0.12 = 0.02 + 0.10: still in
    assert not in_review_band(PHOTO, 4, 0.01, 0.10, True)
    assert not in_review_band(PHOTO, 2, 0.05, 0.10, True)


def test_trade_off_reports_alpha_review_and_a_curve() -> None:
    photos = [Photo(PHOTO, 2), Photo(PHOTO, 3)]
    found = trade_off(photos, alpha=0.05, budget=0.10, alphas=(0.01, 0.05, 0.5))
    assert found["n"] == 2
    assert found["at_alpha"]["false_alarm"] == 0.0
    # photo 2: 3 in, 1 out; photo 3: 4 in band, 2 in -> caught 1 of 4
    assert found["at_alpha"]["catch_off_by_1"] == pytest.approx(0.25)
    assert found["review"]["share_off_by_1"] == pytest.approx(0.25)
    assert found["review"]["share_inventory_right"] == 0.0
    assert found["review"]["holds_discrepancies"]["in_review_band"] == 1.0
    assert [row["alpha"] for row in found["curve"]] == [0.01, 0.05, 0.5]
    assert found["curve"][-1]["false_alarm"] == 0.5  # p(3) = 0.4 <= 0.5
