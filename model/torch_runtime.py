"""The runtimes that need torch: frozen TorchScript and eager PyTorch, and the exports made at packaging.

SageMaker's PyTorch container serves with these when ONNX Runtime cannot (model/runtime.py says
when). Only torch 2.6-era APIs at load and run time (``torch.jit.load``,
``optimize_for_inference``: both since torch 1.10); :func:`export_onnx` and
:func:`export_torchscript` run at packaging time.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.config import ModelConfig
from model.runtime import (
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    TORCHSCRIPT_EXTRA,
    TORCHSCRIPT_FILE,
    Runtime,
    log_not_used,
    open_exported,
)

log = logging.getLogger(__name__)


class TorchRuntime:
    """Eager PyTorch; fp16 and channels-last on CUDA, channels-last on CPU (faster for depthwise convs)."""

    def __init__(self, model: nn.Module, device: str, half: bool | None = None) -> None:
        self.device = device
        self._device = torch.device(device)
        use_half = self._device.type == "cuda" if half is None else half
        self._dtype = torch.float16 if use_half else torch.float32
        self.model = (
            model.to(device=self._device, dtype=self._dtype).to(memory_format=torch.channels_last).eval()
        )
        self.name = f"torch-{self._device.type}{'-fp16' if use_half else ''}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        tensor = tensor.to(self._device, self._dtype, non_blocking=True).contiguous(
            memory_format=torch.channels_last
        )
        with torch.inference_mode():
            return self.model(tensor).float().cpu().numpy()


class TorchScriptRuntime:
    """``model.torchscript`` on the CPU: frozen at packaging, oneDNN-optimised when it loads."""

    device = "cpu"

    def __init__(self, path: Path, optimise: bool = True) -> None:
        extra = dict.fromkeys(TORCHSCRIPT_EXTRA, "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # newer torch: "torch.jit is deprecated"
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            self.metadata = {key: _text(value) for key, value in extra.items()}
            self.model: Any = module.eval()
            self.name = f"torchscript-{torch.__version__.split('+')[0]}"
            if optimise:
                try:
                    self.model = torch.jit.optimize_for_inference(module)
                    self.name += "-onednn"
                except Exception as exc:  # the plain frozen graph still serves
                    log.warning("optimize_for_inference failed (%s); serving the frozen graph", exc)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            return self.model(tensor).float().numpy()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def resolve_device(setting: str) -> str:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> where the network runs here (``cpu`` or ``cuda:N``)."""
    if setting == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        log.warning("BINCOUNT_DEVICE=%s but CUDA is not available; using the CPU", setting)
        return "cpu"
    return f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"


def gpu_count() -> int:
    return torch.cuda.device_count()


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def select_torch_runtime(
    config: ModelConfig, model_dir: str | os.PathLike[str], preference: str, device: str, threads: int
) -> Runtime:
    """TorchScript on the CPU unless ``preference`` is ``torch``, else (or when it cannot) eager PyTorch."""
    from model.network import load_state

    if device == "cpu":
        set_threads(threads)
    if preference != "torch" and device == "cpu":
        reason = _torchscript_unusable_reason(config, model_dir)
        if reason is None:
            scripted, reason = open_exported(
                Path(model_dir) / TORCHSCRIPT_FILE,
                TorchScriptRuntime,
                config.weights_sha256,
                unnamed_ok=False,
            )
            if scripted is not None:
                return scripted
        log_not_used(preference == "torchscript", "TorchScript not used (%s); running eager PyTorch", reason)
    network, _ = load_state(model_dir)
    return TorchRuntime(network, device)


def _torchscript_unusable_reason(config: ModelConfig, model_dir: str | os.PathLike[str]) -> str | None:
    if not (Path(model_dir) / TORCHSCRIPT_FILE).is_file():
        return f"no {TORCHSCRIPT_FILE} in the model directory"
    if not config.weights_sha256:
        return "the config names no weights_sha256 to check the archive against"
    return None


def export_torchscript(model: nn.Module, config: ModelConfig, path: str | os.PathLike[str]) -> Path:
    """Trace the fp32 network on one ``config.image_size`` image, freeze it and save it.

    Freezing inlines the weights as constants and folds batch norm into the convolutions. The
    trace keeps the batch axis free; its "SAME" padding is exact for ``config.image_size``, the
    size ``resize_for_model`` gives every request. ``optimize_for_inference`` is left to load
    time: its oneDNN graph cannot be saved. The archive (format version 3, plain ``aten``
    operators) is what torch 2.6's ``torch.jit.load`` reads; tests/model/test_model_runtime.py
    checks both.
    """
    path = Path(path)
    model = model.float().eval().to("cpu").to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, *config.image_size)
    extra = {"weights_sha256": config.weights_sha256, "model_version": config.version}
    with warnings.catch_warnings(), torch.no_grad():
        # the tracer's notes on Python arithmetic over sizes; newer torch's deprecation notices
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.trace(model, example).eval())
        torch.jit.save(frozen, str(path), _extra_files=extra)
    return path


def export_onnx(model: nn.Module, config: ModelConfig, path: str | os.PathLike[str]) -> Path:
    """Export the fp32 network with a dynamic batch axis; the weights' hash goes into the metadata.

    Uses the TorchScript-based exporter: it needs no onnxscript and takes a few seconds.
    """
    import onnx

    path = Path(path)
    model = model.float().eval().to("cpu").to(memory_format=torch.contiguous_format)
    example = torch.zeros(1, 3, *config.image_size)
    export: Any = torch.onnx.export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
        )
    exported = onnx.load(str(path))
    for key, value in (("weights_sha256", config.weights_sha256), ("version", config.version)):
        entry = exported.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(exported, str(path))
    return path
