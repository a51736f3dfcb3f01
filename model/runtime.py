"""Where the forward pass runs: ONNX Runtime when it is there, eager PyTorch otherwise.

Measured on the 2-core CPU of the development machine (docs/model.md): EfficientNet-Lite0 runs
faster under ONNX Runtime than in eager PyTorch, most of all one image at a time (eager PyTorch's
depthwise convolutions are slow in NCHW; channels-last recovers much of it). ONNX Runtime is
optional: the SageMaker PyTorch container does not ship it and may have no internet to install
it, so ``model.onnx`` is used only when ``onnxruntime`` imports, the file is in the artifact and it
was exported from exactly these weights; anything else falls back to eager PyTorch, logged once.

Only torch 2.6-era APIs at import and run time; :func:`export_onnx` runs at packaging time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from model.network import ModelConfig

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
ONNX_OPSET = 17
RUNTIME_CHOICES = ("auto", "onnx", "torch")


class Runtime(Protocol):
    """Runs the network on a normalised batch and returns float32 logits on the CPU."""

    name: str
    device: torch.device
    input_dtype: torch.dtype

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


class TorchRuntime:
    """Eager PyTorch; fp16 and channels-last on CUDA, channels-last on CPU (faster for depthwise convs)."""

    def __init__(self, model: nn.Module, device: torch.device, half: bool | None = None) -> None:
        self.device = device
        use_half = device.type == "cuda" if half is None else half
        self.input_dtype = torch.float16 if use_half else torch.float32
        self.model = (
            model.to(device=device, dtype=self.input_dtype).to(memory_format=torch.channels_last).eval()
        )
        self.name = f"torch-{device.type}{'-fp16' if use_half else ''}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, self.input_dtype, non_blocking=True).contiguous(
            memory_format=torch.channels_last
        )
        with torch.inference_mode():
            return self.model(batch).float().cpu()


class OnnxRuntime:
    """An ONNX Runtime CPU session over ``model.onnx``."""

    device = torch.device("cpu")
    input_dtype = torch.float32

    def __init__(self, path: Path, threads: int, spin: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Spinning workers keep a core busy after each run, stealing it from the next request's
        # decode and resize; per-request serving is faster without (docs/model.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = f"onnxruntime-{ort.__version__}"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: array})
        return torch.from_numpy(logits)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def select_runtime(
    model: nn.Module,
    config: ModelConfig,
    model_dir: str | os.PathLike[str] | None,
    preference: str = "auto",
    device: torch.device | None = None,
    threads: int = 1,
    spin: bool = False,
) -> Runtime:
    """The fastest runtime that works here; ``preference`` is ``auto``, ``onnx`` or ``torch``.

    ``auto`` uses ONNX Runtime on CPU when possible. ``onnx`` says so in the log when it cannot
    and falls back too: a missing optional runtime must never stop a transform job.
    """
    if preference not in RUNTIME_CHOICES:
        log.warning("unknown runtime %r, using auto (choices: %s)", preference, ", ".join(RUNTIME_CHOICES))
        preference = "auto"
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference != "torch" and device.type == "cpu":
        reason = _onnx_unusable_reason(config, model_dir)
        if reason is None and model_dir is not None:
            try:
                runtime = OnnxRuntime(Path(model_dir) / ONNX_FILE, threads, spin)
            except Exception as exc:  # a broken or foreign model.onnx: fall back, never fail
                reason = f"cannot load {ONNX_FILE}: {exc}"
            else:
                recorded = runtime.metadata.get("weights_sha256", "")
                if recorded and config.weights_sha256 and recorded != config.weights_sha256:
                    reason = f"{ONNX_FILE} was exported from other weights ({recorded[:12]})"
                else:
                    return runtime
        log.log(
            logging.WARNING if preference == "onnx" else logging.INFO,
            "ONNX Runtime not used (%s); running eager PyTorch",
            reason,
        )
    return TorchRuntime(model, device)


def _onnx_unusable_reason(config: ModelConfig, model_dir: str | os.PathLike[str] | None) -> str | None:
    if model_dir is None or not (Path(model_dir) / ONNX_FILE).is_file():
        return f"no {ONNX_FILE} in the model directory"
    if not onnxruntime_available():
        return "onnxruntime is not installed"
    return None


def export_onnx(model: nn.Module, config: ModelConfig, path: str | os.PathLike[str]) -> Path:
    """Export the fp32 network with a dynamic batch axis; the weights' hash goes into the metadata.

    Uses the TorchScript-based exporter: it needs no onnxscript and takes a few seconds.
    """
    import warnings

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
