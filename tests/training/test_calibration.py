"""Temperature scaling and the review threshold."""

from __future__ import annotations

import pytest
import torch

from training import calibration
from training.metrics import expected_calibration_error


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
