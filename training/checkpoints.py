"""Per-epoch checkpoints: written atomically, resumed automatically, refused when from another run.

A checkpoint holds what torchvision's reference script keeps (model, optimizer, scheduler, epoch,
args) plus what our loop needs to continue exactly where it stopped: the AMP scaler, the EMA, the
history, the best epoch so far, the early-stopping counter and the RNG state. On SageMaker it
lives in ``/opt/ml/checkpoints`` (synced to S3), so a spot interruption costs one epoch.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.errors import Refused
from common.files import replacing

#: Arguments that must match for a checkpoint to be resumed: a different value is another run.
RESUME_KEYS = (
    "arch",
    "image_size",
    "loss",
    "freeze_backbone",
    "freeze_blocks",
    "init_from",
    "seed",
    "data",
    "train",
    "max_train_images",
)
SAGEMAKER_CHECKPOINTS = Path("/opt/ml/checkpoints")


@dataclass
class LoopState:
    """Where the loop stands; saved in every checkpoint so a resumed run continues exactly."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"score": -math.inf, "epoch": 0, "state": None})
    epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False


def checkpoint_dir(args: argparse.Namespace) -> Path:
    """``--checkpoint-dir``, else SageMaker's checkpoint folder when it exists, else ``<out>/checkpoints``."""
    if args.checkpoint_dir:
        return Path(args.checkpoint_dir)
    if SAGEMAKER_CHECKPOINTS.is_dir():
        return SAGEMAKER_CHECKPOINTS
    return Path(args.out) / "checkpoints"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with replacing(path) as partial:  # a spot interruption never leaves half a checkpoint
        torch.save(state, partial)


def load_checkpoint(path: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """The saved state to resume from, or None (none there, or ``--no-resume``)."""
    if args.no_resume or not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("args", {})
    # keys a checkpoint predates (older trainer versions) do not count as differences
    different = {
        k: (saved[k], getattr(args, k)) for k in RESUME_KEYS if k in saved and saved[k] != getattr(args, k)
    }
    if different:
        raise Refused(
            f"{path} belongs to another run ({different}); use another --checkpoint-dir or --no-resume"
        )
    return state
