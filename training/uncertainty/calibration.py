"""Confidence calibration (temperature scaling) and the choice of the pipeline's review threshold.

A fine-tuned network is usually over-confident; dividing its logits by one scalar T > 1, fitted on
the validation split by minimising the negative log-likelihood (Guo et al. 2017), makes "0.7
confident" mean "right about 70 % of the time" without changing which class wins. The serving
handlers apply ``config.temperature``; the pipeline flags photos whose confidence is below the
review threshold chosen here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from training.reporting.metrics import expected_calibration_error

DEFAULT_THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(13))  # 0.30 .. 0.90
#: The chosen threshold may flag at most this fraction of photos: review costs people's time.
MAX_FLAGGED = 0.5


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising NLL of ``softmax(logits / T)`` (optimised as log T with LBFGS)."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().long().cpu()
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    temperature = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(temperature)):
        return 1.0
    return min(max(temperature, 0.05), 20.0)


def probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    return torch.softmax(logits.float() / temperature, dim=1)


def decode(probs: torch.Tensor, decoding: str) -> torch.Tensor:
    """Counts from probabilities, as serving decodes them: argmax, or the rounded expected count."""
    if decoding == "argmax":
        return probs.argmax(dim=1)
    if decoding == "expected":
        classes = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
        return (probs @ classes).round().long().clamp(0, probs.shape[1] - 1)
    raise ValueError(f"unknown decoding {decoding!r}")


def confidence(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Confidence of a decoded count: the probability of that count (the served ``confidence``)."""
    return probs.gather(1, counts.view(-1, 1)).squeeze(1)


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    flagged: float  # fraction of photos flagged for review
    wrong_caught: float  # fraction of wrong counts that are flagged
    right_flagged: float  # fraction of right counts that are flagged (needless reviews)
    accuracy_unflagged: float | None  # accuracy of the counts that pass without review


def threshold_table(
    probs: torch.Tensor, labels: torch.Tensor, decoding: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[ThresholdRow]:
    counts = decode(probs, decoding)
    conf = confidence(probs, counts)
    wrong = counts != labels
    rows = []
    for t in thresholds:
        flagged = conf < t
        n_wrong = int(wrong.sum())
        n_right = len(labels) - n_wrong
        passed = ~flagged
        rows.append(
            ThresholdRow(
                threshold=float(t),
                flagged=float(flagged.sum()) / len(labels) if len(labels) else 0.0,
                wrong_caught=float((flagged & wrong).sum()) / n_wrong if n_wrong else 1.0,
                right_flagged=float((flagged & ~wrong).sum()) / n_right if n_right else 0.0,
                accuracy_unflagged=float((~wrong[passed]).float().mean()) if bool(passed.any()) else None,
            )
        )
    return rows


def choose_threshold(rows: Sequence[ThresholdRow], max_flagged: float = MAX_FLAGGED) -> ThresholdRow:
    """The threshold that best separates wrong counts from right ones, flagging at most ``max_flagged``.

    "Best" is Youden's J = P(flagged | wrong) - P(flagged | right): the flag seen as a detector of
    wrong counts, rewarded for catching them and charged for needless reviews. Ties go to the lower
    threshold (fewer reviews). If every threshold flags too many photos, the one flagging the
    fewest wins.
    """
    allowed = [r for r in rows if r.flagged <= max_flagged]
    if not allowed:
        return min(rows, key=lambda r: (r.flagged, r.threshold))
    return max(allowed, key=lambda r: (round(r.wrong_caught - r.right_flagged, 6), -r.threshold))


def calibration_report(
    logits: torch.Tensor, labels: torch.Tensor, decoding: str, temperature: float
) -> dict[str, object]:
    """ECE before/after temperature scaling and the review-threshold table on one split."""
    before = probabilities(logits, 1.0)
    after = probabilities(logits, temperature)
    rows = threshold_table(after, labels, decoding)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(before.numpy(), labels.tolist()),
        "ece_after": expected_calibration_error(after.numpy(), labels.tolist()),
        "nll_before": float(F.cross_entropy(logits.float(), labels)),
        "nll_after": float(F.cross_entropy(logits.float() / temperature, labels)),
        "thresholds": [asdict(r) for r in rows],
    }


@dataclass
class Calibration:
    """What calibration decided for a model: its temperature, decoding and review threshold."""

    temperature: float
    decoding: str
    threshold: ThresholdRow
    report: dict[str, Any]  # calibration_report() on the validation split
    scores: dict[str, dict[str, Any]]  # the validation metrics of each decoding tried


def calibrate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    decodings: Sequence[str],
    score: Callable[[str, float], dict[str, Any]],
    max_flagged: float = MAX_FLAGGED,
) -> Calibration:
    """Fit the temperature, pick the decoding and the review threshold, all on validation.

    ``score(decoding, temperature)`` returns that decoding's validation metrics with a ``score``
    (the trainer's validation score); the best wins, ties going to ``argmax`` (what serving does
    by default). The threshold is chosen on the temperature-scaled probabilities of that decoding.
    """
    temperature = fit_temperature(logits, labels)
    scores = {d: score(d, temperature) for d in decodings}
    decoding = max(decodings, key=lambda d: (scores[d]["score"], d == "argmax"))
    report = calibration_report(logits, labels, decoding, temperature)
    rows = threshold_table(probabilities(logits, temperature), labels, decoding)
    return Calibration(temperature, decoding, choose_threshold(rows, max_flagged), report, scores)


def review_on(
    logits: torch.Tensor, labels: torch.Tensor, calibration: Calibration
) -> tuple[float, dict[str, Any]]:
    """ECE and the chosen threshold's flag rates on another split (test): how the choice generalises."""
    probs = probabilities(logits, calibration.temperature)
    ece = expected_calibration_error(probs.numpy(), labels.tolist())
    row = threshold_table(probs, labels, calibration.decoding, [calibration.threshold.threshold])[0]
    return ece, asdict(row)
