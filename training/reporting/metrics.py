"""Counting metrics, calibration error and the published baselines every report shows beside a figure.

Pure Python + numpy (no torch) so the trainer, the evaluation CLI and the tests import it cheaply.
Counts are class indices ``0..num_classes-1``; RMSE and MAE treat them as numbers, which is how
the ABID counting challenge reports them (an off-by-two error costs more than an off-by-one).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Per-class accuracy (%) of the ABID counting-challenge baseline (ResNet-34 trained from scratch
#: on ~480k photos), counts 0..5.
ABID_CHALLENGE_PER_CLASS_ACCURACY: dict[int, float] = {
    0: 97.7,
    1: 83.4,
    2: 67.2,
    3: 54.9,
    4: 42.6,
    5: 44.9,
}


#: How much RMSE weighs against accuracy in the one score checkpoints are chosen by.
RMSE_WEIGHT = 0.25


def validation_score(accuracy: float, rmse: float) -> float:
    """The one number checkpoints and early stopping are chosen by (higher is better):
    ``accuracy - 0.25 * rmse``, so 0.1 of RMSE is worth 2.5 points of accuracy."""
    return accuracy - RMSE_WEIGHT * rmse


@dataclass(frozen=True)
class PublicBaseline:
    """A published result quoted beside ours; ``rmse`` is None where the source gave none."""

    name: str
    accuracy: float  # fraction, 0..1
    rmse: float | None
    note: str


PUBLIC_BASELINES: tuple[PublicBaseline, ...] = (
    PublicBaseline(
        name="abid-challenge-resnet34",
        accuracy=0.5567,
        rmse=0.930,
        note="ABID counting challenge, ResNet-34 from scratch, counts 0-5, ~480k training photos",
    ),
    PublicBaseline(
        name="frozen-resnet50-10k-subset",
        accuracy=0.3158,
        rmse=None,
        note="frozen ResNet-50 + linear head on the 10,441-image subset (counts 1-5), the seed project",
    ),
)


@dataclass
class CountMetrics:
    """Everything one evaluation reports about predicted vs true counts.

    ``per_class_accuracy[k]`` is recall of class k (the challenge's "accuracy per class"), None when
    no image of that count is present. ``confusion[t][p]`` counts images of true count t predicted p.
    """

    n: int
    num_classes: int
    accuracy: float
    rmse: float
    mae: float
    per_class_accuracy: dict[int, float | None]
    precision: dict[int, float | None]
    recall: dict[int, float | None]
    support: dict[int, int]
    confusion: list[list[int]]
    off_by_one_or_less: float = field(default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; dict keys become strings, as JSON requires."""
        data = asdict(self)
        for key in ("per_class_accuracy", "precision", "recall", "support"):
            data[key] = {str(k): v for k, v in data[key].items()}
        return data


def _as_int_list(values: Iterable[int]) -> list[int]:
    return [int(v) for v in values]


def compute_metrics(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> CountMetrics:
    """Accuracy, RMSE, MAE, per-class precision/recall and the confusion matrix.

    Predictions or labels outside ``0..num_classes-1`` are an error: silently clipping them would
    hide a mismatch between the model's classes and the labels.
    """
    truth = _as_int_list(y_true)
    pred = _as_int_list(y_pred)
    if len(truth) != len(pred):
        raise ValueError(f"y_true has {len(truth)} items, y_pred {len(pred)}")
    for name, values in (("y_true", truth), ("y_pred", pred)):
        bad = [v for v in values if not 0 <= v < num_classes]
        if bad:
            raise ValueError(f"{name} holds counts outside 0..{num_classes - 1}: {sorted(set(bad))}")

    confusion = [[0] * num_classes for _ in range(num_classes)]
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1

    n = len(truth)
    correct = sum(confusion[k][k] for k in range(num_classes))
    errors = np.asarray(pred, dtype=float) - np.asarray(truth, dtype=float)
    rmse = float(math.sqrt(float(np.mean(errors**2)))) if n else 0.0
    mae = float(np.mean(np.abs(errors))) if n else 0.0
    within_one = float(np.mean(np.abs(errors) <= 1)) if n else 0.0

    support = {k: sum(confusion[k]) for k in range(num_classes)}
    predicted = {k: sum(confusion[t][k] for t in range(num_classes)) for k in range(num_classes)}
    recall: dict[int, float | None] = {
        k: (confusion[k][k] / support[k] if support[k] else None) for k in range(num_classes)
    }
    precision: dict[int, float | None] = {
        k: (confusion[k][k] / predicted[k] if predicted[k] else None) for k in range(num_classes)
    }
    return CountMetrics(
        n=n,
        num_classes=num_classes,
        accuracy=correct / n if n else 0.0,
        rmse=rmse,
        mae=mae,
        per_class_accuracy=dict(recall),
        precision=precision,
        recall=recall,
        support=support,
        confusion=confusion,
        off_by_one_or_less=within_one,
    )


def expected_calibration_error(
    probs: Sequence[Sequence[float]] | np.ndarray, labels: Iterable[int], n_bins: int = 15
) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017); confidence = max probability.

    Sum over bins of (bin size / n) * |accuracy in bin - mean confidence in bin|. Bins are closed
    on the right, so a confidence of exactly 1.0 lands in the last bin and 0 in none (a max
    probability can never be 0 for a distribution).
    """
    p = np.asarray(probs, dtype=float)
    y = np.asarray(list(labels), dtype=int)
    if p.ndim != 2:
        raise ValueError("probs must be 2-D: one probability vector per sample")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"probs has {p.shape[0]} rows, labels {y.shape[0]}")
    if p.shape[0] == 0:
        return 0.0
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


@dataclass(frozen=True)
class TrivialBaseline:
    """A constant predictor on the same labels: what a figure must beat to mean anything."""

    name: str
    constant: int
    accuracy: float
    rmse: float
    mae: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def constant_baseline(y_true: Iterable[int], k: int) -> TrivialBaseline:
    """Scores of always answering ``k``."""
    truth = np.asarray(_as_int_list(y_true), dtype=float)
    if truth.size == 0:
        return TrivialBaseline(f"always {k}", k, 0.0, 0.0, 0.0)
    errors = k - truth
    return TrivialBaseline(
        name=f"always {k}",
        constant=k,
        accuracy=float(np.mean(errors == 0)),
        rmse=float(math.sqrt(float(np.mean(errors**2)))),
        mae=float(np.mean(np.abs(errors))),
    )


def trivial_baselines(y_true: Iterable[int], num_classes: int | None = None) -> dict[str, TrivialBaseline]:
    """The majority-class predictor and the best constant for RMSE on these labels.

    Both are computed from the very labels being scored (an oracle choice of constant), so they
    are an upper bound on what a label-blind predictor could do: a model that does not beat them
    has learnt nothing useful. Ties for the majority go to the smaller count.
    """
    truth = _as_int_list(y_true)
    if not truth:
        return {}
    counts = Counter(truth)
    majority = min(counts, key=lambda k: (-counts[k], k))
    candidates = range(num_classes) if num_classes else range(min(truth), max(truth) + 1)
    by_rmse = min((constant_baseline(truth, k) for k in candidates), key=lambda b: (b.rmse, b.constant))
    return {"majority": constant_baseline(truth, majority), "best_rmse_constant": by_rmse}


def challenge_comparison(metrics: CountMetrics) -> list[dict[str, Any]]:
    """Per-class accuracy beside the ABID challenge baseline, for classes the labels contain."""
    rows: list[dict[str, Any]] = []
    for k in range(metrics.num_classes):
        ours = metrics.per_class_accuracy.get(k)
        rows.append(
            {
                "count": k,
                "support": metrics.support.get(k, 0),
                "accuracy": ours,
                "abid_challenge_accuracy": (
                    ABID_CHALLENGE_PER_CLASS_ACCURACY[k] / 100
                    if k in ABID_CHALLENGE_PER_CLASS_ACCURACY
                    else None
                ),
            }
        )
    return rows


def challenge_expected_on_mix(support: Mapping[int, int]) -> float | None:
    """Accuracy the ABID challenge baseline would get on this class mix (support-weighted)."""
    total = sum(n for k, n in support.items() if k in ABID_CHALLENGE_PER_CLASS_ACCURACY)
    if not total:
        return None
    weighted = sum(
        ABID_CHALLENGE_PER_CLASS_ACCURACY[k] / 100 * n
        for k, n in support.items()
        if k in ABID_CHALLENGE_PER_CLASS_ACCURACY
    )
    return weighted / total
