"""Starting from an existing model instead of ImageNet weights (``--init-from``, ``--freeze-blocks``).

A fine-tune keeps its parent's architecture, input size and classes, so the successor can replace
it in serving without any other change, and records the parent's version and weights hash so the
registry (``training.promotion.registry``) knows what it was retrained from. Freezing the stem and the first
blocks keeps the most expensive backward passes out of a short CPU run and the generic low-level
features as the parent had them.
"""

from __future__ import annotations

import argparse
import dataclasses
import tarfile
import tempfile
from pathlib import Path

import torch
from torch import nn

from common.errors import UsageError
from model.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, ModelLoadError
from model.network import EfficientNetLite, load_state
from training.promotion.artifact import unpack_artifact


def load_init(
    args: argparse.Namespace, default_arch: str
) -> tuple[dict[str, torch.Tensor], ModelConfig] | None:
    """``--init-from``: the existing model's weights and a config for its successor.

    Fine-tuning keeps the parent's architecture, input size and classes (a different ``--arch`` or
    ``--image-size`` than ``default_arch`` is refused); the successor's config records the
    parent's version and hash.
    """
    if not args.init_from:
        return None
    source = Path(args.init_from)
    if not source.exists():
        raise UsageError(f"--init-from {source}: no such model (give a model.tar.gz or a model folder)")
    with tempfile.TemporaryDirectory(prefix="bincount-init-") as tmp:
        try:
            folder = source if source.is_dir() else unpack_artifact(source, tmp, (WEIGHTS_FILE, CONFIG_FILE))
            network, parent = load_state(folder)
        except (ModelLoadError, tarfile.TarError, KeyError, OSError) as exc:
            raise UsageError(f"--init-from {source}: not a model ({exc})") from exc
    if args.arch not in (default_arch, parent.arch):
        raise UsageError(f"--arch {args.arch} contradicts --init-from {source} (arch {parent.arch})")
    if args.image_size not in (None, parent.image_size[0]):
        raise UsageError(
            f"--image-size {args.image_size} contradicts --init-from {source} (size {parent.image_size[0]})"
        )
    args.arch, args.image_size = parent.arch, parent.image_size[0]
    parent_record = {"path": str(source), "version": parent.version, "sha256": parent.weights_sha256}
    config = dataclasses.replace(parent, version="", weights_sha256="", training={"init_from": parent_record})
    return network.state_dict(), config


def freeze_early_blocks(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` blocks of an EfficientNet-Lite backbone.

    Returns the frozen modules: the training loop puts them back in eval mode every epoch so their
    batch-norm statistics stay the parent's as well.
    """
    if blocks <= 0:
        return []
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, EfficientNetLite):
        raise UsageError("--freeze-blocks needs an EfficientNet-Lite backbone")
    if blocks > len(backbone.blocks):
        raise UsageError(f"--freeze-blocks {blocks}: the backbone has {len(backbone.blocks)} blocks")
    frozen: list[nn.Module] = [backbone.stem, *backbone.blocks[:blocks]]
    for module in frozen:
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return frozen
