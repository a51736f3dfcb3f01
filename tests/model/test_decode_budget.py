"""The decoding memory budget: pixel limits per mode, reduced decoding of large images, release.

Peaks themselves are measured by ``python -m local.bench.decode_memory`` (docs/model.md); here: the
limits follow the budget, refusals come before any pixel is decoded, a large image decoded
reduced gives nearly the model input of a full decode, and a normal photo exactly the same.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import png_chunk
from imaging import draw_bin, encode
from PIL import Image

from local.bench.decode_memory import measure
from model.config import ModelConfig
from model.inference import RequestError, input_fn
from model.preprocess import (
    DECODE_BYTES_PER_PIXEL,
    DEFAULT_LIMITS,
    DecodeLimits,
    decode_image,
    resize_for_model,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL = DecodeLimits(max_pixels=10**9, max_side=10**6, max_decode_bytes=10**12, reduce_min_side=0)
CONFIG = ModelConfig(arch="efficientnet_lite0", num_classes=6)


def png_header(width: int, height: int, bit_depth: int, color_type: int, extra: bytes = b"") -> bytes:
    """A tiny PNG whose header claims ``width x height`` at this depth and colour type."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    plte = png_chunk(b"PLTE", bytes(range(12))) if color_type == 3 else b""
    pixels = zlib.compress(b"\x00" * 64, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + plte
        + extra
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def model_input(body: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    return resize_for_model(decode_image(body, limits), CONFIG).astype(int)


def test_a_sixteen_bit_png_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded pixels of an oversized image")

    monkeypatch.setattr(Image.Image, "load", must_not_decode)
    bomb = png_header(9000, 9000, 16, 0)  # 16-bit grey, a few hundred bytes
    assert len(bomb) < 1000
    result = input_fn(bomb, "image/png")
    assert isinstance(result, RequestError) and result.code == "image_too_large"
    assert result.message == (
        "image is 9000x9000 pixels (PNG I;16); the limit for this kind of image is 64000000 pixels "
        "(a 512 MB decoding budget) and 20000 per side"
    )


@pytest.mark.parametrize(
    ("color_type", "extra", "refused"),
    [
        (6, b"", True),  # RGBA: premultiplied before reducing, 9 bytes a pixel: under 60 MP
        (3, png_chunk(b"tRNS", b"\x00"), True),  # palette with transparency: the same
        (2, b"", False),  # RGB: 64 MP
        (3, b"", False),  # palette without transparency: 64 MP
    ],
    ids=["rgba", "palette+transparency", "rgb", "palette"],
)
def test_the_pixel_limit_depends_on_the_mode(color_type: int, extra: bytes, refused: bool) -> None:
    result = input_fn(png_header(7800, 7800, 8, color_type, extra), "image/png")  # 60.8 MP
    assert isinstance(result, RequestError)
    assert (result.code == "image_too_large") is refused, result  # else: past the limit, corrupt pixels


def test_every_limit_keeps_its_worst_image_within_the_budget() -> None:
    for mode, cost in DECODE_BYTES_PER_PIXEL.items():
        header = Image.new("P" if mode == "P+transparency" else mode, (1, 1))
        if mode == "P+transparency":
            header.info["transparency"] = 0
        limit = DEFAULT_LIMITS.pixel_limit(header)
        assert limit <= DEFAULT_LIMITS.max_pixels and limit * cost <= DEFAULT_LIMITS.max_decode_bytes, mode
    assert DEFAULT_LIMITS.reduce_min_side >= 4 * max(CONFIG.image_size)  # reduction never nears the input


def test_a_normal_photo_decodes_exactly_as_without_reduction(bin_jpeg: bytes) -> None:
    assert np.array_equal(np.asarray(decode_image(bin_jpeg)), np.asarray(decode_image(bin_jpeg, FULL)))


def test_a_large_jpeg_decodes_reduced_to_nearly_the_same_model_input() -> None:
    body = encode(draw_bin(4, seed=3, size=(4200, 3150)))
    reduced, full = model_input(body), model_input(body, FULL)
    assert decode_image(body).size == (1050, 1575)  # DCT-scaled by 1/2, then across by 2: >= 1024
    difference = np.abs(reduced - full)
    assert difference.max() <= 8 and difference.mean() < 0.5


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16", "P"])
def test_a_large_png_is_reduced_to_nearly_the_same_model_input(mode: str) -> None:
    picture = draw_bin(3, seed=4, size=(3100, 2300))
    if mode == "RGBA":  # transparent pixels of a loud colour must not bleed into the others
        rgba = picture.convert("RGBA")
        alpha = np.zeros((2300, 3100), dtype=np.uint8)
        alpha[:, ::2] = 255
        pixels = np.asarray(rgba).copy()
        pixels[alpha == 0] = (255, 0, 255, 0)
        pixels[..., 3] = alpha
        image = Image.fromarray(pixels)
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(picture.convert("L"), dtype=np.uint16) * 257)
    else:
        image = picture.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    body = buffer.getvalue()
    reduced, full = model_input(body), model_input(body, FULL)
    assert decode_image(body).size == (1033, 1150)  # reduced by (3, 2), whole blocks
    difference = np.abs(reduced - full)
    assert difference.max() <= 6 and difference.mean() < 0.5, (difference.max(), difference.mean())


def test_the_exif_orientation_survives_the_reduction() -> None:
    picture = draw_bin(2, seed=6, size=(2400, 2100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue()).size == (1050, 1200)  # upright: width and height swapped
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif.tobytes(), quality=90)
    assert decode_image(buffer.getvalue()).size == (1050, 1200)


@pytest.mark.slow
def test_the_issues_sixteen_bit_png_stays_within_the_budget_and_is_released(tmp_path: Path) -> None:
    """7900 x 7900 16-bit grey, 0.1 MB: 1.96 GB at the peak before the budget, and kept."""
    grey = Image.linear_gradient("L").resize((7900, 7900))
    path = tmp_path / "bomb16.png"
    Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257).save(path)
    measured = measure(path)  # in a fresh process with the serving processes' malloc settings
    assert measured["error"] is None
    peak, after = measured["peak_mib"], measured["after_mib"]
    assert isinstance(peak, int | float) and isinstance(after, int | float)
    assert peak < DEFAULT_LIMITS.max_decode_bytes // 2**20
    assert after < 64  # handed back to the OS, not kept by malloc
