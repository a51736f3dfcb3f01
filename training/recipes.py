"""Named training recipes: the one place the shipped recipe and the short fine-tune are written down.

``python -m training.train --recipe NAME`` takes a recipe's values as its defaults (flags given on
the command line still win); the Makefile (``make train`` / ``make retrain``) and the SageMaker
launcher (``train`` without ``--hp``) read the same dictionaries through :func:`recipe_args` /
:func:`recipe_hyperparameters`, so the three never drift apart.

* ``shipped`` -- the recipe of the shipped default model (model/MODEL_CARD.md): Lite0 at 224 px,
  14 epochs from ImageNet weights, backbone learning rate x 0.3, class-balanced sampling, EMA.
  About 25 minutes on 2 CPU cores.
* ``finetune`` -- a short continuation of an existing model (``--init-from``), worth running on a
  2-core CPU in minutes: 3 epochs at a third of the learning rate, a short warm-up, the stem and
  the first 5 of Lite0's 16 blocks (three stages) frozen -- their backward pass is the most
  expensive and their features the least task-specific -- and a faster-moving EMA so the average
  follows the few steps there are.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "shipped": {
        "image_size": 224,
        "epochs": 14,
        "backbone_lr_mult": 0.3,
        "sampler": "balanced",
        "patience": 5,
        "ema": 0.997,
    },
    "finetune": {
        "epochs": 3,
        "lr": 3e-4,
        "backbone_lr_mult": 0.3,
        "warmup_epochs": 0.2,
        "freeze_blocks": 5,
        "sampler": "balanced",
        "patience": 2,
        "ema": 0.99,
    },
}


def recipe(name: str) -> dict[str, Any]:
    """The argparse defaults of recipe ``name`` (a copy: callers may change it)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return dict(RECIPES[name])


def recipe_args(name: str) -> list[str]:
    """The recipe as ``training.train`` flags (``--image-size 224 --epochs 14 ...``)."""
    return [
        part for key, value in recipe(name).items() for part in (f"--{key.replace('_', '-')}", str(value))
    ]


def recipe_hyperparameters(name: str) -> dict[str, str]:
    """The recipe as SageMaker hyperparameters (flag names without dashes, string values)."""
    return {key.replace("_", "-"): str(value) for key, value in recipe(name).items()}


if __name__ == "__main__":  # `make train` reads the flags from here: python -m training.recipes NAME
    import sys

    print(" ".join(recipe_args(sys.argv[1] if len(sys.argv) > 1 else "shipped")))
