"""The range rule on conformal p-values: membership, bounds, the open top class, the α edge."""

from __future__ import annotations

import pytest
from bincount.count_ranges import bounds, count_class, is_outside, p_value_of, range_counts

P = [0.004, 0.41, 0.83, 0.27, 0.06, 0.03]


def test_a_count_is_in_the_range_when_its_p_value_exceeds_one_minus_the_level() -> None:
    assert range_counts(P, 0.90) == [1, 2, 3]
    assert range_counts(P, 0.95) == [1, 2, 3, 4]
    assert range_counts(P, 0.50) == [2]


def test_the_range_is_never_empty() -> None:
    assert range_counts([0.01, 0.02, 0.03], 0.5) == [2]


def test_bounds_say_when_the_top_class_is_open_and_when_a_count_is_skipped() -> None:
    b97 = bounds(P, 0.97)  # 0.03 is not above 0.03: the top class stays out
    assert (b97.low, b97.high, b97.open, b97.contiguous) == (1, 4, False, True)
    b = bounds([0.01, 0.5, 0.02, 0.4, 0.2, 0.3], 0.9)
    assert (b.low, b.high, b.open, b.contiguous) == (1, 5, True, False)
    assert bounds([0.01, 0.5, 0.02, 0.4, 0.2, 0.3], 0.9, top_class_open=False).open is False


def test_quantities_beyond_the_open_top_class_fall_in_it() -> None:
    assert count_class(9, 6) == 5 and count_class(5, 6) == 5 and count_class(0, 6) == 0
    assert count_class(9, 6, top_class_open=False) is None
    assert p_value_of(P, 12) == P[5]
    assert p_value_of(P, 12, top_class_open=False) == 0.0


def test_the_alpha_edge_is_outside() -> None:
    assert is_outside(P, 4, 0.06) and not is_outside(P, 4, 0.0599)
    assert is_outside(P, 0, 0.05) and not is_outside(P, 3, 0.05)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_alpha_outside_the_open_interval_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError):
        is_outside(P, 1, alpha)
