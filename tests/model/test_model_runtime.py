"""Optional ONNX Runtime: used when present and matching, clean fallback to eager torch otherwise."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.inference import SETTINGS, input_fn, load_model, predict_fn
from model.network import load_state
from model.runtime import ONNX_FILE, TorchRuntime, select_runtime


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


def test_falls_back_to_torch_when_onnxruntime_is_missing(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    network, config = load_state(model_dir)
    runtime = select_runtime(network, config, model_dir, "onnx", torch.device("cpu"), 1)
    assert isinstance(runtime, TorchRuntime)
    assert "onnxruntime is not installed" in caplog.text


def test_falls_back_when_the_artifact_has_no_onnx_file(
    model_dir: Path, tmp_path: Path, bin_jpeg: bytes
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(model_dir, plain)
    (plain / ONNX_FILE).unlink()
    served = load_model(plain, replace(SETTINGS, runtime="auto", device="cpu", threads=1))
    assert served.runtime.name == "torch-cpu"
    assert "count" in predict_fn(input_fn(bin_jpeg, "image/jpeg"), served)


def test_refuses_an_onnx_file_exported_from_other_weights(model_dir: Path) -> None:
    pytest.importorskip("onnxruntime")
    network, config = load_state(model_dir)
    stale = replace(config, weights_sha256="0" * 64)
    runtime = select_runtime(network, stale, model_dir, "auto", torch.device("cpu"), 1)
    assert isinstance(runtime, TorchRuntime)


def test_broken_onnx_file_falls_back(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / ONNX_FILE).write_bytes(b"not an onnx graph")
    network, config = load_state(broken)
    assert isinstance(select_runtime(network, config, broken, "auto", torch.device("cpu"), 1), TorchRuntime)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_fp16(model_dir: Path, bin_jpeg: bytes) -> None:
    served = load_model(model_dir, replace(SETTINGS, runtime="auto", device="cuda"))
    assert served.runtime.name == "torch-cuda-fp16"
    cpu = load_model(model_dir, replace(SETTINGS, runtime="torch", device="cpu"))
    image = input_fn(bin_jpeg, "image/jpeg")
    a, b = predict_fn([image, image], served), predict_fn(image, cpu)
    assert a[0]["count"] == b["count"]
    assert max(abs(x - y) for x, y in zip(a[0]["probabilities"], b["probabilities"], strict=True)) < 2e-2
