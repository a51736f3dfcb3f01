"""Train the counting network: the SageMaker PyTorch entry point and the local trainer, one script.

Shaped like torchvision's ``references/classification/train.py`` (``get_args_parser``,
``load_data``, ``train_one_epoch``, ``evaluate``, ``main``). Argparse defaults come from the
``SM_*`` variables, so on SageMaker it reads its channels and writes the model directory with no
flags, and locally the same script runs with ``--data DIR --out DIR``::

    python -m training.train --data ../shared/abid-train --out build/train

``--data`` takes a prepared split folder (``training.data`` output, with ``manifest.json``) or a
raw folder of count classes / ABID metadata, which is first run through ``training.data`` into
``build/data``. Photos are decoded once into memory (``training.dataset``), cached in
``build/cache``.

Every epoch prints ONE metric line with stable names (:data:`METRIC_LINE_FORMAT`), the target of
SageMaker ``metric_definitions`` and the tuner's objective (:data:`METRIC_DEFINITIONS`)::

    epoch=3 train_loss=0.9123 train_accuracy=0.6012 valid_loss=1.0345 valid_accuracy=0.4512 \
valid_rmse=1.0231 valid_mae=0.7100 valid_score=0.1954 lr=0.000300 epoch_seconds=98.1 images_per_second=30.9

and once at the end :data:`RESULT_LINE_FORMAT` (``best_*`` = the shipped checkpoint on validation,
after calibration; ``test_*`` = the test split, reported, never used for choosing).

The checkpoint kept is the epoch with the best validation score
``valid_score = valid_accuracy - 0.25 * valid_rmse`` (:func:`validation_score`): accuracy and
RMSE together, 0.1 of RMSE worth 2.5 points of accuracy. Early stopping watches the same score.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shlex
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Sampler

if __package__ in (None, ""):  # run as a script (SageMaker: python training/train.py): find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
from model.preprocess import normalise
from training import calibration
from training.data import MANIFEST, prepare_local
from training.dataset import (
    AUGMENT_PRESETS,
    BinAugment,
    CachedDataset,
    Entry,
    ImageSet,
    list_split,
    load_images,
    train_cache_size,
    worker_transform,
)
from training.losses import CLASS_WEIGHTINGS, LOSSES, CountLoss, class_weights
from training.metrics import compute_metrics, expected_calibration_error
from training.progress import progress

METRIC_LINE_FORMAT = (
    "epoch={epoch} train_loss={train_loss:.4f} train_accuracy={train_accuracy:.4f} "
    "valid_loss={valid_loss:.4f} valid_accuracy={valid_accuracy:.4f} valid_rmse={valid_rmse:.4f} "
    "valid_mae={valid_mae:.4f} valid_score={valid_score:.4f} lr={lr:.6f} "
    "epoch_seconds={epoch_seconds:.1f} images_per_second={images_per_second:.1f}"
)
RESULT_LINE_FORMAT = (
    "result best_epoch={best_epoch} best_accuracy={best_accuracy:.4f} best_rmse={best_rmse:.4f} "
    "best_score={best_score:.4f} test_accuracy={test_accuracy:.4f} test_rmse={test_rmse:.4f} "
    "ece_before={ece_before:.4f} ece_after={ece_after:.4f} temperature={temperature:.4f} "
    "review_threshold={review_threshold:.2f}"
)
#: Regexes for SageMaker ``metric_definitions``; no name is a substring of another's ``name=``.
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
    )
]
RMSE_WEIGHT = 0.25
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "2000000000",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}
QUICK = {"epochs": 2, "image_size": 96, "batch_size": 16, "max_train_images": 96, "max_eval_images": 48}


def validation_score(accuracy: float, rmse: float) -> float:
    """The one number checkpoints and early stopping are chosen by (higher is better)."""
    return accuracy - RMSE_WEIGHT * rmse


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def get_args_parser() -> argparse.ArgumentParser:
    on_sagemaker = "SM_MODEL_DIR" in os.environ
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    data = p.add_argument_group("data")
    data.add_argument(
        "--data", default=_env("SM_CHANNEL_TRAINING"), help="prepared split folder or raw count-class folder"
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

    model = p.add_argument_group("model")
    model.add_argument("--arch", default="efficientnet_lite0")
    model.add_argument("--image-size", type=int, default=None, help="input size (default: the backbone's)")
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    model.add_argument(
        "--freeze-backbone", action="store_true", help="train the head only (the seed's recipe)"
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

    opt = p.add_argument_group("optimisation")
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

    run = p.add_argument_group("runtime")
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
        "--num-gpus", type=int, default=int(_env("SM_NUM_GPUS", "0") or 0), help=argparse.SUPPRESS
    )
    return p


def apply_quick(args: argparse.Namespace) -> None:
    """--quick overrides only what the user left at its default."""
    if not args.quick:
        return
    defaults = get_args_parser().parse_args([])
    for key, value in QUICK.items():
        if getattr(args, key) == getattr(defaults, key):
            setattr(args, key, value)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass
class Splits:
    train: ImageSet
    valid: ImageSet
    test: ImageSet | None
    description: dict[str, Any]


def resolve_entries(args: argparse.Namespace) -> tuple[dict[str, list[Entry]], dict[str, Any]]:
    """The photos of each split from --data (prepared or raw) or the train/validation/test channels."""
    if args.data:
        root = Path(args.data)
        if not (root / MANIFEST).is_file():
            digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
            prepared = Path(args.work_dir) / "data" / f"{root.resolve().name}-{digest}-seed{args.seed}"
            print(f"preparing {root} into {prepared} (stratified 80/10/10, seed {args.seed})", flush=True)
            manifest = prepare_local(root, prepared, seed=args.seed)
            print(manifest.summary(), flush=True)
            root = prepared
        entries = {split: list_split(root, split) for split in ("train", "valid", "test")}
        return entries, {"data": str(Path(args.data)), "prepared": str(root)}
    if args.train and args.validation:
        entries = {
            "train": list_split(Path(args.train), None),
            "valid": list_split(Path(args.validation), None),
        }
        entries["test"] = list_split(Path(args.test), None) if args.test else []
        return entries, {"data": {"train": args.train, "validation": args.validation, "test": args.test}}
    raise SystemExit("no data: give --data DIR, or --train and --validation (SM_CHANNEL_TRAIN/VALIDATION)")


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
    entries, description = resolve_entries(args)
    entries["train"] = stratified_subset(entries["train"], args.max_train_images, args.seed)
    for split in ("valid", "test"):
        entries[split] = stratified_subset(entries[split], args.max_eval_images, args.seed)
    if not entries["train"] or not entries["valid"]:
        raise SystemExit(f"need photos in train and valid, got { {k: len(v) for k, v in entries.items()} }")
    cache = None if args.no_cache else Path(args.work_dir) / "cache"
    train = load_images(entries["train"], config, train_cache_size(config.image_size), cache, "train")
    valid = load_images(entries["valid"], config, config.image_size, cache, "valid")
    test = load_images(entries["test"], config, config.image_size, cache, "test") if entries["test"] else None
    description["split_counts"] = {
        split: {str(k): v for k, v in sorted(_bincount(e).items())} for split, e in entries.items()
    }
    return Splits(train, valid, test, description)


def _bincount(entries: list[Entry]) -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in entries:
        out[entry.count] = out.get(entry.count, 0) + 1
    return out


class EpochSampler(Sampler[int]):
    """Indices for one epoch: a permutation, or draws weighted by class (oversampling rare counts).

    Seeded by (seed, epoch), so a resumed run sees the same order as an uninterrupted one.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, mode: str, seed: int) -> None:
        self.n = int(labels.shape[0])
        self.seed = seed
        self.epoch = 0
        self.weights = None if mode == "shuffle" else class_weights(labels, num_classes, mode)[labels]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            return iter(torch.randperm(self.n, generator=generator).tolist())
        return iter(torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist())


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def autocast_dtype(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    if args.amp == "off" or (args.amp == "auto" and device.type != "cuda"):
        return None
    if args.amp == "fp16" or (args.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


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


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and batch-norm buffers (``--ema``)."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise SystemExit(f"--ema must be in (0, 1), got {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def shipped_module(ctx: TrainContext) -> nn.Module:
    """The weights that are validated and shipped: the moving average when there is one."""
    return ctx.ema.module if ctx.ema is not None else ctx.model


def eval_context(ctx: TrainContext) -> TrainContext:
    """The context to validate with: the averaged weights, uncompiled, when ``--ema`` is on."""
    if ctx.ema is None:
        return ctx
    return dataclasses.replace(ctx, model=ctx.ema.module, forward=ctx.ema.module)


def train_one_epoch(
    ctx: TrainContext,
    loader: DataLoader[Any],
    epoch: int,
    max_steps: int | None = None,
    profiler: Any = None,
) -> dict[str, float]:
    ctx.model.train()
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


def evaluate(
    ctx: TrainContext, data: ImageSet, decoding: str, temperature: float = 1.0
) -> tuple[dict[str, Any], torch.Tensor]:
    """Loss and count metrics of one split; also returns the logits for calibration."""
    logits = predict_logits(ctx, data.images)
    return score_logits(ctx, data, logits, decoding, temperature), logits


def score_logits(
    ctx: TrainContext, data: ImageSet, logits: torch.Tensor, decoding: str, temperature: float = 1.0
) -> dict[str, Any]:
    """:func:`evaluate` for logits already predicted (one forward pass serves several decodings)."""
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
# Checkpoints
# --------------------------------------------------------------------------------------------

RESUME_KEYS = ("arch", "image_size", "loss", "freeze_backbone", "seed", "data", "train", "max_train_images")


def checkpoint_dir(args: argparse.Namespace) -> Path:
    if args.checkpoint_dir:
        return Path(args.checkpoint_dir)
    if Path("/opt/ml/checkpoints").is_dir():
        return Path("/opt/ml/checkpoints")
    return Path(args.out) / "checkpoints"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a spot interruption never leaves half a checkpoint


def load_checkpoint(path: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    if args.no_resume or not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    saved = state.get("args", {})
    different = {k: (saved.get(k), getattr(args, k)) for k in RESUME_KEYS if saved.get(k) != getattr(args, k)}
    if different:
        raise SystemExit(
            f"{path} belongs to another run ({different}); use another --checkpoint-dir or --no-resume"
        )
    return state


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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = args.image_size
    overrides: dict[str, Any] = {"image_size": (size, size)} if size else {}
    config = ModelConfig.for_arch(args.arch, **overrides)
    args.image_size = config.image_size[0] if size is None else size

    splits = load_data(args, config)
    num_classes = config.num_classes
    train_labels = class_index(splits.train.counts, config)
    print(
        f"train {len(splits.train)} / valid {len(splits.valid)} / test {len(splits.test or [])} photos; "
        f"train per class {torch.bincount(train_labels, minlength=num_classes).tolist()}",
        flush=True,
    )

    model = build_model(config, pretrained=args.pretrained)
    if args.freeze_backbone:
        freeze_backbone(model, True)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = args.bn_momentum  # a training setting: not part of the state dict
    model = model.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: nn.Module = torch.compile(model) if args.compile else model  # type: ignore[assignment]
    amp_dtype = autocast_dtype(args, device)
    weights = class_weights(train_labels, num_classes, args.class_weights)
    criterion = CountLoss(args.loss, num_classes, weights, args.smoothing, args.sigma, args.empty_apart).to(
        device
    )

    sampler = EpochSampler(train_labels, num_classes, args.sampler, args.seed)
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
    scheduler = make_scheduler(optimizer, steps_per_epoch, args)
    ctx = TrainContext(
        model=model,
        forward=forward,
        config=config,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None,
        augment=BinAugment(config.image_size, augment_settings) if args.augment == "device" else None,
        device=device,
        amp_dtype=amp_dtype,
        ema=make_ema(model, args.ema),
    )
    ema = ctx.ema
    epoch_decoding = "expected" if args.decoding == "expected" else "argmax"
    ckpt_path = checkpoint_dir(args) / "last.pt"
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "state": None}
    start_epoch, bad_epochs, stopped = 1, 0, False
    resumed = load_checkpoint(ckpt_path, args)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        if ctx.scaler is not None and resumed.get("scaler"):
            ctx.scaler.load_state_dict(resumed["scaler"])
        if ema is not None and resumed.get("ema"):
            ema.load_state_dict(resumed["ema"])
        history, best = resumed["history"], resumed["best"]
        start_epoch, bad_epochs, stopped = resumed["epoch"] + 1, resumed["bad_epochs"], resumed["stopped"]
        torch.set_rng_state(resumed["rng"])
        print(f"resumed from {ckpt_path} after epoch {resumed['epoch']}", flush=True)

    for epoch in range(start_epoch, args.epochs + 1):
        if stopped:
            break
        sampler.set_epoch(epoch)
        profile = _profiler(args, out) if args.profile and epoch == start_epoch else contextlib.nullcontext()
        with profile as profiler:
            stats = train_one_epoch(ctx, loader, epoch, args.max_steps, profiler)
        if profiler is not None:
            _report_profile(profiler, out)
        valid, _ = evaluate(eval_context(ctx), splits.valid, epoch_decoding)
        record = {
            "epoch": epoch,
            **stats,
            "valid_loss": valid["loss"],
            "valid_accuracy": valid["accuracy"],
            "valid_rmse": valid["rmse"],
            "valid_mae": valid["mae"],
            "valid_score": valid["score"],
            "valid_class0_recall": valid["recall"].get("0"),
            "lr": optimizer.param_groups[-1]["lr"],
        }
        history.append(record)
        print(METRIC_LINE_FORMAT.format(**record), flush=True)
        if valid["score"] > best["score"]:
            best = {
                "score": valid["score"],
                "epoch": epoch,
                "state": {k: v.detach().cpu().clone() for k, v in shipped_module(ctx).state_dict().items()},
            }
            bad_epochs = 0
        else:
            bad_epochs += 1
        stopped = bad_epochs >= args.patience
        if stopped:
            print(
                f"early stop: no better valid_score for {args.patience} epochs (best epoch {best['epoch']})",
                flush=True,
            )
        save_checkpoint(
            ckpt_path,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
                "ema": ema.state_dict() if ema is not None else None,
                "args": vars(args),
                "history": history,
                "best": best,
                "bad_epochs": bad_epochs,
                "stopped": stopped,
                "rng": torch.get_rng_state(),
            },
        )

    if best["state"] is None:
        raise SystemExit("no epoch was trained (--epochs 0?)")
    return finish(ctx, args, splits, best, history, out)


def _profiler(args: argparse.Namespace, out: Path) -> Any:
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


def finish(
    ctx: TrainContext,
    args: argparse.Namespace,
    splits: Splits,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    out: Path,
) -> dict[str, Any]:
    """Best checkpoint -> fp16 weights (as shipped) -> calibration, decoding, threshold -> test, artifact."""
    config = ctx.config
    ctx.model.load_state_dict(best["state"])
    half = half_state_dict(ctx.model)
    ctx.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()})

    valid_labels = class_index(splits.valid.counts, config)
    valid_logits = predict_logits(ctx, splits.valid.images)
    temperature = calibration.fit_temperature(valid_logits, valid_labels)
    decodings = ["argmax", "expected"] if args.decoding == "auto" else [args.decoding]
    candidates = {d: score_logits(ctx, splits.valid, valid_logits, d, temperature) for d in decodings}
    decoding = max(decodings, key=lambda d: (candidates[d]["score"], d == "argmax"))
    valid = candidates[decoding]
    report = calibration.calibration_report(valid_logits, valid_labels, decoding, temperature)
    rows = calibration.threshold_table(
        calibration.probabilities(valid_logits, temperature), valid_labels, decoding
    )
    chosen = calibration.choose_threshold(rows, args.max_flagged)

    test: dict[str, Any] | None = None
    test_logits: torch.Tensor | None = None
    if splits.test is not None:
        test, test_logits = evaluate(ctx, splits.test, decoding, temperature)
        test_labels = class_index(splits.test.counts, config)
        test["ece"] = expected_calibration_error(
            calibration.probabilities(test_logits, temperature).numpy(), test_labels.tolist()
        )
        test_rows = calibration.threshold_table(
            calibration.probabilities(test_logits, temperature), test_labels, decoding, [chosen.threshold]
        )
        test["review"] = test_rows[0].__dict__

    hyperparameters = {
        k: v
        for k, v in vars(args).items()
        if k not in ("data", "train", "validation", "test", "out", "model_dir")
    }
    metrics = {
        "best_epoch": best["epoch"],
        "decoding": decoding,
        "temperature": temperature,
        "valid": valid,
        "valid_by_decoding": {
            d: {k: candidates[d][k] for k in ("accuracy", "rmse", "mae", "score")} for d in decodings
        },
        "test": test,
        "calibration": report,
        "review_threshold": chosen.__dict__,
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
    config.decoding = decoding
    config.temperature = temperature
    # Minute resolution: two models trained the same day must not share a version in the records.
    config.version = f"bincount-{config.arch}-{time.strftime('%Y.%m.%d-%H%M', time.gmtime())}"
    config.training = {
        "data": splits.description,
        "command": command_line(args),
        "hyperparameters": hyperparameters,
        "best_epoch": best["epoch"],
        "metrics": {"valid": _headline(valid), "test": _headline(test) if test else None},
        "ece": {"before": report["ece_before"], "after": report["ece_after"]},
        "review_threshold": chosen.threshold,
        "review": chosen.__dict__,
    }
    artifact = _package(out, half, config)  # sets config.weights_sha256
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n", encoding="utf-8")
    (out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    predicted = {"valid": (splits.valid, valid_logits)}
    if splits.test is not None and test_logits is not None:
        predicted["test"] = (splits.test, test_logits)
    write_predictions(out / PREDICTIONS_FILE, temperature, predicted)
    _plots(history, valid, test, out)
    if args.model_dir:
        _unpack(artifact, Path(args.model_dir))

    print(
        RESULT_LINE_FORMAT.format(
            best_epoch=best["epoch"],
            best_accuracy=valid["accuracy"],
            best_rmse=valid["rmse"],
            best_score=valid["score"],
            test_accuracy=test["accuracy"] if test else float("nan"),
            test_rmse=test["rmse"] if test else float("nan"),
            ece_before=report["ece_before"],
            ece_after=report["ece_after"],
            temperature=temperature,
            review_threshold=chosen.threshold,
        ),
        flush=True,
    )
    print(_summary(metrics), flush=True)
    return {
        "out": str(out),
        "artifact": str(artifact),
        "config": config.to_dict(),
        "metrics": metrics,
        "history": history,
    }


PREDICTIONS_FILE = "predictions.json"


def write_predictions(
    path: Path, temperature: float, splits: dict[str, tuple[ImageSet, torch.Tensor]]
) -> None:
    """The shipped weights' raw logits per photo of each split, for comparing runs and ensembles
    afterwards without the photos (``training.compare``)."""
    data = {
        "temperature": temperature,
        "splits": {
            name: {
                "ids": images.ids,
                "counts": images.counts.tolist(),
                "logits": [[round(float(v), 5) for v in row] for row in logits.tolist()],
            }
            for name, (images, logits) in splits.items()
        },
    }
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run: every flag whose value differs from its default."""
    parser = get_args_parser()
    defaults = parser.parse_args([])
    parts = ["python -m training.train"]
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


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("n", "accuracy", "rmse", "mae", "per_class_accuracy")}


def _plots(
    history: list[dict[str, Any]], valid: dict[str, Any], test: dict[str, Any] | None, out: Path
) -> None:
    try:
        from training.plots import plot_confusion, plot_training_curves
    except ImportError as exc:  # matplotlib missing in a slim container: the numbers are in metrics.json
        print(f"no plots: {exc}", flush=True)
        return
    plot_training_curves(history, out / "training_curves.png")
    plot_confusion(valid["confusion"], out / "confusion_valid.png", "validation split")
    if test is not None:
        plot_confusion(test["confusion"], out / "confusion_test.png", "test split")


def _package(out: Path, state: dict[str, torch.Tensor], config: ModelConfig) -> Path:
    """``model.tar.gz`` via model.package, and its ``model.pt`` + ``config.json`` (same bytes) beside it."""
    from model.package import package_model

    artifact = Path(package_model(out / "model.tar.gz", state, config))
    with tarfile.open(artifact) as tar:
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            member = tar.extractfile(name)
            if member is None:
                raise RuntimeError(f"{artifact} holds no {name}")
            (out / name).write_bytes(member.read())
    return artifact


def _unpack(artifact: Path, model_dir: Path) -> None:
    """SageMaker tars SM_MODEL_DIR into model.tar.gz itself: give it the artifact's contents."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(artifact) as tar:
        try:
            tar.extractall(model_dir, filter="data")
        except TypeError:  # Python without extraction filters (< 3.10.12): our own, trusted archive
            tar.extractall(model_dir)


def _summary(metrics: dict[str, Any]) -> str:
    valid, test, review = metrics["valid"], metrics["test"], metrics["review_threshold"]
    lines = [
        f"best epoch {metrics['best_epoch']}, decoding {metrics['decoding']}, "
        f"temperature {metrics['temperature']:.3f}",
        f"valid: accuracy {valid['accuracy']:.3f}, RMSE {valid['rmse']:.3f} (n={valid['n']})",
    ]
    if test:
        lines.append(f"test:  accuracy {test['accuracy']:.3f}, RMSE {test['rmse']:.3f} (n={test['n']})")
        lines.append(
            "test per class: "
            + ", ".join(
                f"{k}: {v:.2f}" if v is not None else f"{k}: -" for k, v in test["per_class_accuracy"].items()
            )
        )
    cal = metrics["calibration"]
    lines.append(f"ECE (valid) {cal['ece_before']:.3f} -> {cal['ece_after']:.3f} after temperature scaling")
    lines.append(
        f"review threshold {review['threshold']:.2f}: flags {review['flagged']:.0%} of photos, "
        f"catches {review['wrong_caught']:.0%} of wrong counts (valid)"
    )
    c0 = metrics["class0"]
    lines.append(f"empty bins: {c0['train_photos']} in train; valid {c0['valid']}; test {c0['test']}")
    return "\n".join(lines)


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
    main(get_args_parser().parse_args())
