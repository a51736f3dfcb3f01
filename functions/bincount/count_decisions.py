"""What a count means for an expected quantity, and whether a person should look (pure, stdlib only).

Two decisions, one source of evidence:

* **Discrepancy.** With a calibrated range (the record's ``count_p_values``), the expected quantity
  contradicts the photo when it lies outside the range at level 1 - α: its p-value is ≤ α
  (``count_ranges.is_outside``). When the bin's record is right, the expected quantity is the true
  count, whose p-value is ≤ α with probability at most α: α is the false-alarm rate per checked
  bin. Without a range (an artifact with no calibration) the fallback is the model's probability
  of the expected quantity's class ≤ α, flagged ``calibrated: false``: no stated rate, but the same
  scale (it measured 5.1 % false alarms at α = 0.05 on unseen bins).
* **Review.** A look is worth most where it can raise or clear a discrepancy: with an expected
  quantity, ``borderline_discrepancy`` when α < p-value ≤ α + budget (the quantity is close to
  leaving the range). For a right record the p-value is about uniform, so this sends about
  ``budget`` of the photos. Without an expected quantity nothing is decided, so a look only narrows
  the range: ``wide_range`` when the served range holds at least ``range_width`` counts. Without a
  range, the confidence rule stays: ``low_confidence`` below ``confidence_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bincount.count_ranges import bounds, count_class, is_outside, p_value_of
from bincount.serving_records import CountResult

BORDERLINE_DISCREPANCY = "borderline_discrepancy"
WIDE_RANGE = "wide_range"
LOW_CONFIDENCE = "low_confidence"
REVIEW_REASONS = (BORDERLINE_DISCREPANCY, WIDE_RANGE, LOW_CONFIDENCE)
#: a p-value of 0 (a count no calibration photo made plausible) is as far as this one
MIN_EVIDENCE = 1e-6


@dataclass(frozen=True)
class DecisionRules:
    """The collector's parameters (template: DiscrepancyFalseAlarmRate, ReviewBudget,
    ReviewRangeWidth, ConfidenceThreshold)."""

    false_alarm_rate: float = 0.05
    review_budget: float = 0.10
    range_width: int = 5
    confidence_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must lie in (0, 1), got {self.false_alarm_rate}")
        if not 0.0 <= self.review_budget < 1.0:
            raise ValueError(f"review_budget must lie in [0, 1), got {self.review_budget}")
        if self.range_width < 1:
            raise ValueError(f"range_width must be >= 1, got {self.range_width}")


@dataclass(frozen=True)
class ExpectedCheck:
    """The model's evidence about one expected quantity, as the discrepancy event carries it.

    ``range_*``: the range at ``range_level`` = 1 - α (None without a calibration);
    ``expected_probability``: the model's probability of the expected quantity's class (None when
    the record has no probabilities); ``expected_p_value``: its conformal p-value (None without a
    calibration); ``outside``: the decision.
    """

    expected_quantity: int
    outside: bool
    calibrated: bool
    false_alarm_rate: float
    range_level: float
    range_low: int | None
    range_high: int | None
    range_open: bool | None
    expected_probability: float | None
    expected_p_value: float | None

    @property
    def margin(self) -> float | None:
        """How far the evidence lies from the decision's edge, as a ratio either side:
        |ln(p / α)| (0: on the edge; p = 2α and p = α/2 are equally far). Small = a look decides.
        A ratio, not |p - α|: below α there is only [0, α] of room, so p = 0.001 at α = 0.05 is
        a firm discrepancy although |p - α| is smaller than for p = 0.14, a mild borderline."""
        evidence = self.expected_p_value if self.calibrated else self.expected_probability
        if evidence is None:
            return None
        return abs(math.log(max(evidence, MIN_EVIDENCE) / self.false_alarm_rate))


def expected_probability(result: CountResult, expected: int) -> float | None:
    """The model's probability of the class that holds ``expected`` (top class: "N or more")."""
    if not result.probabilities:
        return None
    cls = count_class(expected, len(result.probabilities))
    return None if cls is None else float(result.probabilities[cls])


def count_differs(expected: int, count: int, count_is_lower_bound: bool) -> bool:
    """A count contradicts a quantity: a lower-bound count ("5 or more") only when it exceeds it.
    The rule without any probabilities (and for a person's label against the model's count)."""
    return count > expected if count_is_lower_bound else count != expected


def check_expected(result: CountResult, expected: int | None, rules: DecisionRules) -> ExpectedCheck | None:
    """The discrepancy decision for ``expected`` (None: the bin has no expected quantity)."""
    if expected is None:
        return None
    alpha = rules.false_alarm_rate
    probability = expected_probability(result, expected)
    if result.range is not None:
        p_values = result.range.p_values
        at = bounds(p_values, 1.0 - alpha)
        p_value = p_value_of(p_values, expected)
        return ExpectedCheck(
            expected_quantity=expected,
            outside=is_outside(p_values, expected, alpha),
            calibrated=True,
            false_alarm_rate=alpha,
            range_level=round(1.0 - alpha, 6),
            range_low=at.low,
            range_high=at.high,
            range_open=at.open,
            expected_probability=probability,
            expected_p_value=p_value,
        )
    outside = (
        probability <= alpha
        if probability is not None
        else count_differs(expected, result.count, result.count_is_lower_bound)
    )
    return ExpectedCheck(
        expected_quantity=expected,
        outside=outside,
        calibrated=False,
        false_alarm_rate=alpha,
        range_level=round(1.0 - alpha, 6),
        range_low=None,
        range_high=None,
        range_open=None,
        expected_probability=probability,
        expected_p_value=None,
    )


def range_width(result: CountResult) -> int | None:
    """How many counts the served range spans (an open top class counts as one)."""
    return None if result.range is None else result.range.high - result.range.low + 1


def review_reason(result: CountResult, expected: int | None, rules: DecisionRules) -> str | None:
    """Why a person should look at this count, or None (see the module's docstring)."""
    if result.range is None:
        return LOW_CONFIDENCE if result.confidence < rules.confidence_threshold else None
    if expected is None:
        width = range_width(result)
        return WIDE_RANGE if width is not None and width >= rules.range_width else None
    p_value = p_value_of(result.range.p_values, expected)
    alpha = rules.false_alarm_rate
    return BORDERLINE_DISCREPANCY if alpha < p_value <= alpha + rules.review_budget else None
