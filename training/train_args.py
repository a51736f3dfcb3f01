"""The command line of ``python -m training.train``: its flags, SageMaker defaults, ``--recipe``, ``--quick``.

Shaped like torchvision's ``get_args_parser()``. Argparse defaults come from the ``SM_*``
variables, so on SageMaker the trainer reads its channels and writes the model directory with no
flags, and locally the same script runs with ``--data DIR --out DIR``. :func:`command_line` turns
a parsed run back into the command that reproduces it (recorded in ``config.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex

import torch

from training.dataset import AUGMENT_PRESETS
from training.losses import CLASS_WEIGHTINGS, LOSSES
from training.recipes import RECIPES, recipe
from training.uncertainty import calibration

PROG = "python -m training.train"
#: The first line of ``--help`` (the trainer's summary).
DESCRIPTION = (
    "Train the counting network: the SageMaker PyTorch entry point and the local trainer, one script."
)
QUICK = {"epochs": 2, "image_size": 96, "batch_size": 16, "max_train_images": 96, "max_eval_images": 48}


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
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
