"""Split-conformal calibration of the count ranges, and how well the ranges cover (pure Python).

The calibration photos are scored with ``s = 1 - P(true class)`` (the least-ambiguous-set score)
on the probabilities as the served record prints them, after temperature scaling; their sorted
scores go into the config (``model.ranges.Conformal``), where serving turns them into one p-value
per count. Two groupings are offered:

* ``all``: one pool; coverage holds on average over the calibration mix of photos;
* ``predicted_count`` (Mondrian): one pool per predicted count, so coverage holds within each
  predicted count. A photo whose predicted count had fewer than :data:`MIN_GROUP` calibration
  photos falls back to the ``all`` pool.

Measured on the shipped model's held-out ABID photos (docs/evaluation.md), ``predicted_count``
keeps the high-count bins covered where one pool does not, so it is the default
(:data:`DEFAULT_GROUPS`).

The calibration photos are half of the held-out photos (:func:`calibration_halves`): neither the
training loop nor the checkpoint choice nor the temperature sees them, which is what makes the
p-values valid on new photos from the same mix.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from bincount.count_ranges import range_counts

from model.ranges import ALL, GROUPINGS, PLACES, Conformal, score_of

DEFAULT_GROUPS = "predicted_count"
#: A predicted count needs this many calibration photos for a pool of its own; fewer would make
#: its ranges needlessly wide (at 90 % a pool of n < 9 scores puts every count in the range).
MIN_GROUP = 30
#: The rule that cuts held-out photos into calibration and test halves, as recorded in configs.
HALVES_RULE = "sorted by (count, seeded shuffle within the count), alternately calibration, test"

T = TypeVar("T")


def calibration_halves(
    items: Sequence[T], count: Callable[[T], int], key: Callable[[T], str], seed: int = 0
) -> tuple[list[T], list[T]]:
    """Held-out photos -> (calibration, test), stratified by exact count, the same for a seed.

    Within each count the photos are shuffled by a seeded RNG (sorted by ``key`` first, so input
    order does not matter), then all photos, count by count, go alternately to calibration and
    test: both halves get every count in proportion, and counts with one photo alternate too.
    """
    by_count: dict[int, list[T]] = defaultdict(list)
    for item in sorted(items, key=key):
        by_count[count(item)].append(item)
    ordered: list[T] = []
    for value, group in sorted(by_count.items()):
        random.Random(f"{seed}:calibration:{value}").shuffle(group)
        ordered += group
    return ordered[0::2], ordered[1::2]


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the sorted ids, one a line: which photos a calibration used, in 64 characters."""
    return hashlib.sha256("".join(f"{i}\n" for i in sorted(ids)).encode()).hexdigest()


def _printed(probabilities: Sequence[float]) -> list[float]:
    return [round(float(p), PLACES) for p in probabilities]


def calibrate(
    probabilities: Sequence[Sequence[float]],
    labels: Sequence[int],
    predicted: Sequence[int],
    groups: str = DEFAULT_GROUPS,
    min_group: int = MIN_GROUP,
) -> Conformal:
    """The sorted scores of the calibration photos, pooled per ``groups``.

    ``labels``: the true class of each photo (counts above the open top class are the top class);
    ``predicted``: the count serving decodes for it (the record's ``count``).
    """
    if groups not in GROUPINGS:
        raise ValueError(f"unknown groups {groups!r}; choose one of {GROUPINGS}")
    if not len(probabilities) == len(labels) == len(predicted) or not labels:
        raise ValueError("calibration needs one label and one predicted count per photo, and photos")
    pools: dict[str, list[float]] = defaultdict(list)
    for probs, label, guess in zip(probabilities, labels, predicted, strict=True):
        score = score_of(_printed(probs)[label])
        pools[ALL].append(score)
        if groups == "predicted_count":
            pools[str(guess)].append(score)
    kept = {k: tuple(sorted(v)) for k, v in pools.items() if k == ALL or len(v) >= min_group}
    return Conformal(groups=groups, scores=dict(sorted(kept.items(), key=lambda kv: (kv[0] != ALL, kv[0]))))


def p_values(conformal: Conformal, probabilities: Sequence[float], predicted: int) -> list[float]:
    """Every count's p-value as the record prints it (4 places), so figures match the records."""
    return [round(p, PLACES) for p in conformal.p_values(_printed(probabilities), predicted)]


@dataclass
class Coverage:
    """How often the ranges at ``level`` held the true class, and how wide they were."""

    level: float
    n: int
    coverage: float
    mean_width: float
    contiguous: float  # share of ranges without a gap
    per_true_count: dict[str, dict[str, float]]  # "0".."top-1", then "top" exactly, then "top+" above

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def coverage(
    p_value_rows: Sequence[Sequence[float]], true_counts: Sequence[int], level: float, top: int
) -> Coverage:
    """Coverage and width of the ranges read from p-values, overall and per true count.

    ``true_counts`` are exact counts (7 stays 7): the per-count table keeps the exact top class
    apart from the bins above it (``"6+"`` for a top class 5), which are harder to tell apart.
    """
    hits: dict[str, list[bool]] = defaultdict(list)
    widths: dict[str, list[int]] = defaultdict(list)
    total_hits, total_width, gapless = 0, 0, 0
    for row, true in zip(p_value_rows, true_counts, strict=True):
        counts = range_counts(row, level)
        hit = min(true, top) in counts
        key = str(true) if true <= top else f"{top + 1}+"
        hits[key].append(hit)
        widths[key].append(len(counts))
        total_hits += hit
        total_width += len(counts)
        gapless += len(counts) == counts[-1] - counts[0] + 1
    n = len(true_counts)
    table = {
        key: {
            "n": len(hits[key]),
            "coverage": sum(hits[key]) / len(hits[key]),
            "mean_width": sum(widths[key]) / len(widths[key]),
        }
        for key in sorted(hits, key=lambda k: int(k.rstrip("+")) + (0.5 if k.endswith("+") else 0))
    }
    return Coverage(
        level=level,
        n=n,
        coverage=total_hits / n if n else 0.0,
        mean_width=total_width / n if n else 0.0,
        contiguous=gapless / n if n else 0.0,
        per_true_count=table,
    )


def harder_mix_coverage(table: dict[str, dict[str, float]], weights: dict[str, float]) -> float:
    """Coverage on a mix other than the test half's: per-true-count coverage weighted by ``weights``.

    Split conformal guarantees coverage on the calibration mix only; a warehouse whose bins hold
    more objects sees the per-count coverages in other proportions.
    """
    used = {k: w for k, w in weights.items() if k in table and w > 0}
    total = sum(used.values())
    return sum(table[k]["coverage"] * w for k, w in used.items()) / total if total else 0.0


#: A harder mix than ABID's: as many bins with 4, 5 and more objects as with 1-3 (weights per true count).
HARDER_MIX = {"0": 0.02, "1": 0.08, "2": 0.1, "3": 0.15, "4": 0.2, "5": 0.2, "6+": 0.25}
