"""The photos a training run uses: which ones (``--data`` folders or SageMaker channels), how many
(stratified subsets), decoded into memory, and their classes.

``training.data`` prepares and splits folders; ``training.dataset`` lists and decodes one split;
this module puts them together for one run of ``training.train`` (torchvision's ``load_data()``).
A bad folder or flag ends in one line (:class:`~common.errors.UsageError`), never a traceback.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.errors import UsageError
from model.config import ModelConfig
from training.data import SPLITS, parse_sources, prepare_source
from training.dataset import Entry, ImageSet, list_split, load_images, train_cache_size
from training.uncertainty.conformal import calibration_halves


@dataclass
class Splits:
    """The run's photos in memory, where they came from, and the sampling weight of each train photo."""

    train: ImageSet
    valid: ImageSet
    test: ImageSet | None
    description: dict[str, Any]
    train_weights: torch.Tensor | None = None  # per-photo sampling weight (several --data folders)
    #: Half of the held-out test photos (training.uncertainty.conformal.calibration_halves): neither the loop
    #: nor the checkpoint choice nor the temperature sees them; the count ranges are calibrated on them.
    calibration: ImageSet | None = None


def resolve_entries(
    args: argparse.Namespace,
) -> tuple[dict[str, list[Entry]], dict[Entry, float], dict[str, Any]]:
    """The photos of each split, each photo's sampling weight, and where they came from.

    From ``--data`` (one or more folders, prepared, reviewed or raw) or the
    train/validation/test channels (``SM_CHANNEL_*``).
    """
    if args.data:
        return _entries_from_sources(args)
    if args.train and args.validation:
        for flag, folder in (
            ("--train", args.train),
            ("--validation", args.validation),
            ("--test", args.test),
        ):
            if folder and not Path(folder).is_dir():
                raise UsageError(f"{flag} {folder}: no such folder")
        entries = {
            "train": list_split(Path(args.train), None),
            "valid": list_split(Path(args.validation), None),
            "test": list_split(Path(args.test), None) if args.test else [],
        }
        channels = {"train": args.train, "validation": args.validation, "test": args.test}
        return entries, {}, {"data": channels}
    raise UsageError("no data: give --data DIR, or --train and --validation (SM_CHANNEL_TRAIN/VALIDATION)")


def _entries_from_sources(
    args: argparse.Namespace,
) -> tuple[dict[str, list[Entry]], dict[Entry, float], dict[str, Any]]:
    try:
        sources = parse_sources(args.data, args.data_weights)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    entries: dict[str, list[Entry]] = {split: [] for split in SPLITS}
    weights: dict[Entry, float] = {}
    described = []
    for source in sources:
        if not source.path.is_dir():
            raise UsageError(f"--data {source.path}: no such folder")
        try:
            prepared = prepare_source(source.path, Path(args.work_dir), args.seed)
        except ValueError as exc:
            raise UsageError(f"--data {source.path}: {exc}") from exc
        for split in SPLITS:
            found = list_split(prepared, split)
            entries[split] += found
            weights.update(dict.fromkeys(found, source.weight))
        described.append({"data": str(source.path), "prepared": str(prepared), "weight": source.weight})
    if len(described) == 1:
        return entries, weights, {"data": described[0]["data"], "prepared": described[0]["prepared"]}
    return entries, weights, {"data": args.data, "sources": described}


def stratified_subset(entries: list[Entry], limit: int | None, seed: int) -> list[Entry]:
    """At most ``limit`` photos, every count class kept in proportion (and present at least once)."""
    if limit is None or len(entries) <= limit:
        return entries
    by_count: dict[int, list[Entry]] = {}
    for entry in sorted(entries, key=lambda e: e.id):
        by_count.setdefault(entry.count, []).append(entry)
    chosen: list[Entry] = []
    for count, group in sorted(by_count.items()):
        random.Random(f"{seed}:{count}").shuffle(group)
        chosen += group[: max(1, round(limit * len(group) / len(entries)))]
    return chosen


def class_index(counts: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """True counts -> classes: with an open top class, "5 or more" is class 5."""
    top = config.num_classes - 1
    if not config.top_class_open and bool((counts > top).any()):
        raise ValueError(f"counts above {top} but the top class is not open")
    return counts.clamp(max=top)


def load_data(args: argparse.Namespace, config: ModelConfig) -> Splits:
    """Resolve, subset and decode the splits; train photos cached a little larger for random crops."""
    entries, weights, description = resolve_entries(args)
    entries["train"] = stratified_subset(entries["train"], args.max_train_images, args.seed)
    for split in ("valid", "test"):
        entries[split] = stratified_subset(entries[split], args.max_eval_images, args.seed)
    entries["calibration"], entries["test"] = split_calibration(entries["test"], args.seed)
    if not entries["train"] or not entries["valid"]:
        sizes = {k: len(v) for k, v in entries.items()}
        raise UsageError(f"need photos in train and valid, got {sizes} (too few labelled photos?)")
    cache = None if args.no_cache else Path(args.work_dir) / "cache"
    train = load_images(entries["train"], config, train_cache_size(config.image_size), cache, "train")
    valid = load_images(entries["valid"], config, config.image_size, cache, "valid")
    test = load_images(entries["test"], config, config.image_size, cache, "test") if entries["test"] else None
    calibration = (
        load_images(entries["calibration"], config, config.image_size, cache, "calibration")
        if entries["calibration"]
        else None
    )
    description["split_counts"] = {
        split: {str(k): v for k, v in sorted(Counter(x.count for x in e).items())}
        for split, e in entries.items()
    }
    train_weights = torch.tensor([weights.get(e, 1.0) for e in entries["train"]], dtype=torch.float64)
    return Splits(train, valid, test, description, train_weights, calibration)


def split_calibration(test: list[Entry], seed: int) -> tuple[list[Entry], list[Entry]]:
    """The held-out photos -> (calibration, test) halves; no calibration from fewer than 2 photos."""
    if len(test) < 2:
        return [], test
    return calibration_halves(test, lambda e: e.count, lambda e: e.id, seed)
