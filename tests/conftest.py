"""Fixtures shared by every test area; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from local.synthetic import draw_bin, encode

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
EVENTS_DIR = REPO_ROOT / "events"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def events_dir() -> Path:
    return EVENTS_DIR


@pytest.fixture(scope="session")
def bin_jpeg() -> bytes:
    """A realistic-size generated bin photo (JPEG) holding three items."""
    return encode(draw_bin(3, seed=1))


@pytest.fixture(scope="session")
def bin_png() -> bytes:
    """The same kind of photo as PNG with an alpha channel, to exercise conversion."""
    buffer = io.BytesIO()
    draw_bin(2, seed=2).convert("RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def bin_image() -> Image.Image:
    return draw_bin(1, seed=3)


@pytest.fixture(scope="session")
def shared_abid() -> Path:
    """The 52 evaluation photos in ../shared/abid; tests using it skip cleanly without it."""
    path = SHARED_DIR / "abid"
    if not (path / "labels.csv").is_file():
        pytest.skip("../shared/abid is not present on this machine")
    return path


@pytest.fixture(scope="session")
def shared_abid_train() -> Path:
    """The 3,788 training photos in ../shared/abid-train; skip cleanly without them."""
    path = SHARED_DIR / "abid-train"
    if not (path / "labels.csv").is_file():
        pytest.skip("../shared/abid-train is not present on this machine")
    return path
