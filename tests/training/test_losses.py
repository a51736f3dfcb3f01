"""Count losses and class weights."""

from __future__ import annotations

import pytest
import torch

from training.losses import CountLoss, class_weights, ordinal_loss, soft_targets


def test_gaussian_soft_labels_sum_to_one_and_peak_at_the_true_count() -> None:
    labels = torch.tensor([0, 3, 5])
    targets = soft_targets(labels, 6, "gaussian", sigma=0.75)
    assert torch.allclose(targets.sum(dim=1), torch.ones(3))
    assert targets.argmax(dim=1).tolist() == [0, 3, 5]
    # symmetric around an inner count, and farther counts get less
    assert targets[1, 2] == pytest.approx(float(targets[1, 4]))
    assert targets[1, 2] > targets[1, 1] > targets[1, 0]


def test_gaussian_spread_stops_at_the_empty_class_unless_asked_to_cross_it() -> None:
    labels = torch.tensor([0, 1, 2])
    apart = soft_targets(labels, 6, "gaussian", sigma=0.75)
    assert apart[0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # an empty bin is only empty
    assert apart[1, 0] == 0 and apart[2, 0] == 0  # and no full bin is partly empty
    assert torch.allclose(apart.sum(dim=1), torch.ones(3))
    assert apart[1, 2] > apart[1, 3] > 0  # the ordinal spread among 1..5 is kept
    crossing = soft_targets(labels, 6, "gaussian", sigma=0.75, empty_apart=False)
    assert 0.2 < float(crossing[0, 1]) < 0.4 and crossing[1, 0] > 0
    loss_apart = CountLoss("gaussian", 6)(torch.tensor([[4.0, 0, 0, 0, 0, 0]]), torch.tensor([0]))
    loss_crossing = CountLoss("gaussian", 6, empty_apart=False)(
        torch.tensor([[4.0, 0, 0, 0, 0, 0]]), torch.tensor([0])
    )
    assert float(loss_apart) < float(loss_crossing)  # a sure "empty" is what an empty bin should get


def test_label_smoothing_spreads_evenly() -> None:
    targets = soft_targets(torch.tensor([1]), 4, "smooth", smoothing=0.2)
    assert targets[0].tolist() == pytest.approx([0.05, 0.85, 0.05, 0.05])


def test_balanced_weights_equalise_class_totals_and_sqrt_is_milder() -> None:
    labels = torch.tensor([0] * 2 + [1] * 8 + [2] * 10)
    balanced = class_weights(labels, 4, "balanced")
    counts = torch.bincount(labels, minlength=4).float()
    totals = balanced * counts
    assert totals[0] == pytest.approx(float(totals[1])) == pytest.approx(float(totals[2]))
    assert balanced[3] == 0  # absent from training
    assert float((balanced * counts).sum() / counts.sum()) == pytest.approx(1.0)
    sqrt = class_weights(labels, 4, "sqrt")
    assert 1 < sqrt[0] < balanced[0]
    assert class_weights(labels, 4, "none").tolist() == [1.0] * 4


def test_ce_matches_torch_and_weights_shift_the_loss_towards_rare_classes() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 4), torch.tensor([0, 1, 2, 3, 1, 1, 2, 3])
    plain = CountLoss("ce", 4)
    assert plain(logits, labels) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5
    )
    weights = torch.tensor([5.0, 1.0, 1.0, 1.0])
    weighted = CountLoss("ce", 4, weights)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    assert weighted(logits, labels) == pytest.approx(float(expected), rel=1e-5)


def test_gaussian_loss_punishes_far_misses_more_than_near_ones() -> None:
    loss = CountLoss("gaussian", 6, sigma=0.75)
    near, far = torch.full((1, 6), -5.0), torch.full((1, 6), -5.0)
    near[0, 3], far[0, 0] = 5.0, 5.0
    label = torch.tensor([2])
    assert loss(near, label) < loss(far, label)


def test_ordinal_loss_is_small_when_right_and_grows_with_distance() -> None:
    label = torch.tensor([2])
    values = []
    for predicted in (2, 3, 5):
        logits = torch.full((1, 6), -8.0)
        logits[0, predicted] = 8.0
        values.append(float(ordinal_loss(logits, label)))
    assert values[0] < 1e-3 < values[1] < values[2]
    loss = CountLoss("ordinal", 6)
    logits = torch.randn(4, 6, requires_grad=True)
    loss(logits, torch.tensor([0, 1, 4, 5])).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError):
        CountLoss("coral", 6)
