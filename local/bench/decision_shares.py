"""``python -m local.bench.decision_shares``: what the collector's decision and review rules send where,
on synthetic calibration-like data (numpy only, about a second).

A stand-in model over counts 0..5 ("5 or more") whose probabilities peak near a noisy estimate of
the true count (about 37 % exact, like the shipped model), split-conformal p-values with the
score 1 - P(true count) from a separate calibration draw, then the rules of
``bincount.count_decisions`` on bins whose inventory record is right or off by 1, 2, 3. The figures
in docs/pipeline.md ("Counts, ranges and decisions") come from this run; the real model's come
from ``training.evaluate``.
"""

from __future__ import annotations

import argparse

import numpy as np

CLASSES = 6
COUNT_SHARES = np.array([0.04, 0.22, 0.2, 0.16, 0.12, 0.26])  # ABID-like: few empty bins, many 5+


def draw(
    rng: np.random.Generator, n: int, noise: float = 1.2, spread: float = 1.2
) -> tuple[np.ndarray, np.ndarray]:
    """True counts and the stand-in model's probabilities for ``n`` photos."""
    truth = rng.choice(CLASSES, size=n, p=COUNT_SHARES)
    estimate = truth + rng.normal(0, noise, size=n) + rng.normal(0, 0.3, size=n) * truth
    logits = -((np.arange(CLASSES)[None, :] - estimate[:, None]) ** 2) / (2 * spread**2)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return truth, probabilities / probabilities.sum(axis=1, keepdims=True)


def p_values(calibration_scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Split-conformal p-value of every count: (1 + #{calibration scores ≥ 1 - P(k)}) / (n + 1)."""
    scores = np.sort(calibration_scores)
    at_least = len(scores) - np.searchsorted(scores, 1.0 - probabilities, side="left")
    return (1 + at_least) / (len(scores) + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--budget", type=float, default=0.10)
    parser.add_argument("--level", type=float, default=0.90)
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    truth, probabilities = draw(rng, args.photos)
    cal_truth, cal_probabilities = draw(rng, args.photos // 5)
    pv = p_values(1.0 - cal_probabilities[np.arange(len(cal_truth)), cal_truth], probabilities)
    inside = pv > 1.0 - args.level
    widths = np.array([np.ptp(np.flatnonzero(row)) + 1 if row.any() else 1 for row in inside])
    rows = np.arange(len(truth))
    print(
        f"{args.photos} photos: exact {np.mean(probabilities.argmax(axis=1) == truth):.1%}, "
        f"{args.level:.0%} ranges hold the truth for {inside[rows, truth].mean():.1%}, "
        f"{widths.mean():.2f} counts wide on average"
    )
    print(
        "wide_range share by ReviewRangeWidth: "
        + ", ".join(f"≥{w}: {np.mean(widths >= w):.1%}" for w in range(2, 7))
    )
    for off in (0, 1, 2, 3):
        valid = truth + off < CLASSES
        expected = (truth + off)[valid]
        p = pv[rows[valid], expected]
        raised = np.mean(p <= args.alpha)
        borderline = np.mean((p > args.alpha) & (p <= args.alpha + args.budget))
        print(
            f"record {'right' if off == 0 else f'off by {off}'} ({valid.sum()} bins): "
            f"discrepancy {raised:.1%}, "
            f"borderline_discrepancy review {borderline:.1%}, neither {1 - raised - borderline:.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
