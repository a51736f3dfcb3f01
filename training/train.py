"""Train the counting network: the SageMaker PyTorch entry point and the local trainer, one script.

Shaped like torchvision's ``references/classification/train.py``: :func:`get_args_parser`,
:func:`load_data`, :func:`train_one_epoch`, :func:`score_split` (torchvision's ``evaluate``) and
:func:`main`, whose epoch loop (:func:`fit`) is the one place training happens. What happens
around it lives where it belongs: data preparation in ``training.data``/``training.dataset``,
checkpoints in ``training.checkpoints``, temperature/decoding/review threshold in
``training.calibration``, the files and lines a run reports in ``training.report``, the artifact
in ``model.package``.

Argparse defaults come from the ``SM_*`` variables, so on SageMaker it reads its channels and
writes the model directory with no flags, and locally the same script runs with
``--data DIR --out DIR``::

    python -m training.train --data ../shared/abid-train --out build/train --recipe shipped
    python -m training.train --data ../shared/abid-train,build/labels:3 --init-from model/weights \\
        --recipe finetune --out build/retrain

``--data`` takes one or more folders (comma-separated, each with an optional ``:weight`` or the
weights in ``--data-weights``): a prepared split folder (``training.data`` output), reviewed
photos exported by ``bincount export-labels`` (split by photo hash; their test split is the gate
set ``training.gate`` judges on, never trained on), or a raw folder of count classes / ABID
metadata, which is first run through ``training.data`` into ``build/data``. Photos are decoded
once into memory (``training.dataset``), cached in ``build/cache``. ``--init-from`` fine-tunes an
existing model; ``--recipe`` names a recipe of ``training.recipes``.

Every epoch prints ONE metric line with stable names (:data:`METRIC_LINE_FORMAT`), the target of
SageMaker ``metric_definitions`` (:data:`METRIC_DEFINITIONS`)::

    epoch=3 train_loss=0.9123 train_accuracy=0.6012 valid_loss=1.0345 valid_accuracy=0.4512 \\
valid_rmse=1.0231 valid_mae=0.7100 valid_score=0.1954 lr=0.000300 epoch_seconds=98.1 images_per_second=30.9

then once :data:`~training.report.RESULT_LINE_FORMAT` (``best_*`` = the shipped checkpoint on
validation, after calibration; ``test_*`` = the test split, reported, never used for choosing),
and last ``best_valid_score=...``: the kept model's validation score, the tuner's objective
(``best:valid_score``), whose last value is then the model that ships rather than the last epoch.

The checkpoint kept is the epoch with the best validation score
``valid_score = valid_accuracy - 0.25 * valid_rmse`` (:func:`training.metrics.validation_score`):
accuracy and RMSE together, 0.1 of RMSE worth 2.5 points of accuracy. Early stopping watches the
same score.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

if __package__ in (None, ""):  # run as a script (SageMaker: python training/train.py): find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.errors import UsageError, one_line_errors
from model.network import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelConfig,
    backbone_parameters,
    build_model,
    freeze_backbone,
    half_state_dict,
    head_parameters,
)
from model.package import package_model
from model.preprocess import normalise
from training import calibration, report
from training.artifact import unpack_artifact
from training.checkpoints import checkpoint_dir, load_checkpoint, save_checkpoint
from training.data import SPLITS, parse_sources, prepare_source
from training.dataset import (
    AUGMENT_PRESETS,
    BinAugment,
    CachedDataset,
    Entry,
    EpochSampler,
    ImageSet,
    list_split,
    load_images,
    train_cache_size,
    worker_transform,
)
from training.finetune import freeze_early_blocks, load_init
from training.losses import CLASS_WEIGHTINGS, LOSSES, CountLoss, class_weights
from training.malloc import MALLOC_ENV
from training.metrics import RMSE_WEIGHT, compute_metrics, validation_score
from training.precision import autocast_dtype_for
from training.progress import progress
from training.recipes import RECIPES, recipe
from training.report import PREDICTIONS_FILE, RESULT_LINE_FORMAT

__all__ = [
    "METRIC_DEFINITIONS",
    "METRIC_LINE_FORMAT",
    "PREDICTIONS_FILE",
    "RESULT_LINE_FORMAT",
    "EpochSampler",
    "get_args_parser",
    "main",
    "validation_score",
]

PROG = "python -m training.train"
METRIC_LINE_FORMAT = (
    "epoch={epoch} train_loss={train_loss:.4f} train_accuracy={train_accuracy:.4f} "
    "valid_loss={valid_loss:.4f} valid_accuracy={valid_accuracy:.4f} valid_rmse={valid_rmse:.4f} "
    "valid_mae={valid_mae:.4f} valid_score={valid_score:.4f} lr={lr:.6f} "
    "epoch_seconds={epoch_seconds:.1f} images_per_second={images_per_second:.1f}"
)
#: Regexes for SageMaker ``metric_definitions``; no name is a substring of another's ``name=``
#: (``best_valid_score=`` has no word boundary before ``valid_score=``). ``best:valid_score`` is
#: the last line of a run: the kept model's validation score, the tuning objective.
METRIC_DEFINITIONS = [
    {"Name": name.replace("_", ":", 1), "Regex": rf"\b{name}=([-+0-9.eE]+|nan|inf)"}
    for name in (
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "valid_rmse",
        "valid_mae",
        "valid_score",
        "best_accuracy",
        "best_rmse",
        "best_score",
        "test_accuracy",
        "test_rmse",
        "best_valid_score",
    )
]
QUICK = {"epochs": 2, "image_size": 96, "batch_size": 16, "max_train_images": 96, "max_eval_images": 48}


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    _data_arguments(p.add_argument_group("data"))
    _model_arguments(p.add_argument_group("model"))
    _optimisation_arguments(p.add_argument_group("optimisation"))
    _runtime_arguments(p.add_argument_group("runtime"))
    return p


def _data_arguments(data: argparse._ArgumentGroup) -> None:
    on_sagemaker = "SM_MODEL_DIR" in os.environ
    data.add_argument(
        "--data",
        default=_env("SM_CHANNEL_TRAINING"),
        help="prepared split folder, reviewed photos or raw count-class folder; several: A,B or A:1,B:3",
    )
    data.add_argument(
        "--data-weights",
        default=None,
        metavar="W1,W2",
        help="per-photo sampling weight of each --data folder",
    )
    data.add_argument("--train", default=_env("SM_CHANNEL_TRAIN"), help="train channel (<count>/*.jpg)")
    data.add_argument("--validation", default=_env("SM_CHANNEL_VALIDATION"), help="validation channel")
    data.add_argument("--test", default=_env("SM_CHANNEL_TEST"), help="test channel (optional)")
    data.add_argument(
        "--out", default=_env("SM_OUTPUT_DATA_DIR", "build/train"), help="metrics, plots, artifact"
    )
    data.add_argument(
        "--model-dir", default=_env("SM_MODEL_DIR"), help="also unpack the artifact here (SageMaker)"
    )
    data.add_argument(
        "--work-dir",
        default="/tmp/bincount-build" if on_sagemaker else "build",
        help="prepared data (build/data) and decoded-photo cache (build/cache)",
    )
    data.add_argument(
        "--checkpoint-dir",
        default=None,
        help="per-epoch checkpoints, resumed automatically (default /opt/ml/checkpoints "
        "if it exists, else <out>/checkpoints)",
    )
    data.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    data.add_argument("--seed", type=int, default=0, help="split, sampling and initialisation seed")
    data.add_argument("--max-train-images", type=int, default=None, help="train on a stratified subset")
    data.add_argument(
        "--max-eval-images", type=int, default=None, help="validate/test on a stratified subset"
    )
    data.add_argument("--no-cache", action="store_true", help="decode photos without the cache file")


def _model_arguments(model: argparse._ArgumentGroup) -> None:
    model.add_argument("--arch", default="efficientnet_lite0")
    model.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    model.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="fine-tune an existing model (model.tar.gz or a folder with model.pt + config.json): "
        "its architecture, input size and classes, its weights instead of ImageNet's",
    )
    model.add_argument(
        "--freeze-backbone", action="store_true", help="train the head only (the seed's recipe)"
    )
    model.add_argument(
        "--freeze-blocks",
        type=int,
        default=0,
        metavar="N",
        help="EfficientNet-Lite: keep the stem and the first N blocks as they are (fine-tuning)",
    )
    model.add_argument(
        "--bn-momentum",
        type=float,
        default=0.1,
        help="batch-norm momentum while fine-tuning (the Lite checkpoints' TF value 0.01 leaves the "
        "running statistics ImageNet's for hundreds of steps, so short runs validate badly)",
    )
    model.add_argument(
        "--decoding",
        choices=("auto", "argmax", "expected"),
        default="auto",
        help="auto: the better on validation after calibration",
    )


def _optimisation_arguments(opt: argparse._ArgumentGroup) -> None:
    opt.add_argument("--epochs", type=int, default=12)
    opt.add_argument("--batch-size", type=int, default=32)
    opt.add_argument("--lr", type=float, default=1e-3, help="head learning rate (AdamW)")
    opt.add_argument("--backbone-lr-mult", type=float, default=0.1, help="backbone lr = lr x this")
    opt.add_argument("--weight-decay", type=float, default=0.05)
    opt.add_argument("--warmup-epochs", type=float, default=1.0)
    opt.add_argument("--loss", choices=LOSSES, default="gaussian")
    opt.add_argument("--smoothing", type=float, default=0.1, help="label smoothing for --loss smooth")
    opt.add_argument(
        "--sigma", type=float, default=0.75, help="spread of --loss gaussian soft labels (in counts)"
    )
    opt.add_argument(
        "--empty-apart",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--loss gaussian: spread no probability between the empty class and the others",
    )
    opt.add_argument("--class-weights", choices=CLASS_WEIGHTINGS, default="none", help="weights in the loss")
    opt.add_argument(
        "--sampler",
        choices=("shuffle", *CLASS_WEIGHTINGS[1:]),
        default="sqrt",
        help="oversample rare counts: draw photos with the class weights (with replacement)",
    )
    opt.add_argument(
        "--patience", type=int, default=4, help="epochs without a better valid_score before stopping"
    )
    opt.add_argument("--max-flagged", type=float, default=calibration.MAX_FLAGGED)
    opt.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="validate, keep and ship an exponential moving average of the weights (per-step decay, "
        "e.g. 0.995; 0 = off): on ~3k photos validation jumps ±3 points between epochs, the average "
        "smooths that out at no serving cost",
    )
    opt.add_argument(
        "--augment-preset",
        choices=tuple(AUGMENT_PRESETS),
        default="default",
        help="strength of the crop/rotation/colour augmentation",
    )


def _runtime_arguments(run: argparse._ArgumentGroup) -> None:
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    run.add_argument(
        "--amp", choices=("auto", "bf16", "fp16", "off"), default="auto", help="auto: bf16/fp16 on CUDA"
    )
    run.add_argument(
        "--augment",
        choices=("device", "workers"),
        default="device",
        help="batched on the device, or torchvision v2 per photo in DataLoader workers",
    )
    run.add_argument("--workers", type=int, default=0, help="DataLoader workers (for --augment workers)")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (GPU sweeps)")
    run.add_argument("--profile", type=int, default=0, metavar="N", help="torch.profiler trace of N steps")
    run.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (timing)")
    run.add_argument("--quick", action="store_true", help="CI-sized run: " + json.dumps(QUICK))
    run.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help="take a named recipe's values as defaults (training/recipes.py; flags still win)",
    )
    run.add_argument(
        "--num-gpus", type=int, default=int(_env("SM_NUM_GPUS", "0") or 0), help=argparse.SUPPRESS
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--recipe NAME`` first turns that recipe's values into defaults."""
    parser = get_args_parser()
    known, _ = parser.parse_known_args(argv)
    if known.recipe:
        parser.set_defaults(**recipe(known.recipe))
    return parser.parse_args(argv)


