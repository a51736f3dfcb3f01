"""Fixtures shared by every test area; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from local.synthetic import draw_bin, encode

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
#: Where the optional real photos are: the same variables the README's commands use, defaulting
#: to a ``shared/`` folder beside the clone.
ABID_DIR = Path(os.environ.get("BINCOUNT_ABID_DIR") or SHARED_DIR / "abid")
ABID_TRAIN_DIR = Path(os.environ.get("BINCOUNT_ABID_TRAIN_DIR") or SHARED_DIR / "abid-train")
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
    """The 52 evaluation photos ($BINCOUNT_ABID_DIR, default ../shared/abid); skip cleanly without them."""
    if not (ABID_DIR / "labels.csv").is_file():
        pytest.skip(f"no ABID evaluation photos at {ABID_DIR} (set BINCOUNT_ABID_DIR)")
    return ABID_DIR


@pytest.fixture(scope="session")
def shared_abid_train() -> Path:
    """The training photos ($BINCOUNT_ABID_TRAIN_DIR, default ../shared/abid-train); skip cleanly without."""
    if not (ABID_TRAIN_DIR / "labels.csv").is_file():
        pytest.skip(f"no ABID training photos at {ABID_TRAIN_DIR} (set BINCOUNT_ABID_TRAIN_DIR)")
    return ABID_TRAIN_DIR
