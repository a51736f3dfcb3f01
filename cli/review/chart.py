"""The probability chart of one photo's panel: SVG geometry, pure and testable.

Every column has the same width and the same track height, every bar stands on one baseline and
its height is its probability times the track's height, so the bars compare as the numbers do.
The model's answer is marked by an outline and a label, never by a different size or place.
Plain SVG attributes (no inline styles), so the page works under a strict Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

WIDTH = 340
TRACK_TOP = 6  # room above a full bar
TRACK_HEIGHT = 96
GAP = 6
LABEL_LINE = 14  # the percentage, the count and the "model" mark below the baseline


def percent(p: float) -> str:
    """``27%``; ``<1%`` for a probability that rounds to 0 but is not 0."""
    shown = round(p * 100)
    return "<1%" if shown == 0 and p > 0 else f"{shown}%"


def probability_bars(
    probabilities: Sequence[dict[str, Any]], model_count: int | None, width: int = WIDTH
) -> dict[str, Any]:
    """Columns for ``probabilities`` (``{"label", "p"}`` per class, 0 first) with the model's
    answer (its class index; None: a rejected photo) marked."""
    n = max(len(probabilities), 1)
    column = (width - GAP * (n - 1)) / n
    baseline = TRACK_TOP + TRACK_HEIGHT
    columns = []
    for k, bar in enumerate(probabilities):
        p = min(max(float(bar["p"]), 0.0), 1.0)
        height = round(TRACK_HEIGHT * p, 1)
        x = round(k * (column + GAP), 1)
        columns.append(
            {
                "k": k,
                "label": bar["label"],
                "p": p,
                "percent": percent(p),
                "x": x,
                "width": round(column, 1),
                "center": round(x + column / 2, 1),
                "bar_y": round(baseline - height, 1),
                "bar_height": height,
                "model": k == model_count,
            }
        )
    return {
        "width": width,
        "height": baseline + 3 * LABEL_LINE + 2,
        "track_top": TRACK_TOP,
        "track_height": TRACK_HEIGHT,
        "baseline": baseline,
        "percent_y": baseline + LABEL_LINE,
        "label_y": baseline + 2 * LABEL_LINE,
        "mark_y": baseline + 3 * LABEL_LINE,
        "columns": columns,
    }
