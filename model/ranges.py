"""Split-conformal count ranges at serving time (pure, stdlib only; shipped as ``code/model/ranges.py``).

The artifact's ``config.json`` may carry a ``conformal`` calibration (:class:`Conformal`): the
nonconformity scores ``s = 1 - P(true count)`` of photos the model never trained on nor selected
its checkpoint with, sorted, per group. For a new photo the p-value of count ``y`` is

    p(y) = (1 + #{calibration scores of the photo's group >= 1 - P(y)}) / (n_group + 1)

and the range at level L holds the counts with ``p(y) > 1 - L``: on exchangeable photos it misses
the true count with probability at most ``1 - L`` (split conformal prediction with the
least-ambiguous-set score, Sadinle et al. 2019; Mondrian per predicted count when ``groups`` is
``predicted_count``, Vovk et al. 2005). A count is in the set exactly when its probability is at
least the calibrated threshold, so the set never grows around the mode.

Scores and probabilities are both taken from the probabilities as the record prints them
(rounded to 4 places), so a consumer can recompute every p-value from a record and the config.
The range rule itself is ``functions/bincount/count_ranges.py``, the one the collector decides
with: the artifact carries it as ``code/bincount/count_ranges.py`` (stdlib only, see
``model/package.py``), so serving and the pipeline read p-values with one definition.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bincount.count_ranges import Bounds, bounds

SCORE = "1-p"
GROUPINGS = ("all", "predicted_count")
ALL = "all"
#: Places kept for probabilities (as the record prints them) and for scores.
PLACES = 4
DEFAULT_RANGE_LEVEL = 0.90


def score_of(probability: float) -> float:
    """The nonconformity score of a count whose (printed) probability is ``probability``."""
    return round(1.0 - round(float(probability), PLACES), PLACES)


@dataclass(frozen=True)
class Conformal:
    """The calibration a config carries: sorted scores per group; ``all`` also backs thin groups.

    ``groups == "predicted_count"``: ``scores`` holds ``"all"`` and one list per predicted count
    that had enough calibration photos; a photo whose predicted count has no list of its own
    uses ``"all"`` (marginal coverage for that group only).
    """

    groups: str
    scores: dict[str, tuple[float, ...]]
    score: str = SCORE

    def __post_init__(self) -> None:
        if self.score != SCORE:
            raise ValueError(f"unknown conformal score {self.score!r}; this code knows {SCORE!r}")
        if self.groups not in GROUPINGS:
            raise ValueError(f"unknown conformal groups {self.groups!r}; choose one of {GROUPINGS}")
        if not self.scores.get(ALL):
            raise ValueError("a conformal calibration needs the scores of all photos ('all')")
        for key, values in self.scores.items():
            if list(values) != sorted(values):
                raise ValueError(f"conformal scores of group {key!r} are not sorted")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Conformal:
        known = {"score", "groups", "scores", "n"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown conformal fields: {unknown}")
        scores = {str(k): tuple(float(s) for s in v) for k, v in dict(data["scores"]).items()}
        return cls(groups=str(data["groups"]), scores=scores, score=str(data.get("score", SCORE)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "groups": self.groups,
            "n": {k: len(v) for k, v in self.scores.items()},
            "scores": {k: list(v) for k, v in self.scores.items()},
        }

    def group_scores(self, predicted: int) -> tuple[float, ...]:
        if self.groups == "predicted_count":
            return self.scores.get(str(predicted), self.scores[ALL])
        return self.scores[ALL]

    def p_values(self, probabilities: Sequence[float], predicted: int) -> list[float]:
        """The p-value of every count, unrounded."""
        scores = self.group_scores(predicted)
        n = len(scores)
        return [(1 + n - bisect.bisect_left(scores, score_of(p))) / (n + 1) for p in probabilities]


#: The serving record's range is the pipeline's: one rule for both (``Range`` is its bounds).
Range = Bounds
range_of = bounds


def range_fields(
    conformal: Conformal, probabilities: Sequence[float], predicted: int, level: float, top_class_open: bool
) -> dict[str, Any]:
    """The record's range fields: p-values (4 places) and the range at ``level`` read from them."""
    p_values = [round(p, PLACES) for p in conformal.p_values(probabilities, predicted)]
    found = range_of(p_values, level, top_class_open)
    return {
        "count_p_values": p_values,
        "count_low": found.low,
        "count_high": found.high,
        "range_level": level,
        "range_open": found.open,
        "range_contiguous": found.contiguous,
    }
