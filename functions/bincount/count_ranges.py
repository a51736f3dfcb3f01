"""Calibrated count ranges read from a record's conformal p-values (pure, stdlib only).

The model serves one split-conformal p-value per count (``count_p_values``, see
``serving_record.schema.json``). A count is in the range at level L when its p-value is greater
than 1 - L; on exchangeable data the true count falls outside that range with probability at most
1 - L. The collector uses the same p-values at level 1 - α to decide whether an expected quantity
contradicts the photo, and ``training.evaluate`` simulates that decision on labelled photos, so
both read ranges through these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """The lowest and highest count of a range; ``open``: the highest is the open top class."""

    low: int
    high: int
    open: bool
    contiguous: bool


def range_counts(p_values: Sequence[float], level: float) -> list[int]:
    """The counts whose p-value exceeds ``1 - level`` (never empty: the likeliest count stays in)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    inside = [k for k, p in enumerate(p_values) if p > 1.0 - level]
    return inside or [max(range(len(p_values)), key=p_values.__getitem__)]


def bounds(p_values: Sequence[float], level: float, top_class_open: bool = True) -> Bounds:
    counts = range_counts(p_values, level)
    low, high = counts[0], counts[-1]
    return Bounds(
        low=low,
        high=high,
        open=top_class_open and high == len(p_values) - 1,
        contiguous=len(counts) == high - low + 1,
    )


def count_class(quantity: int, classes: int, top_class_open: bool = True) -> int | None:
    """The class a quantity falls in: an open top class holds every quantity from it upwards.

    None when the quantity is beyond a closed top class (no class can hold it).
    """
    if quantity < 0:
        raise ValueError(f"a quantity cannot be negative, got {quantity}")
    top = classes - 1
    if quantity <= top:
        return quantity
    return top if top_class_open else None


def p_value_of(p_values: Sequence[float], quantity: int, top_class_open: bool = True) -> float:
    """The p-value of a quantity (0.0 for one no class can hold: it is outside every range)."""
    cls = count_class(quantity, len(p_values), top_class_open)
    return 0.0 if cls is None else float(p_values[cls])


def is_outside(p_values: Sequence[float], quantity: int, alpha: float, top_class_open: bool = True) -> bool:
    """True when ``quantity`` lies outside the range at level ``1 - alpha``: p-value ≤ α."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return p_value_of(p_values, quantity, top_class_open) <= alpha


def range_text(low: int, high: int, level: float, open_top: bool = False) -> str:
    """A range as people read it: ``2–4 at 90 %``, ``3–5+ at 90 %`` (open top class), ``2 at 90 %``."""
    top = f"{high}+" if open_top else str(high)
    span = top if low == high else f"{low}–{top}"
    return f"{span} at {level * 100:.4g} %"


def count_with_range(
    count: int,
    lower_bound: bool,
    low: int | None,
    high: int | None,
    level: float | None,
    open_top: bool = False,
) -> str:
    """``3, 2–4 at 90 %``: the count and its range (the count alone without a range)."""
    shown = f"{count}{'+' if lower_bound else ''}"
    if low is None or high is None or level is None:
        return shown
    return f"{shown}, {range_text(low, high, level, open_top)}"
