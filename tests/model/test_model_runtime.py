"""Runtimes: ONNX Runtime when present and matching, else frozen TorchScript, else eager PyTorch."""

from __future__ import annotations

import logging
import re
import shutil
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from imaging import draw_bin, encode

from model.config import load_config
from model.inference import SETTINGS, CountingModel, input_fn, load_model, predict_fn
from model.preprocess import normalise, resize_for_model
from model.runtime import ONNX_FILE, TORCHSCRIPT_FILE, select_runtime
from model.torch_runtime import TorchRuntime, TorchScriptRuntime


def test_onnx_runtime_is_used_when_available_and_agrees_with_torch(model_dir: Path, bin_jpeg: bytes) -> None:
    pytest.importorskip("onnxruntime")
    onnx_model = load_model(model_dir, replace(SETTINGS, runtime="auto", device="cpu", threads=2))
    torch_model = load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu", threads=2))
    assert onnx_model.runtime.name.startswith("onnxruntime")
    assert torch_model.runtime.name == "torch-cpu"
    image = input_fn(bin_jpeg, "image/jpeg")
    a, b = predict_fn(image, onnx_model), predict_fn(image, torch_model)
    assert a["count"] == b["count"]
    assert max(abs(x - y) for x, y in zip(a["probabilities"], b["probabilities"], strict=True)) < 1e-3


