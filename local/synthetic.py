"""Bin-like photos drawn with Pillow, so tests and the demo need no dataset on disk.

They imitate what matters for the pipeline, not for the model's accuracy: a cardboard bin
seen from the front, tape bands across it, and ``count`` boxy items inside, at ABID's typical
photo size. The count is known, so a report can show what was drawn next to what was counted.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

TYPICAL_SIZE = (470, 350)  # median ABID photo, width x height


@dataclass(frozen=True)
class SyntheticBin:
    """One generated photo with the number of items drawn into it."""

    name: str
    count: int
    jpeg: bytes


def draw_bin(count: int, seed: int, size: tuple[int, int] = TYPICAL_SIZE) -> Image.Image:
    """Draw one bin holding ``count`` items; the same seed always gives the same picture."""
    rng = random.Random(seed * 7919 + count)
    width, height = size
    base = (rng.randint(150, 190), rng.randint(120, 150), rng.randint(80, 105))
    image = Image.new("RGB", size, base)
    draw = ImageDraw.Draw(image)
    # back wall and shadows of the bin
    draw.rectangle(
        (width * 0.08, height * 0.05, width * 0.92, height * 0.95), fill=tuple(c - 25 for c in base)
    )
    for _ in range(count):
        w = rng.randint(width // 8, width // 3)
        h = rng.randint(height // 8, height // 3)
        x = rng.randint(int(width * 0.1), max(int(width * 0.1) + 1, int(width * 0.9) - w))
        y = rng.randint(int(height * 0.1), max(int(height * 0.1) + 1, int(height * 0.9) - h))
        colour = (rng.randint(20, 240), rng.randint(20, 240), rng.randint(20, 240))
        draw.rectangle((x, y, x + w, y + h), fill=colour, outline=(20, 20, 20), width=2)
        draw.line((x, y + h // 2, x + w, y + h // 2), fill=(240, 240, 240), width=2)
    # the elastic tape bands across the front of every ABID bin
    for band in range(rng.randint(2, 3)):
        y = int(height * (0.3 + 0.25 * band)) + rng.randint(-10, 10)
        draw.rectangle((0, y, width, y + rng.randint(6, 12)), fill=(225, 225, 215))
    return image.filter(ImageFilter.GaussianBlur(radius=0.6))


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """Encode a picture the way cameras upload it (JPEG by default)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=quality)
    return buffer.getvalue()


def generate(n: int, seed: int = 0, max_count: int = 5) -> Iterator[SyntheticBin]:
    """Yield ``n`` photos with counts spread over ``0..max_count``."""
    rng = random.Random(seed)
    for index in range(n):
        count = rng.randint(0, max_count)
        yield SyntheticBin(
            name=f"synthetic-{seed}-{index:05d}", count=count, jpeg=encode(draw_bin(count, seed + index))
        )
