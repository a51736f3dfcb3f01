"""How far the one preprocessing definition (Pillow's resize) is from the torch resize, and its cost.

``model/preprocess.py`` resizes with Pillow's antialiased bilinear filter, for serving (with or
without torch installed) and for training's image cache alike. The shipped model was trained on
images resized by torch's ``interpolate(antialias=True)``; this measures, on the same decoded
photos, how many pixels the two disagree on and by how much, and what each costs per photo::

    python -m local.bench.preprocess_bench [--images DIR] [--count N] [--rounds R]

Needs torch for the comparison (the full install); generated ABID-size photos by default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import one_line_errors
from local.bench.serving_bench import folder_images, synthetic_jpegs
from model.config import ModelConfig
from model.preprocess import decode_image, resize_for_model


def torch_resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The resize the shipped model was trained with: ``interpolate`` on the uint8 image."""
    import torch
    import torch.nn.functional as F

    batch = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    resized = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).numpy()


def median_ms(run: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            run(item)
        times.append((time.perf_counter() - started) / len(items) * 1e3)
    return statistics.median(times)


@one_line_errors("local.bench.preprocess_bench")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench.preprocess_bench", description=__doc__)
    parser.add_argument("--images", type=Path, help="folder of photos (default: generated ABID-size JPEGs)")
    parser.add_argument("--count", type=int, default=64, help="photos (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds, median taken (default 5)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    config = ModelConfig()
    bodies = folder_images(args.images, args.count) if args.images else synthetic_jpegs(args.count)
    decoded = [decode_image(body) for body in bodies]
    pixels = [np.array(image) for image in decoded]
    ours = np.stack([resize_for_model(image, config) for image in decoded]).astype(int)
    theirs = np.stack([torch_resize(p, config.image_size) for p in pixels]).astype(int)
    difference = np.abs(ours - theirs)
    source = "generated" if args.images is None else str(args.images)
    print(f"{len(bodies)} photos ({source}), input {config.image_size}")
    print(
        f"Pillow vs torch resize: max {difference.max()} grey levels, mean {difference.mean():.4f}, "
        f"{(difference > 0).mean() * 100:.2f} % of values differ"
    )
    pillow_ms = median_ms(lambda image: resize_for_model(image, config), decoded, args.rounds)
    torch_ms = median_ms(lambda p: torch_resize(p, config.image_size), pixels, args.rounds)
    decode_ms = median_ms(decode_image, bodies, args.rounds)
    print(
        f"per photo (median of {args.rounds} rounds, 1 thread): decode {decode_ms:.2f} ms, "
        f"resize Pillow {pillow_ms:.2f} ms, torch {torch_ms:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