def test_falls_back_to_torchscript_when_onnxruntime_is_missing(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    runtime = select_runtime(load_config(model_dir), model_dir, "onnx", "cpu", 1)
    assert isinstance(runtime, TorchScriptRuntime)
    assert "onnxruntime is not installed" in caplog.text


def test_falls_back_when_the_artifact_has_no_onnx_file(
    model_dir: Path, tmp_path: Path, bin_jpeg: bytes
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    (plain / ONNX_FILE).unlink()
    served = load_model(plain, replace(SETTINGS, runtime="auto", device="cpu", threads=1))
    assert served.runtime.name.startswith("torchscript-")
    assert "count" in predict_fn(input_fn(bin_jpeg, "image/jpeg"), served)


def test_refuses_an_onnx_file_exported_from_other_weights(model_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    stale = replace(load_config(model_dir), weights_sha256="0" * 64)
    runtime = select_runtime(stale, model_dir, "auto", "cpu", 1)
    assert isinstance(runtime, TorchRuntime)  # model.torchscript names the other weights too


def test_broken_onnx_file_falls_back(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / ONNX_FILE).write_bytes(b"not an onnx graph")
    runtime = select_runtime(load_config(broken), broken, "auto", "cpu", 1)
    assert isinstance(runtime, TorchScriptRuntime)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_fp16(model_dir: Path, bin_jpeg: bytes) -> None:
    served = load_model(model_dir, replace(SETTINGS, runtime="auto", device="cuda"))
    assert served.runtime.name == "torch-cuda-fp16"
    cpu = load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu"))
    image = input_fn(bin_jpeg, "image/jpeg")
    a, b = predict_fn([image, image], served), predict_fn(image, cpu)
    assert a[0]["count"] == b["count"]
    assert max(abs(x - y) for x, y in zip(a[0]["probabilities"], b["probabilities"], strict=True)) < 2e-2


# --------------------------------------------------------------------------------------------
# TorchScript: what SageMaker's PyTorch container (no ONNX Runtime) serves on the CPU
# --------------------------------------------------------------------------------------------

#: torch.jit.load of torch 1.11 up to torch 2.6 (the container) reads archive format versions up to
#: 0xA (caffe2/serialize/versions.h, kMaxSupportedFileFormatVersion).
TORCH_26_MAX_ARCHIVE_VERSION = 0xA
#: Operators of the frozen graph; each has had this schema since torch 1.13 (``aten::pad``'s first).
TORCH_26_OPERATORS = {
    "ops.prim.NumToTensor",
    "torch._convolution",
    "torch.adaptive_avg_pool2d",
    "torch.add",
    "torch.flatten",
    "torch.floor_divide",
    "torch.hardtanh_",
    "torch.linear",
    "torch.pad",
    "torch.rsub",
    "torch.size",
    "torch.sub",
}
MAX_LOGIT_DIFFERENCE = 1e-4
PHOTO_SIZES = ((470, 350), (640, 480), (350, 260), (224, 224), (1000, 750))


@pytest.fixture
def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what the SageMaker container has


def served_logits(model: CountingModel, photos: list[bytes]) -> np.ndarray:
    """The logits the serving path computes: the handlers' decode, resize and normalisation."""
    batch = np.stack([resize_for_model(input_fn(p, "image/jpeg"), model.config) for p in photos])  # type: ignore[arg-type]
    return model.runtime(normalise(batch, model.config))


def assert_same_logits(model_dir: Path, photos: list[bytes], runtime: str = "torchscript") -> None:
    """``runtime`` serves each photo alone and all in one batch; both within 1e-4 of eager PyTorch."""
    served = load_model(model_dir, replace(SETTINGS, runtime="auto", device="cpu", threads=2))
    eager = load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu", threads=2))
    assert served.runtime.name.startswith(runtime)
    assert eager.runtime.name == "torch-cpu"
    one_by_one = np.concatenate([served_logits(served, [photo]) for photo in photos])
    assert np.abs(one_by_one - served_logits(eager, photos)).max() <= MAX_LOGIT_DIFFERENCE
    assert np.abs(served_logits(served, photos) - one_by_one).max() <= MAX_LOGIT_DIFFERENCE


def test_onnxruntime_matches_eager_on_photos(model_dir: Path) -> None:
    """The path both artifacts serve on the CPU (ONNX Runtime, installed or carried): fp32 logits
    within 1e-4 of eager PyTorch, one photo per request and batched."""
    pytest.importorskip("onnxruntime")
    photos = [encode(draw_bin(i % 6, seed=60 + i, size=size)) for i, size in enumerate(PHOTO_SIZES)]
    assert_same_logits(model_dir, photos, runtime="onnxruntime")


def test_onnxruntime_matches_eager_on_real_photos(model_dir: Path, shared_abid: Path) -> None:
    pytest.importorskip("onnxruntime")
    photos = sorted((shared_abid / "images").glob("*.jpg"))[:12]
    assert photos, f"no photos in {shared_abid / 'images'}"
    assert_same_logits(model_dir, [p.read_bytes() for p in photos], runtime="onnxruntime")


@pytest.mark.usefixtures("without_onnxruntime")
def test_torchscript_serves_without_onnxruntime_with_eager_logits(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The container's path: frozen TorchScript, and logits within 1e-4 of eager PyTorch on photos."""
    photos = [encode(draw_bin(i % 6, seed=40 + i, size=size)) for i, size in enumerate(PHOTO_SIZES)]
    # the serving logger by name too: a Powertools logger named "bincount" (the Lambda tests make one)
    # sets its own level, which "bincount.inference" would otherwise inherit
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="bincount.inference"):
        assert_same_logits(model_dir, photos)
    assert "onnxruntime is not installed" in caplog.text
    assert "on torchscript-" in caplog.text  # model_fn's line says which runtime serves


@pytest.mark.usefixtures("without_onnxruntime")
def test_torchscript_matches_eager_on_real_photos(model_dir: Path, shared_abid: Path) -> None:
    photos = sorted((shared_abid / "images").glob("*.jpg"))[:12]
    assert photos, f"no photos in {shared_abid / 'images'}"
    assert_same_logits(model_dir, [p.read_bytes() for p in photos])


@pytest.mark.usefixtures("without_onnxruntime")
@pytest.mark.parametrize("damage", ["missing", "broken", "other weights"])
def test_torchscript_that_cannot_serve_falls_back_to_eager(
    damage: str, model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    config = load_config(copy)
    if damage == "missing":
        (copy / TORCHSCRIPT_FILE).unlink()
    elif damage == "broken":
        (copy / TORCHSCRIPT_FILE).write_bytes(b"not a TorchScript archive")
    else:
        config = replace(config, weights_sha256="0" * 64)
    with caplog.at_level(logging.INFO):
        runtime = select_runtime(config, copy, "auto", "cpu", 1)
    assert isinstance(runtime, TorchRuntime)
    assert "TorchScript not used" in caplog.text


def test_torchscript_archive_is_one_torch_26_reads(model_dir: Path) -> None:
    """torch 2.6 is not installable here: check what its ``torch.jit.load`` depends on instead."""
    with zipfile.ZipFile(model_dir / TORCHSCRIPT_FILE) as archive:
        names = archive.namelist()
        version = int(archive.read(next(n for n in names if n.count("/") == 1 and n.endswith("/version"))))
        code = "".join(archive.read(n).decode() for n in names if n.endswith(".py"))
        extra = {n.rsplit("/", 1)[-1] for n in names if "/extra/" in n}
    assert version <= TORCH_26_MAX_ARCHIVE_VERSION
    assert set(re.findall(r"\b(?:torch|ops\.prim)\.\w+", code)) <= TORCH_26_OPERATORS
    assert extra == {"weights_sha256", "model_version"}
