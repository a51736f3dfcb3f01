"""Temperature scaling and the review threshold."""

from __future__ import annotations

import pytest
import torch

from training.reporting.metrics import expected_calibration_error
from training.uncertainty import calibration


def _overconfident(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits that are right ~60 % of the time but claim ~99 % confidence."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (n,), generator=generator)
    predicted = torch.where(
        torch.rand(n, generator=generator) < 0.6, labels, torch.randint(0, 6, (n,), generator=generator)
    )
    logits = torch.randn(n, 6, generator=generator)
    logits[torch.arange(n), predicted] += 8.0
    return logits, labels


def test_temperature_above_one_for_overconfident_logits_and_ece_drops() -> None:
    logits, labels = _overconfident()
    temperature = calibration.fit_temperature(logits, labels)
    assert temperature > 1.5
    before = expected_calibration_error(calibration.probabilities(logits).numpy(), labels.tolist())
    after = expected_calibration_error(
        calibration.probabilities(logits, temperature).numpy(), labels.tolist()
    )
    assert after < before / 2
    report = calibration.calibration_report(logits, labels, "argmax", temperature)
    assert float(report["nll_after"]) < float(report["nll_before"])  # type: ignore[arg-type]


def test_temperature_near_one_for_calibrated_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4000, 6, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.1)


def test_expected_decoding_rounds_the_mean_count() -> None:
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.0, 0.0, 0.5], [0.1, 0.6, 0.3, 0.0, 0.0, 0.0]])
    assert calibration.decode(probs, "argmax").tolist() == [1, 1]
    assert calibration.decode(probs, "expected").tolist() == [3, 1]
    assert calibration.confidence(probs, torch.tensor([3, 1])).tolist() == pytest.approx([0.0, 0.6])


def test_threshold_table_and_choice() -> None:
    # confident photos are right, hesitant ones wrong: a threshold between them catches every mistake
    probs = torch.tensor([[0.9, 0.1]] * 6 + [[0.55, 0.45]] * 4)
    labels = torch.tensor([0] * 6 + [1] * 4)
    rows = calibration.threshold_table(probs, labels, "argmax", [0.5, 0.6, 0.95])
    assert [(r.flagged, r.wrong_caught, r.right_flagged) for r in rows] == [
        (0.0, 0.0, 0.0),
        (0.4, 1.0, 0.0),
        (1.0, 1.0, 1.0),
    ]
    assert rows[1].accuracy_unflagged == 1.0
    assert calibration.choose_threshold(rows).threshold == 0.6
    assert calibration.choose_threshold(rows, max_flagged=0.3).threshold == 0.5


def test_calibrate_picks_the_better_decoding_and_a_threshold_then_reports_it_on_another_split() -> None:
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (200,))
    logits = torch.nn.functional.one_hot(labels, 4).float() * 3 + torch.randn(200, 4)
    scores = {"argmax": 0.5, "expected": 0.4}
    chosen = calibration.calibrate(logits, labels, ["argmax", "expected"], lambda d, t: {"score": scores[d]})
    assert chosen.decoding == "argmax" and chosen.temperature > 0
    assert set(chosen.scores) == {"argmax", "expected"} and chosen.report["temperature"] == chosen.temperature
    assert chosen.threshold.flagged <= calibration.MAX_FLAGGED
    tie = calibration.calibrate(logits, labels, ["expected", "argmax"], lambda d, t: {"score": 0.5})
    assert tie.decoding == "argmax"  # ties go to what serving does by default
    ece, review = calibration.review_on(logits[:50], labels[:50], chosen)
    assert 0 <= ece <= 1 and review["threshold"] == chosen.threshold.threshold
