"""Train the counting network: the SageMaker PyTorch entry point and the local trainer, one script.

Shaped like torchvision's ``references/classification/train.py``, read top to bottom: the model
and optimiser (:func:`build_training`), one epoch (:func:`train_one_epoch`), the epoch loop
(:func:`fit`, the one place training happens) and :func:`main`. What surrounds the loop lives in
the module that owns it:

* the command line (``get_args_parser``, ``--recipe``, ``--quick``): ``training.train_args``
* the photos of each split (torchvision's ``load_data``): ``training.splits``, on top of
  ``training.data`` (preparing folders) and ``training.dataset`` (decoding, augmentation, sampler)
* a model's figures on a split (torchvision's ``evaluate``): ``training.scoring``
* checkpoints and the loop state they hold: ``training.checkpoints``
* after the loop -- calibration, test split, ``config.json``, artifact: ``training.finish``,
  calling ``training.uncertainty.calibration``, ``model.package`` and ``training.reporting.report``
  (the files and the metric lines SageMaker's ``metric_definitions`` read, ``report.METRIC_DEFINITIONS``)

Argparse defaults come from the ``SM_*`` variables, so on SageMaker it reads its channels and
writes the model directory with no flags, and locally the same script runs with
``--data DIR --out DIR`` (``abid-train`` below: the ABID photos you downloaded, a folder of
``images/<count>/*.jpg`` + ``labels.csv``)::

    python -m training.train --data abid-train --out build/train --recipe shipped
    python -m training.train --data abid-train,build/labels:3 --init-from model/weights \\
        --recipe finetune --out build/retrain

``--data`` takes one or more folders (comma-separated, each with an optional ``:weight`` or the
weights in ``--data-weights``): a prepared split folder (``training.data`` output), reviewed
photos exported by ``bincount export-labels`` (split by photo hash; their test split is the gate
set ``training.promotion.gate`` judges on, never trained on), or a raw folder of count classes / ABID
metadata, which is first run through ``training.data`` into ``build/data``. Photos are decoded
once into memory (``training.dataset``), cached in ``build/cache``. ``--init-from`` fine-tunes an
existing model; ``--recipe`` names a recipe of ``training.recipes``.

Every epoch prints ONE metric line with stable names (``report.METRIC_LINE_FORMAT``)::

    epoch=3 train_loss=0.9123 train_accuracy=0.6012 valid_loss=1.0345 valid_accuracy=0.4512 \\
valid_rmse=1.0231 valid_mae=0.7100 valid_score=0.1954 lr=0.000300 epoch_seconds=98.1 images_per_second=30.9

then once ``report.RESULT_LINE_FORMAT`` (``best_*`` = the shipped checkpoint on validation, after
calibration; ``test_*`` = the test split, reported, never used for choosing), and last
``best_valid_score=...``: the kept model's validation score, the tuner's objective
(``best:valid_score``), whose last value is then the model that ships rather than the last epoch.

The checkpoint kept is the epoch with the best validation score
``valid_score = valid_accuracy - 0.25 * valid_rmse`` (:func:`training.reporting.metrics.validation_score`):
accuracy and RMSE together, 0.1 of RMSE worth 2.5 points of accuracy. Early stopping watches the
same score.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
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

from common.errors import UsageError, one_line_errors
from common.malloc import MALLOC_ENV
from model.config import ModelConfig
from model.network import backbone_parameters, build_model, freeze_backbone, head_parameters
from training.checkpoints import LoopState, checkpoint_dir, load_checkpoint, save_checkpoint
from training.dataset import (
    AUGMENT_PRESETS,
    BinAugment,
    CachedDataset,
    EpochSampler,
    normalise,
    worker_transform,
)
from training.finetune import freeze_early_blocks, load_init
from training.finish import finish
from training.losses import CountLoss, class_weights
from training.precision import autocast, autocast_dtype_for
from training.progress import progress
from training.reporting.report import METRIC_LINE_FORMAT
from training.scoring import score_split
from training.splits import Splits, class_index, load_data
from training.train_args import PROG, apply_quick, get_args_parser, parse_args

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
# Optimiser, schedule, the run's context, one epoch
# --------------------------------------------------------------------------------------------


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
    """Everything one run trains with (and, as a ``training.scoring.ScoringContext``, scores with)."""

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
    amp_dtype = autocast_dtype_for(args.amp, device)  # bf16 where native, fp16 below (a T4), none on CPU
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
        with autocast(ctx.device, ctx.amp_dtype):
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


# --------------------------------------------------------------------------------------------
# The epoch loop
# --------------------------------------------------------------------------------------------


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
        f"train {len(splits.train)} / valid {len(splits.valid)} / calibration "
        f"{len(splits.calibration or [])} / test {len(splits.test or [])} photos; "
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
    """Re-exec with glibc malloc tuned (measured: training 1.7x faster on CPU).

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
