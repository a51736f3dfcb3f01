"""Test photos drawn with Pillow: the tests' own image factory (``local/synthetic.py`` is the demo's).

The pictures only need to be real, decodable photos of a known size with a known number of
boxes in them; the same ``(count, seed, size)`` always gives the same pixels, so recorded
answers (``tests/model/data/shipped_predictions.json``) stay comparable.
"""

from __future__ import annotations

import io
import random
from typing import Any

from PIL import Image, ImageDraw

PHOTO_SIZE = (470, 350)  # median ABID photo, width x height


def draw_bin(count: int, seed: int, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """A cardboard-coloured picture holding ``count`` outlined boxes at seeded places."""
    rng = random.Random(f"{count}/{seed}/{size}")
    width, height = size
    image = Image.new("RGB", size, (rng.randint(140, 200), rng.randint(110, 160), rng.randint(70, 110)))
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        box_w, box_h = rng.randint(width // 8, width // 3), rng.randint(height // 8, height // 3)
        left, top = rng.randint(0, width - box_w), rng.randint(0, height - box_h)
        fill = (rng.randint(20, 240), rng.randint(20, 240), rng.randint(20, 240))
        draw.rectangle((left, top, left + box_w, top + box_h), fill=fill, outline=(20, 20, 20), width=2)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    """The picture as an uploaded file's bytes (JPEG quality 90 unless told otherwise)."""
    if fmt == "JPEG":
        options.setdefault("quality", 90)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_photo(count: int, seed: int, size: tuple[int, int] = PHOTO_SIZE) -> bytes:
    """A JPEG photo of ``count`` boxes: what most tests upload."""
    return encode(draw_bin(count, seed, size))
