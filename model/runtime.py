"""Where the forward pass runs: ONNX Runtime, else frozen TorchScript, else eager PyTorch.

Measured on the 2-core CPU of the development machine (docs/model.md): EfficientNet-Lite0 runs
faster under ONNX Runtime than in eager PyTorch, most of all one image at a time. ONNX Runtime is
optional: the SageMaker PyTorch container does not ship it and may have no internet to install
it, so ``model.onnx`` is used only when ``onnxruntime`` imports, the file is in the artifact and it
was exported from exactly these weights. What the container runs instead is ``model.torchscript``:
the network traced and frozen at packaging time (batch norm folded into the convolutions),
loaded with ``torch.jit.load`` and passed through ``torch.jit.optimize_for_inference`` on the CPU
(oneDNN convolutions with prepacked weights; eager PyTorch runs single-threaded 1x1 convolutions
through a slow im2col path instead). Anything that does not load, or was exported from other
weights, falls back to eager PyTorch, and the log says which runtime serves.

Only torch 2.6-era APIs at import and run time (``torch.jit.load``, ``optimize_for_inference``:
both since torch 1.10); :func:`export_onnx` and :func:`export_torchscript` run at packaging time.
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
TORCHSCRIPT_FILE = "model.torchscript"
#: TorchScript archives carry these next to the graph (``_extra_files``): which weights, which model.
TORCHSCRIPT_EXTRA = ("weights_sha256", "model_version")
RUNTIME_CHOICES = ("auto", "onnx", "torchscript", "torch")


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


class TorchScriptRuntime:
    """``model.torchscript`` on the CPU: frozen at packaging, oneDNN-optimised when it loads."""

    device = torch.device("cpu")
    input_dtype = torch.float32

    def __init__(self, path: Path, optimise: bool = True) -> None:
        import warnings

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

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(batch.to("cpu", torch.float32).contiguous()).float()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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
    """The fastest runtime that works here; ``preference`` is one of :data:`RUNTIME_CHOICES`.

    ``auto`` on the CPU tries ONNX Runtime, then TorchScript, then eager PyTorch; ``onnx`` and
    ``torchscript`` start at that runtime. A runtime that cannot serve says why in the log and
    the next one is tried: a missing optional runtime must never stop a transform job. On a GPU
    the network runs eagerly in fp16 (the TorchScript graph is a frozen fp32 CPU graph).
    """
    if preference not in RUNTIME_CHOICES:
        log.warning("unknown runtime %r, using auto (choices: %s)", preference, ", ".join(RUNTIME_CHOICES))
        preference = "auto"
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference in ("auto", "onnx") and device.type == "cpu":
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
            "ONNX Runtime not used (%s)",
            reason,
        )
    if preference != "torch" and device.type == "cpu":
        reason = _torchscript_unusable_reason(config, model_dir)
        if reason is None and model_dir is not None:
            try:
                scripted = TorchScriptRuntime(Path(model_dir) / TORCHSCRIPT_FILE)
            except Exception as exc:  # a broken or foreign archive: fall back, never fail
                reason = f"cannot load {TORCHSCRIPT_FILE}: {exc}"
            else:
                recorded = scripted.metadata.get("weights_sha256", "")
                if recorded != config.weights_sha256:
                    reason = (
                        f"{TORCHSCRIPT_FILE} was exported from other weights ({recorded[:12] or 'unnamed'})"
                    )
                else:
                    return scripted
        log.log(
            logging.WARNING if preference == "torchscript" else logging.INFO,
            "TorchScript not used (%s); running eager PyTorch",
            reason,
        )
    return TorchRuntime(model, device)


def _onnx_unusable_reason(config: ModelConfig, model_dir: str | os.PathLike[str] | None) -> str | None:
    if model_dir is None or not (Path(model_dir) / ONNX_FILE).is_file():
        return f"no {ONNX_FILE} in the model directory"
    if not onnxruntime_available():
        return "onnxruntime is not installed"
    return None


def _torchscript_unusable_reason(config: ModelConfig, model_dir: str | os.PathLike[str] | None) -> str | None:
    if model_dir is None or not (Path(model_dir) / TORCHSCRIPT_FILE).is_file():
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
    import warnings

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
