"""SageMaker serving handlers for the bin counting model (shipped as ``code/inference.py``).

The SageMaker PyTorch inference toolkit calls ``model_fn`` once per worker, then
``input_fn -> predict_fn -> output_fn`` once per request (Batch Transform sends one photo per
request). A custom handler service or the local executor may give ``predict_fn`` a list of
decoded inputs instead; those run as one batched forward pass.

Bad input never raises: in Batch Transform one failing request fails the whole job. ``input_fn``
turns every problem with a request into a :class:`RequestError`, ``predict_fn`` turns it into an
error record (``{"error": {"code", "message"}, "model_version"}``), and a log line says why. Only a
model that cannot load raises, from ``model_fn``, so the container never reports healthy with it.
The records' schema has one home, ``functions/bincount/serving_record.schema.json`` (the collector
reads it); ``tests/model/test_serving_record_writer.py`` holds these handlers to it.

There is deliberately no URL fetching: a request carries the image bytes, nothing else.

Configuration is read once from the environment (see :class:`ServingSettings`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Inside the artifact this file sits in code/ next to code/model/; make that importable even when
# the server imports us by path without putting code/ on sys.path.
_CODE_DIR = str(Path(__file__).resolve().parent)
if (Path(_CODE_DIR) / "model" / "network.py").is_file() and _CODE_DIR not in sys.path:
    sys.path.insert(0, _CODE_DIR)
# ONNX Runtime carried in the artifact (model/package.py --onnxruntime-wheel): importable when the
# container has none of its own and the wheel was built for this Python; else a torch runtime serves.
_VENDORED = Path(_CODE_DIR) / "lib"
_VENDORED_FOR = (_VENDORED / "PYTHON").read_text().strip() if (_VENDORED / "PYTHON").is_file() else ""
_PYTHON = "{}.{}".format(*sys.version_info[:2])
if _VENDORED_FOR == _PYTHON and importlib.util.find_spec("onnxruntime") is None:
    sys.path.append(str(_VENDORED))

from model.config import ModelConfig, load_config  # noqa: E402
from model.preprocess import (  # noqa: E402
    DEFAULT_LIMITS,
    CorruptImageError,
    DecodeLimits,
    InputError,
    check_content_type,
    decode_image,
    normalise,
    resize_for_model,
)
from model.ranges import DEFAULT_RANGE_LEVEL, Conformal, range_fields  # noqa: E402
from model.runtime import Runtime, select_runtime  # noqa: E402

log = logging.getLogger("bincount.inference")

INTERNAL_ERROR = "internal_error"
#: Every error code a record from this module can carry: the schema's ``error_code`` enum, exactly.
ERROR_CODES = frozenset({kind.code for kind in InputError.__subclasses__()} | {INTERNAL_ERROR})

JSON = "application/json"
JSON_LINES = "application/jsonlines"
_JSON_LINES_ALIASES = frozenset(
    {JSON_LINES, "application/x-jsonlines", "application/jsonl", "application/x-ndjson"}
)


def _env_level(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        level = float(raw) if raw else default
    except ValueError:
        level = -1.0
    if not 0.0 < level < 1.0:
        log.warning("ignoring %s=%r: not a level between 0 and 1", name, raw)
        return default
    return level


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        log.warning("ignoring %s=%r: not an integer", name, raw)
        return default


#: Present when the NVIDIA kernel driver is loaded: the only machines where ``auto`` can mean a GPU.
NVIDIA_DRIVER = "/proc/driver/nvidia"


@dataclass(frozen=True)
class ServingSettings:
    """Knobs from environment variables, read once when the module loads.

    ``BINCOUNT_DEVICE`` (``auto``/``cpu``/``cuda``/``cuda:N``), ``BINCOUNT_RUNTIME``
    (``auto``/``onnx``/``torch``), ``BINCOUNT_THREADS`` (intra-op threads for the forward pass;
    default: the CPUs divided among ``SAGEMAKER_MODEL_SERVER_WORKERS``), ``BINCOUNT_MAX_BATCH``
    (largest forward batch), ``BINCOUNT_ORT_SPIN`` (let ONNX Runtime's threads spin between
    runs: faster for large lists, slower one request at a time), ``BINCOUNT_MAX_PIXELS`` /
    ``BINCOUNT_MAX_SIDE`` / ``BINCOUNT_DECODE_BUDGET_MB`` / ``BINCOUNT_REDUCE_MIN_SIDE`` (decode
    limits, :class:`model.preprocess.DecodeLimits`), ``BINCOUNT_RANGE_LEVEL`` (coverage level of the
    records' ``count_low``..``count_high``, default 0.90; the p-values serve any other level).
    """

    device: str = "auto"
    runtime: str = "auto"
    threads: int = 1
    max_batch: int = 32
    ort_spin: bool = False
    limits: DecodeLimits = DEFAULT_LIMITS
    range_level: float = DEFAULT_RANGE_LEVEL

    @classmethod
    def from_env(cls) -> ServingSettings:
        workers = max(1, _env_int("SAGEMAKER_MODEL_SERVER_WORKERS", 1))
        default_threads = max(1, (os.cpu_count() or 1) // workers)
        defaults = DecodeLimits()
        return cls(
            device=os.environ.get("BINCOUNT_DEVICE", "auto").strip().lower() or "auto",
            runtime=os.environ.get("BINCOUNT_RUNTIME", "auto").strip().lower() or "auto",
            threads=max(1, _env_int("BINCOUNT_THREADS", default_threads)),
            max_batch=max(1, _env_int("BINCOUNT_MAX_BATCH", 32)),
            ort_spin=os.environ.get("BINCOUNT_ORT_SPIN", "0").strip().lower() in ("1", "true", "yes"),
            limits=DecodeLimits(
                max_pixels=_env_int("BINCOUNT_MAX_PIXELS", defaults.max_pixels),
                max_side=_env_int("BINCOUNT_MAX_SIDE", defaults.max_side),
                max_decode_bytes=_env_int("BINCOUNT_DECODE_BUDGET_MB", defaults.max_decode_bytes // 2**20)
                * 2**20,
                reduce_min_side=_env_int("BINCOUNT_REDUCE_MIN_SIDE", defaults.reduce_min_side),
            ),
            range_level=_env_level("BINCOUNT_RANGE_LEVEL", DEFAULT_RANGE_LEVEL),
        )

    def resolved_device(self) -> str:
        """``cpu`` or ``cuda:N``; without torch installed there is no GPU runtime, so ``cpu``.

        ``auto`` on a machine without an NVIDIA driver is ``cpu`` without importing torch (seconds
        of start-up and hundreds of MB per worker that the ONNX Runtime path never uses)."""
        if self.device == "cpu" or (self.device == "auto" and not Path(NVIDIA_DRIVER).exists()):
            return "cpu"
        try:
            from model.torch_runtime import resolve_device
        except ImportError:
            if self.device != "auto":
                log.warning("BINCOUNT_DEVICE=%s but torch is not installed; using the CPU", self.device)
            return "cpu"
        return resolve_device(self.device)


SETTINGS = ServingSettings.from_env()


@dataclass(frozen=True)
class RequestError:
    """Why a request cannot be answered with a count; becomes an error record."""

    code: str
    message: str


@dataclass
class CountingModel:
    """What ``model_fn`` returns: the config, the runtime that runs the network, the range calibration."""

    config: ModelConfig
    runtime: Runtime
    settings: ServingSettings
    ranges: Conformal | None = None

    @property
    def version(self) -> str:
        return self.config.version


Record = dict[str, Any]
InputData = Image.Image | RequestError


# --------------------------------------------------------------------------------------------
# The four handlers
# --------------------------------------------------------------------------------------------


def model_fn(model_dir: str, context: Any = None) -> CountingModel:
    """Load ``model.pt`` + ``config.json`` (hash-checked) and pick the runtime; raises if broken."""
    return load_model(model_dir, worker_settings(SETTINGS, context))


def worker_settings(settings: ServingSettings, context: Any) -> ServingSettings:
    """On a multi-GPU instance, this worker's GPU: TorchServe gives worker *i* ``gpu_id`` *i mod GPUs*
    (model/instances.py runs one worker per vCPU); without it every worker would share ``cuda:0``."""
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id")
    if settings.device != "auto" or gpu_id is None:
        return settings
    try:
        from model.torch_runtime import gpu_count
    except ImportError:
        return settings
    gpus = gpu_count()
    return settings if gpus < 2 else replace(settings, device=f"cuda:{int(gpu_id) % gpus}")


def load_model(model_dir: str | os.PathLike[str], settings: ServingSettings) -> CountingModel:
    """``model_fn`` with explicit settings (the benchmark compares runtimes with it)."""
    config = load_config(model_dir)
    runtime = select_runtime(
        config, model_dir, settings.runtime, settings.resolved_device(), settings.threads, settings.ort_spin
    )
    log.info(
        "loaded %s (%s, %d classes, input %s) on %s, %d threads",
        config.version,
        config.arch,
        config.num_classes,
        "x".join(map(str, config.image_size)),
        runtime.name,
        settings.threads,
    )
    if _VENDORED_FOR and _VENDORED_FOR != _PYTHON and not runtime.name.startswith("onnxruntime"):
        # (a GPU, or an ONNX Runtime that would not load, is said by select_runtime's own lines)
        log.warning(
            "the artifact carries ONNX Runtime for Python %s; this is Python %s: %s serves instead",
            _VENDORED_FOR,
            _PYTHON,
            runtime.name,
        )
    ranges = config.ranges()
    if ranges is None:
        log.info("this artifact has no range calibration: records carry no range")
    return CountingModel(config=config, runtime=runtime, settings=settings, ranges=ranges)


def input_fn(request_body: Any, request_content_type: str | None = None, context: Any = None) -> InputData:
    """Request bytes -> the upright RGB photo, or the :class:`RequestError` saying why not."""
    try:
        check_content_type(request_content_type)
        return decode_image(_as_bytes(request_body), SETTINGS.limits)
    except InputError as error:
        log.warning("rejected request (%s): %s", error.code, error.message)
        return RequestError(error.code, error.message)
    except Exception as error:  # anything unforeseen is still one bad record, not a failed job
        log.exception("unexpected error while decoding a request")
        return RequestError(INTERNAL_ERROR, f"{type(error).__name__}: {error}")


def predict_fn(input_data: InputData | Sequence[InputData], model: CountingModel, context: Any = None) -> Any:
    """Count items; one record for one input, a list of records (one batched forward) for a list."""
    if isinstance(input_data, list | tuple):
        return predict_records(list(input_data), model)
    return predict_records([input_data], model)[0]


def output_fn(prediction: Any, accept: str | None = None, context: Any = None) -> tuple[str, str]:
    """Records -> ``application/json`` (default) or ``application/jsonlines``; returns ``(body, type)``."""
    kind = (accept or JSON).split(";", 1)[0].strip().lower()
    records = prediction if isinstance(prediction, list) else [prediction]
    if kind in _JSON_LINES_ALIASES:
        return "".join(json.dumps(record) + "\n" for record in records), JSON_LINES
    if kind not in (JSON, "*/*", ""):
        log.warning("Accept %r is not supported; answering %s", accept, JSON)
    return json.dumps(prediction), JSON


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


def predict_records(inputs: list[Any], model: CountingModel) -> list[Record]:
    records: list[Record | None] = [None] * len(inputs)
    images: list[tuple[int, Image.Image]] = []
    for index, item in enumerate(inputs):
        if isinstance(item, bytes | bytearray | memoryview):
            item = input_fn(item, "application/x-image")
        if isinstance(item, Image.Image):
            images.append((index, item))
        elif isinstance(item, RequestError):
            records[index] = error_record(item.code, item.message, model.version)
        else:
            records[index] = error_record(
                INTERNAL_ERROR, f"predict_fn got {type(item).__name__}", model.version
            )
    step = model.settings.max_batch
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        try:
            probabilities = _forward([image for _, image in chunk], model)
        except Exception as error:  # one broken batch must not fail the whole transform job
            log.exception("forward pass failed for %d image(s)", len(chunk))
            for index, _ in chunk:
                records[index] = error_record(
                    INTERNAL_ERROR, f"{type(error).__name__}: {error}", model.version
                )
            continue
        for (index, _), row in zip(chunk, probabilities, strict=True):
            records[index] = count_record(
                row.tolist(), model.config, model.ranges, model.settings.range_level
            )
    return [record for record in records if record is not None]


def _forward(images: list[Image.Image], model: CountingModel) -> np.ndarray:
    """Softmax of the temperature-scaled logits, in float32 as training computes it."""
    batch = np.stack([resize_for_model(image, model.config) for image in images])
    logits = model.runtime(normalise(batch, model.config)).astype(np.float32)
    logits /= np.float32(model.config.temperature)
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def count_record(
    probabilities: Sequence[float],
    config: ModelConfig,
    ranges: Conformal | None = None,
    range_level: float = DEFAULT_RANGE_LEVEL,
) -> Record:
    """One image's result: the decoded count, its probability, the whole distribution and, when
    the model is calibrated, each count's conformal p-value and the range at ``range_level``.

    ``ranges``: the parsed ``config.conformal`` (``model_fn`` parses it once); parsed here when
    not given.
    """
    if config.decoding == "expected":
        expected = sum(k * p for k, p in enumerate(probabilities))
        count = min(max(round(expected), 0), len(probabilities) - 1)
    else:
        count = max(range(len(probabilities)), key=probabilities.__getitem__)
    printed = [round(float(p), 4) for p in probabilities]
    record: Record = {
        "count": int(count),
        "confidence": printed[count],
        "probabilities": printed,
        "count_is_lower_bound": bool(config.top_class_open and count == len(probabilities) - 1),
        "model_version": config.version,
    }
    ranges = ranges if ranges is not None else config.ranges()
    if ranges is not None:
        record.update(range_fields(ranges, printed, int(count), range_level, config.top_class_open))
    return record


def error_record(code: str, message: str, model_version: str) -> Record:
    return {"error": {"code": code, "message": message}, "model_version": model_version}


def _as_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        # A text body cannot hold an image; pass it on so the decoder names the problem.
        return body.encode("utf-8", errors="replace")
    read = getattr(body, "read", None)
    if callable(read):
        return bytes(read())
    raise CorruptImageError(f"request body of type {type(body).__name__} is not bytes")