def apply_quick(args: argparse.Namespace) -> None:
    """--quick overrides only what the user left at its default."""
    if not args.quick:
        return
    defaults = get_args_parser().parse_args([])
    for key, value in QUICK.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, value)


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run: every flag whose value differs from its default."""
    parser = get_args_parser()
    defaults = parser.parse_args([])
    parts = [PROG]
    for action in parser._actions:
        key = action.dest
        if key in ("help", "num_gpus") or not action.option_strings:
            continue
        value = getattr(args, key, None)
        if value == getattr(defaults, key) or (args.quick and key in QUICK and key != "quick"):
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:
            parts.append(flag)
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Splits:
    train: ImageSet
    valid: ImageSet
    test: ImageSet | None
    description: dict[str, Any]
    train_weights: torch.Tensor | None = None  # per-photo sampling weight (several --data folders)


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
    entries, weights, description = resolve_entries(args)
    entries["train"] = stratified_subset(entries["train"], args.max_train_images, args.seed)
    for split in ("valid", "test"):
        entries[split] = stratified_subset(entries[split], args.max_eval_images, args.seed)
    if not entries["train"] or not entries["valid"]:
        sizes = {k: len(v) for k, v in entries.items()}
        raise UsageError(f"need photos in train and valid, got {sizes} (too few labelled photos?)")
    cache = None if args.no_cache else Path(args.work_dir) / "cache"
    train = load_images(entries["train"], config, train_cache_size(config.image_size), cache, "train")
    valid = load_images(entries["valid"], config, config.image_size, cache, "valid")
    test = load_images(entries["test"], config, config.image_size, cache, "test") if entries["test"] else None
    description["split_counts"] = {
        split: {str(k): v for k, v in sorted(_bincount(e).items())} for split, e in entries.items()
    }
    train_weights = torch.tensor([weights.get(e, 1.0) for e in entries["train"]], dtype=torch.float64)
    return Splits(train, valid, test, description, train_weights)


def _bincount(entries: list[Entry]) -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in entries:
        out[entry.count] = out.get(entry.count, 0) + 1
    return out


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def model_config(args: argparse.Namespace) -> ModelConfig:
    """The config of a model trained from ImageNet weights: the backbone's, at ``--image-size``."""
    size = args.image_size
    overrides: dict[str, Any] = {"image_size": (size, size)} if size else {}
    config = ModelConfig.for_arch(args.arch, **overrides)
    args.image_size = config.image_size[0] if size is None else size
    return config


