"""Fixtures shared by every test area; area-specific ones live in tests/<area>/conftest.py.

Nothing here imports Pillow, torch or the model at import time: ``make test-functions`` runs the
Lambda tests with only the functions' dependencies. Test photos come from ``tests/imaging.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from processes import python_env

if TYPE_CHECKING:
    from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
#: Where the optional real photos are: the same variables the README's commands use, defaulting
#: to a ``shared/`` folder beside the clone.
ABID_DIR = Path(os.environ.get("BINCOUNT_ABID_DIR") or SHARED_DIR / "abid")
ABID_TRAIN_DIR = Path(os.environ.get("BINCOUNT_ABID_TRAIN_DIR") or SHARED_DIR / "abid-train")
EVENTS_DIR = REPO_ROOT / "events"

# Set before any boto3 client exists, for every test area: no real credentials or profile can reach
# AWS from a test; the moto stacks' queues are purged before every test (tests/moto_baseline.py),
# not once a minute.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)


#: A test that uses one of these packs, loads or serves a real network: marked ``slow`` (make test-fast
#: leaves it out). Tests that train or build networks without them carry the mark themselves.
MODEL_FIXTURES = frozenset({"packed_model", "model_dir", "torch_model", "shipped_artifact"})


def share_botocore_data_loader() -> None:
    """One botocore data loader for every session of the test process.

    botocore caches the JSON it reads (endpoints.json, 1.2 MB; service models) per loader, and
    each ``boto3.Session`` / ``botocore.session.Session`` makes its own loader: the launcher's
    SageMaker sessions and the SDK's image URI lookups (a fresh loader per call) parsed
    endpoints.json hundreds of times per run, ~5 s of CPU in tests/training alone. A single
    botocore session already shares its loader among all its clients, so sharing it among
    sessions hands them the same read-only data. A custom ``AWS_DATA_PATH`` keeps its own loader.
    """
    import botocore.loaders
    import botocore.session

    create_loader = botocore.loaders.create_loader
    if getattr(create_loader, "shared", False):
        return
    default = create_loader()

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        return default if search_path_string is None else create_loader(search_path_string)

    shared_loader.shared = True  # type: ignore[attr-defined]
    botocore.loaders.create_loader = shared_loader
    botocore.session.create_loader = shared_loader


def pytest_configure(config: pytest.Config) -> None:
    share_botocore_data_loader()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def events_dir() -> Path:
    return EVENTS_DIR


@pytest.fixture(scope="session")
def bin_jpeg() -> bytes:
    """A realistic-size generated bin photo (JPEG) holding three items."""
    from imaging import jpeg_photo

    return jpeg_photo(3, seed=1)


@pytest.fixture(scope="session")
def bin_png() -> bytes:
    """The same kind of photo as PNG with an alpha channel, to exercise conversion."""
    from imaging import draw_bin, encode

    return encode(draw_bin(2, seed=2).convert("RGBA"), "PNG")


@pytest.fixture(scope="session")
def bin_image() -> Image.Image:
    from imaging import draw_bin

    return draw_bin(1, seed=3)


@pytest.fixture(scope="session")
def packed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``model.tar.gz``: ImageNet EfficientNet-Lite0, a fresh head, fp16 weights, model.onnx.

    For the model's own tests and the serving benchmark's (tests/model, tests/local).
    """
    import torch

    from model.config import ModelConfig
    from model.network import build_model
    from model.package import package_model

    config = ModelConfig.for_arch("efficientnet_lite0", version="bincount-test-lite0")
    torch.manual_seed(0)
    network = build_model(config, pretrained=True)
    return package_model(
        tmp_path_factory.mktemp("artifact") / "model.tar.gz", network.state_dict(), config, onnx=True
    )


@pytest.fixture(scope="session")
def shipped_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make model``'s artifact, built once per run by ``python -m model.package`` in its own process.

    The evaluation, the shipped-weights and the end-to-end tests all serve this one file.
    """
    out = tmp_path_factory.mktemp("shipped-model") / "model.tar.gz"
    done = subprocess.run(
        [sys.executable, "-m", "model.package", "--out", str(out)],
        cwd=REPO_ROOT,
        env=python_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"model.package failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return out


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
