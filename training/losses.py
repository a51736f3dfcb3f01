"""Losses for counting, where classes are ordered numbers, and the weighting of rare counts.

All losses act on the served network's ``num_classes`` logits, so whatever loss trains it, the
model in ``model/network.py`` and its softmax probabilities are what serving uses:

* ``ce``       plain cross-entropy;
* ``smooth``   cross-entropy with uniform label smoothing (``smoothing``);
* ``gaussian`` cross-entropy against soft labels spread to the neighbouring counts
                (``exp(-(k - y)^2 / 2 sigma^2)``, normalised): calling 3 a 4 costs less than calling it 0.
                With ``empty_apart`` (the default) the spread stops at the empty class: an empty bin
                (bare cardboard) is not "almost one object". Measured: it scored better overall, but
                with only 4 empty training photos neither setting recognises unseen empty bins
                (``docs/training.md``, "Empty bins");
* ``ordinal``  binary cross-entropy on the cumulative probabilities ``P(count > k)`` of the softmax,
                for every threshold k: an ordinal loss in the spirit of CORAL that needs no extra head.

True CORAL (one shared score with K-1 thresholds) is not offered: its class probabilities are
differences of sigmoids, which the linear softmax head served by ``model/network.py`` cannot represent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("ce", "smooth", "gaussian", "ordinal")
CLASS_WEIGHTINGS = ("none", "balanced", "sqrt")


def soft_targets(
    labels: torch.Tensor,
    num_classes: int,
    kind: str,
    smoothing: float = 0.1,
    sigma: float = 0.75,
    empty_apart: bool = True,
) -> torch.Tensor:
    """Target distribution ``(N, num_classes)`` for each true class; every row sums to 1."""
    one_hot = F.one_hot(labels, num_classes).float()
    if kind == "ce":
        return one_hot
    if kind == "smooth":
        return one_hot * (1 - smoothing) + smoothing / num_classes
    if kind == "gaussian":
        if sigma <= 0:
            raise ValueError("sigma must be positive")
        classes = torch.arange(num_classes, device=labels.device, dtype=torch.float32)
        weights = torch.exp(-((classes.view(1, -1) - labels.view(-1, 1).float()) ** 2) / (2 * sigma**2))
        if empty_apart:
            # Nothing flows across the empty / not-empty boundary, in either direction.
            empty = (labels == 0).view(-1, 1)
            weights = torch.where(empty != (classes == 0).view(1, -1), torch.zeros_like(weights), weights)
        return weights / weights.sum(dim=1, keepdim=True)
    raise ValueError(f"no soft targets for loss {kind!r}")


def class_weights(labels: torch.Tensor, num_classes: int, mode: str) -> torch.Tensor:
    """Per-class weights from the training labels' frequencies, mean 1 over the training photos.

    ``balanced`` is ``n / (K * n_k)`` (each class weighs as much in total); ``sqrt`` its square
    root, a milder correction. A class absent from training gets weight 0 (it cannot be learnt).
    """
    if mode not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class weighting {mode!r}; choose one of {CLASS_WEIGHTINGS}")
    counts = torch.bincount(labels, minlength=num_classes).float()
    if mode == "none":
        return torch.ones(num_classes)
    present = counts > 0
    weights = torch.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if mode == "sqrt":
        weights = weights.sqrt()
    mean_per_photo = (weights * counts).sum() / counts.sum()
    return weights / mean_per_photo


class CountLoss(torch.nn.Module):
    """One of :data:`LOSSES`, with optional per-class weights (a weighted mean over the batch)."""

    def __init__(
        self,
        kind: str,
        num_classes: int,
        weights: torch.Tensor | None = None,
        smoothing: float = 0.1,
        sigma: float = 0.75,
        empty_apart: bool = True,
    ) -> None:
        super().__init__()
        self.empty_apart = empty_apart
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
        self.kind = kind
        self.num_classes = num_classes
        self.smoothing = smoothing
        self.sigma = sigma
        self.register_buffer("weights", weights if weights is not None else torch.ones(num_classes))

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.kind == "ordinal":
            return ordinal_loss(logits, labels)
        targets = soft_targets(
            labels, self.num_classes, self.kind, self.smoothing, self.sigma, self.empty_apart
        )
        return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = self.weights  # type: ignore[assignment]
        w = weights[labels]
        return (self.per_sample(logits, labels) * w).sum() / w.sum().clamp(min=1e-12)


def ordinal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over thresholds k of BCE(P(count > k), [label > k]) with P from the softmax, per sample."""
    num_classes = logits.shape[1]
    log_p = F.log_softmax(logits, dim=1)
    # log P(count > k) = logsumexp of log p_j for j > k; log P(count <= k) likewise for j <= k.
    log_above = torch.stack(
        [torch.logsumexp(log_p[:, k + 1 :], dim=1) for k in range(num_classes - 1)], dim=1
    )
    log_at_most = torch.stack(
        [torch.logsumexp(log_p[:, : k + 1], dim=1) for k in range(num_classes - 1)], dim=1
    )
    thresholds = torch.arange(num_classes - 1, device=labels.device).view(1, -1)
    above = (labels.view(-1, 1) > thresholds).float()
    return -(above * log_above + (1 - above) * log_at_most).mean(dim=1)
