"""Fixtures for the model tests: the packed artifact (tests/conftest.py) unpacked and loaded, and crafted
bad images."""

from __future__ import annotations

import struct
import tarfile
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from imaging import draw_bin, encode

from model.inference import SETTINGS, CountingModel, load_model

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model_dir(packed_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("model_dir")
    with tarfile.open(packed_model) as archive:
        archive.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def torch_model(model_dir: Path) -> CountingModel:
    """The served model on eager PyTorch (what the SageMaker container, without onnxruntime, runs)."""
    return load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu", threads=2))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_with_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb when large)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is patched to claim ``width x height``."""
    data = bytearray(encode(draw_bin(1, seed=5, size=(64, 48))))
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            # SOFn: marker, length (2), precision (1), height (2), width (2)
            struct.pack_into(">HH", data, at + 5, height, width)
            return bytes(data)
    raise AssertionError("no SOF marker in the generated JPEG")


@pytest.fixture(scope="session")
def bad_requests(bin_jpeg: bytes) -> dict[str, tuple[bytes, str, str]]:
    """name -> (body, content type, the error code the record must carry)."""
    return {
        "empty_body": (b"", "image/jpeg", "empty_body"),
        "corrupt_bytes": (b"this is not an image, just text" * 10, "image/jpeg", "corrupt_image"),
        "random_bytes": (bytes(range(256)) * 40, "application/x-image", "corrupt_image"),
        "truncated_jpeg": (bin_jpeg[: len(bin_jpeg) // 2], "image/jpeg", "corrupt_image"),
        "jpeg_header_only": (bin_jpeg[:700], "image/jpeg", "corrupt_image"),
        "unsupported_content_type": (bin_jpeg, "text/csv", "unsupported_content_type"),
        "json_body": (
            b'{"url": "http://169.254.169.254/latest/meta-data"}',
            "application/json",
            "unsupported_content_type",
        ),
        "decompression_bomb_png": (png_with_header(40_000, 40_000), "image/png", "image_too_large"),
        "absurd_side_png": (png_with_header(1, 60_000), "image/png", "image_too_large"),
        "absurd_dimensions_jpeg": (jpeg_with_size(12_000, 8_000), "image/jpeg", "image_too_large"),
    }
