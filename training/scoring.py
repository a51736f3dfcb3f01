"""A model's figures on one split of decoded photos: its logits, loss, count metrics and validation score.

torchvision's ``evaluate()``, shared by the epoch loop (validation after every epoch,
``training.train``) and what follows it (calibration and the test split, ``training.finish``).
Evaluation photos are already cached at the model's input size, as serving resizes them, so the
figures are those of the pixels the serving handlers see.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from model.config import ModelConfig
from training.dataset import ImageSet, normalise
from training.losses import CountLoss
from training.precision import autocast
from training.reporting.metrics import compute_metrics, validation_score
from training.splits import class_index
from training.uncertainty import calibration


class ScoringContext(Protocol):
    """What scoring needs of a run (``training.train.TrainContext`` has it all)."""

    model: nn.Module
    forward: nn.Module  # the model, possibly compiled
    config: ModelConfig
    criterion: CountLoss
    device: torch.device
    amp_dtype: torch.dtype | None


@torch.no_grad()
def predict_logits(ctx: ScoringContext, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Logits for cached evaluation images (already at the input size, as serving resizes them)."""
    ctx.model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(ctx.device, non_blocking=ctx.device.type == "cuda")
        inputs = normalise(batch, ctx.config).contiguous(memory_format=torch.channels_last)
        with autocast(ctx.device, ctx.amp_dtype):
            outputs.append(ctx.forward(inputs).float().cpu())
    return torch.cat(outputs)


def score_split(
    ctx: ScoringContext, data: ImageSet, decoding: str, temperature: float = 1.0
) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and count metrics of one split; also returns the logits for calibration."""
    logits = predict_logits(ctx, data.images)
    return score_logits(ctx, data, logits, decoding, temperature), logits


def score_logits(
    ctx: ScoringContext, data: ImageSet, logits: torch.Tensor, decoding: str, temperature: float = 1.0
) -> dict[str, Any]:
    """:func:`score_split` for logits already predicted (one forward pass serves several decodings)."""
    labels = class_index(data.counts, ctx.config)
    probs = calibration.probabilities(logits, temperature)
    predicted = calibration.decode(probs, decoding)
    metrics = compute_metrics(labels.tolist(), predicted.tolist(), ctx.config.num_classes)
    result = metrics.to_dict()
    result["loss"] = float(ctx.criterion.per_sample(logits / temperature, labels).mean())
    result["nll"] = float(torch.nn.functional.cross_entropy(logits / temperature, labels))
    result["score"] = validation_score(metrics.accuracy, metrics.rmse)
    result["decoding"] = decoding
    return result
