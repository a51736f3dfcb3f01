"""Where the forward pass runs: ONNX Runtime, else frozen TorchScript, else eager PyTorch.

Measured on the 2-core CPU of the development machine (docs/serving-cost.md): EfficientNet-Lite0
runs fastest under ONNX Runtime, most of all one image at a time. ``model.onnx`` is used when
``onnxruntime`` imports (installed, or carried in the artifact under ``code/lib/``, see
model/package.py), the file is in the artifact and it was exported from exactly these weights.
Otherwise the torch runtimes of ``model/torch_runtime.py`` serve: ``model.torchscript`` (traced
and frozen at packaging time, oneDNN-optimised at load) or eager PyTorch, and on a GPU eager fp16.
Anything that does not load falls back to the next runtime, and the log says which one serves.

This module imports no torch: the local model server serves ``model.onnx`` in a virtualenv
without it. Every runtime takes the float32 ``(N, 3, H, W)`` batch of
:func:`model.preprocess.normalise` and gives float32 logits as numpy arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from model.config import ModelConfig, ModelLoadError

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
    """Runs the network on a normalised float32 batch and returns float32 logits."""

    name: str
    #: ``cpu`` or ``cuda:N``: where the network runs.
    device: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxRuntime:
    """An ONNX Runtime CPU session over ``model.onnx``."""

    device = "cpu"

    def __init__(self, path: Path, threads: int, spin: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Spinning workers keep a core busy after each run, stealing it from the next request's
        # decode and resize; per-request serving is faster without (docs/serving-cost.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = f"onnxruntime-{ort.__version__}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(batch, dtype=np.float32)
        (logits,) = self.session.run([ONNX_OUTPUT], {ONNX_INPUT: array})
        return np.asarray(logits, dtype=np.float32)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def select_runtime(
    config: ModelConfig,
    model_dir: str | os.PathLike[str],
    preference: str = "auto",
    device: str = "cpu",
    threads: int = 1,
    spin: bool = False,
) -> Runtime:
    """The fastest runtime that works here; ``preference`` is one of :data:`RUNTIME_CHOICES`.

    ``auto`` on the CPU tries ONNX Runtime, then TorchScript, then eager PyTorch; ``onnx`` and
    ``torchscript`` start at that runtime. A runtime that cannot serve says why in the log and
    the next one is tried: a missing optional runtime must never stop a transform job. On a GPU
    the network runs eagerly in fp16 (the TorchScript graph is a frozen fp32 CPU graph). Raises
    :class:`model.config.ModelLoadError` only when nothing can serve (no ONNX Runtime and no torch).
    """
    if preference not in RUNTIME_CHOICES:
        log.warning("unknown runtime %r, using auto (choices: %s)", preference, ", ".join(RUNTIME_CHOICES))
        preference = "auto"
    if preference in ("auto", "onnx") and device == "cpu":
        reason = _onnx_unusable_reason(model_dir)
        if reason is None:
            onnx_runtime, reason = open_exported(
                Path(model_dir) / ONNX_FILE,
                lambda path: OnnxRuntime(path, threads, spin),
                config.weights_sha256,
                unnamed_ok=True,
            )
            if onnx_runtime is not None:
                return onnx_runtime
        log_not_used(preference == "onnx", "ONNX Runtime not used (%s)", reason)
    try:
        from model.torch_runtime import select_torch_runtime
    except ImportError as exc:
        raise ModelLoadError(
            f"nothing can serve this model: ONNX Runtime cannot ({ONNX_FILE}) and torch is missing ({exc})"
        ) from exc
    return select_torch_runtime(config, model_dir, preference, device, threads)


Exported = TypeVar("Exported", bound="ExportedRuntime")


class ExportedRuntime(Runtime, Protocol):
    """A runtime over a file exported at packaging time, which names the weights it came from."""

    metadata: dict[str, str]


def open_exported(
    path: Path, load: Callable[[Path], Exported], expected: str, *, unnamed_ok: bool
) -> tuple[Exported | None, str | None]:
    """``(runtime, None)`` when ``path`` loads and was exported from the ``expected`` weights,
    else ``(None, why not)``: a broken or foreign file falls back, never fails the job."""
    try:
        runtime = load(path)
    except Exception as exc:
        return None, f"cannot load {path.name}: {exc}"
    recorded = runtime.metadata.get("weights_sha256", "")
    reason = other_weights(path.name, recorded, expected, unnamed_ok=unnamed_ok)
    return (runtime, None) if reason is None else (None, reason)


def other_weights(file_name: str, recorded: str, expected: str, *, unnamed_ok: bool) -> str | None:
    """Why an exported file cannot serve these weights, or None when it names them (or, with
    ``unnamed_ok``, when it or the config names none)."""
    if recorded == expected or (unnamed_ok and not (recorded and expected)):
        return None
    return f"{file_name} was exported from other weights ({recorded[:12] or 'unnamed'})"


def log_not_used(asked_for: bool, message: str, reason: str | None) -> None:
    """A runtime that cannot serve: a warning when it was asked for by name, else a note."""
    log.log(logging.WARNING if asked_for else logging.INFO, message, reason)


def _onnx_unusable_reason(model_dir: str | os.PathLike[str]) -> str | None:
    if not (Path(model_dir) / ONNX_FILE).is_file():
        return f"no {ONNX_FILE} in the model directory"
    if not onnxruntime_available():
        return "onnxruntime is not installed"
    return None
