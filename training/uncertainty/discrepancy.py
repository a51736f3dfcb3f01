"""The discrepancy decision simulated on labelled photos: false alarms, catches, the review band.

The collector raises ``Inventory Discrepancy Detected`` when the expected quantity lies outside the
photo's range at level 1 - α (``bincount.count_ranges.is_outside``: its p-value is at most α), and
sends a photo to review when the decision is borderline: ``α < p(expected) <= α + budget``. Here the
inventory record is simulated on photos whose true count is known: right (expected = true count),
or off by k = 1, 2, 3 either way (expected = true ± k, clipped at 0). A record off by k whose
expected quantity falls in the same open top class as the truth (true 7, expected 8 with "5 or
more") stays a real discrepancy the model cannot see: it counts as missed in ``catch_off_by_k``;
``visible_catch_off_by_k`` leaves those out (the records whose expected class differs from the
true class, the only ones a count model can contradict).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bincount.count_ranges import is_outside, p_value_of

OFFSETS = (1, 2, 3)
ALPHAS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
DEFAULT_ALPHA = 0.05
DEFAULT_REVIEW_BUDGET = 0.10


@dataclass(frozen=True)
class Photo:
    """What the simulation needs of one served photo: its p-values and its true (exact) count."""

    p_values: Sequence[float]
    true: int


def expected_quantities(true: int, offset: int) -> list[int]:
    """The simulated records of a photo: right (offset 0), or off by ``offset`` up and down.

    Down is clipped at 0 (a record cannot hold fewer than none); a clipped record equal to the
    truth (an empty bin) is no discrepancy and is left out.
    """
    if offset == 0:
        return [true]
    below = max(0, true - offset)
    return [true + offset] + ([below] if below != true else [])


def _cases(
    photos: Sequence[Photo], offset: int, visible_only: bool = False
) -> list[tuple[Sequence[float], int]]:
    cases = [(p.p_values, q, p.true) for p in photos for q in expected_quantities(p.true, offset)]
    if visible_only:
        top = len(photos[0].p_values) - 1 if photos else 0
        cases = [c for c in cases if min(c[1], top) != min(c[2], top)]
    return [(p, q) for p, q, _ in cases]


def raised_share(
    photos: Sequence[Photo],
    offset: int,
    alpha: float,
    top_class_open: bool = True,
    visible_only: bool = False,
) -> float:
    """Share of simulated records off by ``offset`` (0: right) on which the event fires at ``alpha``.

    ``visible_only``: only records whose expected class differs from the true class (an open top
    class holds every count from it up, so 7 and 8 are one class).
    """
    cases = _cases(photos, offset, visible_only and top_class_open)
    if not cases:
        return 0.0
    return sum(is_outside(p, q, alpha, top_class_open) for p, q in cases) / len(cases)


def in_review_band(
    p_values: Sequence[float], quantity: int, alpha: float, budget: float, top_class_open: bool
) -> bool:
    """The borderline rule the collector applies: the expected quantity close to leaving the range."""
    return alpha < p_value_of(p_values, quantity, top_class_open) <= alpha + budget


def review_share(
    photos: Sequence[Photo], offset: int, alpha: float, budget: float, top_class_open: bool = True
) -> float:
    cases = _cases(photos, offset)
    if not cases:
        return 0.0
    return sum(in_review_band(p, q, alpha, budget, top_class_open) for p, q in cases) / len(cases)


def trade_off(
    photos: Sequence[Photo],
    alpha: float = DEFAULT_ALPHA,
    budget: float = DEFAULT_REVIEW_BUDGET,
    top_class_open: bool = True,
    alphas: Sequence[float] = ALPHAS,
) -> dict[str, Any]:
    """False alarms and catches at ``alpha``, the review band's share and yield, and the curve over α.

    ``review``: for the inventory right and off by k, the share of records whose decision is
    borderline (sent to a person); ``review.holds_discrepancies``: of the photos in the band (a mix
    with as many wrong records as right ones, off by 1, 2 and 3 alike), the share whose record is
    really wrong, against the same share among the photos that pass without review or event.
    """
    at_alpha = {
        "alpha": alpha,
        "false_alarm": raised_share(photos, 0, alpha, top_class_open),
        **{f"catch_off_by_{k}": raised_share(photos, k, alpha, top_class_open) for k in OFFSETS},
        **{
            f"visible_catch_off_by_{k}": raised_share(photos, k, alpha, top_class_open, visible_only=True)
            for k in OFFSETS
        },
    }
    right_band = review_share(photos, 0, alpha, budget, top_class_open)
    wrong_band = [review_share(photos, k, alpha, budget, top_class_open) for k in OFFSETS]
    wrong_quiet = [1 - at_alpha[f"catch_off_by_{k}"] - b for k, b in zip(OFFSETS, wrong_band, strict=True)]
    right_quiet = 1 - at_alpha["false_alarm"] - right_band
    band_wrong = sum(wrong_band) / len(OFFSETS)
    quiet_wrong = sum(wrong_quiet) / len(OFFSETS)
    review = {
        "budget": budget,
        "rule": "alpha < p(expected) <= alpha + budget",
        "share_inventory_right": right_band,
        **{f"share_off_by_{k}": b for k, b in zip(OFFSETS, wrong_band, strict=True)},
        "holds_discrepancies": {
            "mix": "half the records right, half off by 1, 2 or 3 (a third each)",
            "in_review_band": _share(band_wrong, right_band),
            "passed_quietly": _share(quiet_wrong, right_quiet),
        },
    }
    curve = [
        {
            "alpha": a,
            "false_alarm": raised_share(photos, 0, a, top_class_open),
            **{f"catch_off_by_{k}": raised_share(photos, k, a, top_class_open) for k in OFFSETS},
        }
        for a in alphas
    ]
    return {"n": len(photos), "at_alpha": at_alpha, "review": review, "curve": curve}


def _share(wrong: float, right: float) -> float | None:
    """Of photos from an even mix of wrong and right records, the share whose record is wrong."""
    return wrong / (wrong + right) if wrong + right > 0 else None