def build_network(
    args: argparse.Namespace, config: ModelConfig, init: dict[str, torch.Tensor] | None, device: torch.device
) -> tuple[nn.Module, list[nn.Module]]:
    """The network to train (ImageNet backbone or ``--init-from`` weights) and its frozen blocks."""
    model = build_model(config, pretrained=args.pretrained and init is None)
    if init is not None:
        model.load_state_dict(init)
    if args.freeze_backbone:
        freeze_backbone(model, True)
    frozen = freeze_early_blocks(model, args.freeze_blocks)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = args.bn_momentum  # a training setting: not part of the state dict
    model = model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model, frozen


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def autocast_dtype(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    """bf16 only where the GPU computes it natively, fp16 below (a T4), none on CPU."""
    return autocast_dtype_for(args.amp, device)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """AdamW; the backbone at ``lr * backbone_lr_mult``; no weight decay on biases and norms."""
    groups = []
    for params, lr in (
        (list(backbone_parameters(model)), args.lr * args.backbone_lr_mult),
        (list(head_parameters(model)), args.lr),
    ):
        trainable = [q for q in params if q.requires_grad]
        decay = [q for q in trainable if q.ndim > 1]
        no_decay = [q for q in trainable if q.ndim <= 1]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": args.weight_decay},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
    return torch.optim.AdamW([g for g in groups if g["params"]])


def make_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, args: argparse.Namespace) -> Any:
    """Linear warmup, then cosine decay to zero, stepped every batch."""
    total = max(1, args.epochs * steps_per_epoch)
    warmup = min(total - 1, int(args.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainContext:
    model: nn.Module
    forward: nn.Module  # the model, possibly compiled
    config: ModelConfig
    criterion: CountLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    augment: BinAugment | None
    device: torch.device
    amp_dtype: torch.dtype | None
    ema: AveragedModel | None = None
    frozen: list[nn.Module] = field(default_factory=list)  # blocks kept as they are (--freeze-blocks)


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and batch-norm buffers (``--ema``)."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise UsageError(f"--ema must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def shipped_module(ctx: TrainContext) -> nn.Module:
    """The weights that are validated and shipped: the moving average when there is one."""
    return ctx.ema.module if ctx.ema is not None else ctx.model


def eval_context(ctx: TrainContext) -> TrainContext:
    """The context to validate with: the averaged weights, uncompiled, when ``--ema`` is on."""
    if ctx.ema is None:
        return ctx
    return dataclasses.replace(ctx, model=ctx.ema.module, forward=ctx.ema.module)


def build_training(
    args: argparse.Namespace,
    config: ModelConfig,
    splits: Splits,
    init: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> tuple[TrainContext, DataLoader[Any], EpochSampler]:
    """Network, loss, sampler, loader, optimizer, schedule and augmentation for one run."""
    num_classes = config.num_classes
    train_labels = class_index(splits.train.counts, config)
    model, frozen = build_network(args, config, init, device)
    amp_dtype = autocast_dtype(args, device)
    weights = class_weights(train_labels, num_classes, args.class_weights)
    loss = CountLoss(args.loss, num_classes, weights, args.smoothing, args.sigma, args.empty_apart)
    sampler = EpochSampler(train_labels, num_classes, args.sampler, args.seed, splits.train_weights)
    augment_settings = AUGMENT_PRESETS[args.augment_preset]
    transform = worker_transform(config.image_size, augment_settings) if args.augment == "workers" else None
    loader = DataLoader(
        CachedDataset(splits.train.images, train_labels, transform),
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=len(splits.train) > args.batch_size,  # a batch of one breaks batch norm
        persistent_workers=args.workers > 0,
    )
    steps_per_epoch = len(loader) if args.max_steps is None else min(len(loader), args.max_steps)
    optimizer = make_optimizer(model, args)
    ctx = TrainContext(
        model=model,
        forward=torch.compile(model) if args.compile else model,  # type: ignore[arg-type]
        config=config,
        criterion=loss.to(device),
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, steps_per_epoch, args),
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        augment=BinAugment(config.image_size, augment_settings) if args.augment == "device" else None,
        device=device,
        amp_dtype=amp_dtype,
        ema=make_ema(model, args.ema),
        frozen=frozen,
    )
    return ctx, loader, sampler


def train_one_epoch(
    ctx: TrainContext,
    loader: DataLoader[Any],
    epoch: int,
    max_steps: int | None = None,
    profiler: Any = None,
) -> dict[str, float]:
    ctx.model.train()
    for module in ctx.frozen:  # frozen blocks keep their batch-norm statistics too
        module.eval()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    non_blocking = ctx.device.type == "cuda"
    batches = progress(loader, total=len(loader), desc=f"epoch {epoch}", log_every=0.5, unit="batch")
    for steps, (images, labels) in enumerate(batches, start=1):
        images = images.to(ctx.device, non_blocking=non_blocking)
        labels = labels.to(ctx.device, non_blocking=non_blocking)
        if ctx.augment is not None:
            images = ctx.augment(images)
        inputs = normalise(images, ctx.config).contiguous(memory_format=torch.channels_last)
        with _autocast(ctx.device, ctx.amp_dtype):
            logits = ctx.forward(inputs)
        loss = ctx.criterion(logits.float(), labels)
        ctx.optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is not None:
            ctx.scaler.scale(loss).backward()
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            loss.backward()
            ctx.optimizer.step()
        ctx.scheduler.step()
        if ctx.ema is not None:
            ctx.ema.update_parameters(ctx.model)
        total_loss += float(loss.detach()) * labels.shape[0]
        correct += int((logits.detach().argmax(dim=1) == labels).sum())
        seen += int(labels.shape[0])
        if profiler is not None:
            profiler.step()
        if max_steps is not None and steps >= max_steps:
            break
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    return {
        "train_loss": total_loss / max(1, seen),
        "train_accuracy": correct / max(1, seen),
        "train_images": seen,
        "epoch_seconds": seconds,
        "images_per_second": seen / max(seconds, 1e-9),
    }


@torch.no_grad()
def predict_logits(ctx: TrainContext, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Logits for cached evaluation images (already at the input size, as serving resizes them)."""
    ctx.model.eval()
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(ctx.device, non_blocking=ctx.device.type == "cuda")
        inputs = normalise(batch, ctx.config).contiguous(memory_format=torch.channels_last)
        with _autocast(ctx.device, ctx.amp_dtype):
            outputs.append(ctx.forward(inputs).float().cpu())
    return torch.cat(outputs)


def score_split(
    ctx: TrainContext, data: ImageSet, decoding: str, temperature: float = 1.0
) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and count metrics of one split; also returns the logits for calibration."""
    logits = predict_logits(ctx, data.images)
    return score_logits(ctx, data, logits, decoding, temperature), logits


def score_logits(
    ctx: TrainContext, data: ImageSet, logits: torch.Tensor, decoding: str, temperature: float = 1.0
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


# --------------------------------------------------------------------------------------------
# The epoch loop
# --------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    """Where the loop stands; saved in every checkpoint so a resumed run continues exactly."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"score": -math.inf, "epoch": 0, "state": None})
    epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False


def fit(
    ctx: TrainContext,
    loader: DataLoader[Any],
    sampler: EpochSampler,
    splits: Splits,
    args: argparse.Namespace,
) -> LoopState:
    """Train epoch after epoch, validate each, keep the best, checkpoint, stop early; resumable."""
    path = checkpoint_dir(args) / "last.pt"
    state = resume(ctx, path, args)
    epoch_decoding = "expected" if args.decoding == "expected" else "argmax"
    for epoch in range(state.epoch + 1, args.epochs + 1):
        if state.stopped:
            break
        sampler.set_epoch(epoch)
        first = epoch == state.epoch + 1
        profile = _profiler(args) if args.profile and first else contextlib.nullcontext()
        with profile as profiler:
            stats = train_one_epoch(ctx, loader, epoch, args.max_steps, profiler)
        if profiler is not None:
            _report_profile(profiler, Path(args.out))
        valid, _ = score_split(eval_context(ctx), splits.valid, epoch_decoding)
        record = epoch_record(epoch, stats, valid, ctx.optimizer.param_groups[-1]["lr"])
        state.history.append(record)
        print(METRIC_LINE_FORMAT.format(**record), flush=True)
        keep_if_best(ctx, state, epoch, valid["score"], args.patience)
        save_checkpoint(path, checkpoint_state(ctx, state, args))
    if state.best["state"] is None:
        raise UsageError("no epoch was trained (--epochs 0?)")
    return state


def epoch_record(epoch: int, stats: dict[str, float], valid: dict[str, Any], lr: float) -> dict[str, Any]:
    """One epoch's line of ``history.json`` (and of :data:`METRIC_LINE_FORMAT`)."""
    return {
        "epoch": epoch,
        **stats,
        "valid_loss": valid["loss"],
        "valid_accuracy": valid["accuracy"],
        "valid_rmse": valid["rmse"],
        "valid_mae": valid["mae"],
        "valid_score": valid["score"],
        "valid_class0_recall": valid["recall"].get("0"),
        "lr": lr,
    }


def keep_if_best(ctx: TrainContext, state: LoopState, epoch: int, score: float, patience: int) -> None:
    """Keep a copy of the shipped weights when the score improved; count epochs without it."""
    state.epoch = epoch
    if score > state.best["score"]:
        weights = {k: v.detach().cpu().clone() for k, v in shipped_module(ctx).state_dict().items()}
        state.best = {"score": score, "epoch": epoch, "state": weights}
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1
    state.stopped = state.bad_epochs >= patience
    if state.stopped:
        best = state.best["epoch"]
        print(f"early stop: no better valid_score for {patience} epochs (best epoch {best})", flush=True)


def checkpoint_state(ctx: TrainContext, state: LoopState, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "epoch": state.epoch,
        "model": ctx.model.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
        "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
        "args": vars(args),
        "history": state.history,
        "best": state.best,
        "bad_epochs": state.bad_epochs,
        "stopped": state.stopped,
        "rng": torch.get_rng_state(),
    }


def resume(ctx: TrainContext, path: Path, args: argparse.Namespace) -> LoopState:
    """The loop state of the checkpoint at ``path`` (loaded into ``ctx``), or a fresh one."""
    saved = load_checkpoint(path, args)
    if saved is None:
        return LoopState()
    ctx.model.load_state_dict(saved["model"])
    ctx.optimizer.load_state_dict(saved["optimizer"])
    ctx.scheduler.load_state_dict(saved["scheduler"])
    if ctx.scaler is not None and saved.get("scaler"):
        ctx.scaler.load_state_dict(saved["scaler"])
    if ctx.ema is not None and saved.get("ema"):
        ctx.ema.load_state_dict(saved["ema"])
    torch.set_rng_state(saved["rng"])
    print(f"resumed from {path} after epoch {saved['epoch']}", flush=True)
    return LoopState(saved["history"], saved["best"], saved["epoch"], saved["bad_epochs"], saved["stopped"])


def _profiler(args: argparse.Namespace) -> Any:
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    return profile(
        activities=activities,
        schedule=schedule(wait=1, warmup=1, active=args.profile, repeat=1),
        record_shapes=True,
        profile_memory=True,
    )


def _report_profile(profiler: Any, out: Path) -> None:
    trace = out / "profile" / "trace.json"
    trace.parent.mkdir(parents=True, exist_ok=True)
    try:
        profiler.export_chrome_trace(str(trace))
        print(f"profiler trace: {trace} (open in https://ui.perfetto.dev or chrome://tracing)", flush=True)
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
    except (RuntimeError, AssertionError) as exc:  # too few steps ran for the schedule
        print(f"no profile recorded: {exc}", flush=True)


# --------------------------------------------------------------------------------------------
# After the loop: calibrate, test, package, report
# --------------------------------------------------------------------------------------------


def finish(ctx: TrainContext, args: argparse.Namespace, splits: Splits, state: LoopState) -> dict[str, Any]:
    """Best checkpoint -> fp16 weights (as shipped) -> calibration, decoding, threshold -> test, artifact."""
    out = Path(args.out)
    half = load_shipped_weights(ctx, state.best["state"])
    valid_labels = class_index(splits.valid.counts, ctx.config)
    valid_logits = predict_logits(ctx, splits.valid.images)
    decodings = ["argmax", "expected"] if args.decoding == "auto" else [args.decoding]
    chosen = calibration.calibrate(
        valid_logits,
        valid_labels,
        decodings,
        lambda decoding, t: score_logits(ctx, splits.valid, valid_logits, decoding, t),
        args.max_flagged,
    )
    test, test_logits = score_test_split(ctx, splits.test, chosen)
    metrics = build_metrics(chosen, state.best["epoch"], test, splits)
    describe_model(ctx.config, chosen, metrics, splits, args)
    artifact = package(out, half, ctx.config)  # sets config.weights_sha256
    report.write_run_files(out, metrics, state.history)
    predicted = {"valid": (splits.valid, valid_logits)}
    if splits.test is not None and test_logits is not None:
        predicted["test"] = (splits.test, test_logits)
    report.write_predictions(out / PREDICTIONS_FILE, chosen.temperature, predicted)
    report.plot_run(state.history, metrics, out)
    if args.model_dir:  # SageMaker tars SM_MODEL_DIR into model.tar.gz itself: give it the artifact's files
        unpack_artifact(artifact, args.model_dir)
    print(report.result_line(metrics), flush=True)
    print(report.summary(metrics), flush=True)
    print(report.final_line(metrics), flush=True)  # last: the tuner's objective is its last value
    return {
        "out": str(out),
        "artifact": str(artifact),
        "config": ctx.config.to_dict(),
        "metrics": metrics,
        "history": state.history,
    }


def load_shipped_weights(ctx: TrainContext, best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load the kept weights rounded to fp16 (as they ship), so everything after is measured on them."""
    ctx.model.load_state_dict(best)
    half = half_state_dict(ctx.model)
    ctx.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})
    return half


def score_test_split(
    ctx: TrainContext, test: ImageSet | None, chosen: calibration.Calibration
) -> tuple[dict[str, Any] | None, torch.Tensor | None]:
    """The test split's figures with the chosen decoding, temperature and review threshold."""
    if test is None:
        return None, None
    result, logits = score_split(ctx, test, chosen.decoding, chosen.temperature)
    result["ece"], result["review"] = calibration.review_on(
        logits, class_index(test.counts, ctx.config), chosen
    )
    return result, logits


def build_metrics(
    chosen: calibration.Calibration, best_epoch: int, test: dict[str, Any] | None, splits: Splits
) -> dict[str, Any]:
    """``metrics.json``: validation (as chosen), test (reported), calibration, review, empty bins."""
    valid = chosen.scores[chosen.decoding]
    keys = ("accuracy", "rmse", "mae", "score")
    return {
        "best_epoch": best_epoch,
        "decoding": chosen.decoding,
        "temperature": chosen.temperature,
        "valid": valid,
        "valid_by_decoding": {d: {k: s[k] for k in keys} for d, s in chosen.scores.items()},
        "test": test,
        "calibration": chosen.report,
        "review_threshold": chosen.threshold.__dict__,
        "class0": {
            "train_photos": int((splits.train.counts == 0).sum()),
            "valid": {"n": valid["support"].get("0"), "recall": valid["recall"].get("0")},
            "test": None
            if test is None
            else {"n": test["support"].get("0"), "recall": test["recall"].get("0")},
        },
        "split_counts": splits.description.get("split_counts"),
        "score_rule": f"valid_accuracy - {RMSE_WEIGHT} * valid_rmse",
    }


def describe_model(
    config: ModelConfig,
    chosen: calibration.Calibration,
    metrics: dict[str, Any],
    splits: Splits,
    args: argparse.Namespace,
) -> None:
    """Write what serving needs (decoding, temperature, version) and the training record into ``config``."""
    excluded = ("data", "train", "validation", "test", "out", "model_dir")
    valid, test = metrics["valid"], metrics["test"]
    config.decoding = chosen.decoding
    config.temperature = chosen.temperature
    # Minute resolution: two models trained the same day must not share a version in the records.
    config.version = f"bincount-{config.arch}-{time.strftime('%Y.%m.%d-%H%M', time.gmtime())}"
    config.training = {
        **config.training,  # the parent model of a fine-tune (--init-from)
        "data": splits.description,
        "command": command_line(args),
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in excluded},
        "best_epoch": metrics["best_epoch"],
        "metrics": {"valid": report.headline(valid), "test": report.headline(test) if test else None},
        "ece": {"before": chosen.report["ece_before"], "after": chosen.report["ece_after"]},
        "review_threshold": chosen.threshold.threshold,
        "review": chosen.threshold.__dict__,
    }


def package(out: Path, state: dict[str, torch.Tensor], config: ModelConfig) -> Path:
    """``model.tar.gz`` via model.package, and its ``model.pt`` + ``config.json`` (same bytes) beside it."""
    artifact = package_model(out / "model.tar.gz", state, config)
    unpack_artifact(artifact, out, (WEIGHTS_FILE, CONFIG_FILE))
    return artifact


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def main(args: argparse.Namespace) -> dict[str, Any]:
    apply_quick(args)
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    init = load_init(args, get_args_parser().get_default("arch"))
    config = init[1] if init is not None else model_config(args)
    splits = load_data(args, config)
    train_labels = class_index(splits.train.counts, config)
    print(
        f"train {len(splits.train)} / valid {len(splits.valid)} / test {len(splits.test or [])} photos; "
        f"train per class {torch.bincount(train_labels, minlength=config.num_classes).tolist()}",
        flush=True,
    )
    ctx, loader, sampler = build_training(args, config, splits, init[0] if init else None, device)
    state = fit(ctx, loader, sampler, splits, args)
    return finish(ctx, args, splits, state)


@one_line_errors(PROG)
def cli(argv: list[str] | None = None) -> int:
    """The command line: bad paths and options end in one line on stderr (exit 2), not a traceback."""
    main(parse_args(argv))
    return 0


def ensure_malloc_env() -> None:
    """Re-exec with glibc malloc tuned (../shared/ENGINEERING.md: training 1.7x faster on CPU).

    The variables are read once when the process starts, so setting them later does nothing;
    ``BINCOUNT_MALLOC_TUNING=0`` opts out (to measure the difference).
    """
    if sys.platform != "linux" or os.environ.get("BINCOUNT_MALLOC_TUNING", "1") == "0":
        return
    missing = {k: v for k, v in MALLOC_ENV.items() if k not in os.environ}
    if missing:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **missing})


if __name__ == "__main__":
    ensure_malloc_env()
    sys.exit(cli())
