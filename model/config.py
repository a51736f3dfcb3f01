"""What defines a trained counting model apart from its weights: ``config.json`` (torch-free).

Serving reads the config, checks the weights' hash and preprocesses with it before (and often
without) any network is built: the local model server runs on ONNX Runtime with no torch
installed. The network itself is defined in ``model/network.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.ranges import Conformal

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite checkpoints were trained on TF's (x - 127) / 128 scaling.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

DEFAULT_ARCH = "efficientnet_lite0"
DECODINGS = ("argmax", "expected")
RESIZE_POLICIES = ("squash",)


class ModelLoadError(RuntimeError):
    """The weights or the config on disk cannot be turned into a working network."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    """What a backbone needs from the outside world: its native input size and normalisation."""

    image_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dropout: float


ARCHS: dict[str, ArchSpec] = {
    "efficientnet_lite0": ArchSpec((224, 224), LITE_MEAN, LITE_STD, 0.2),
    "efficientnet_lite1": ArchSpec((240, 240), LITE_MEAN, LITE_STD, 0.2),
    "efficientnet_lite2": ArchSpec((260, 260), LITE_MEAN, LITE_STD, 0.3),
    "resnet50": ArchSpec((224, 224), IMAGENET_MEAN, IMAGENET_STD, 0.2),
    "mobilenet_v3_large": ArchSpec((224, 224), IMAGENET_MEAN, IMAGENET_STD, 0.2),
}


@dataclass
class ModelConfig:
    """Everything that defines a trained counting model apart from its weights (``config.json``)."""

    arch: str = DEFAULT_ARCH
    num_classes: int = 6
    top_class_open: bool = True
    image_size: tuple[int, int] = (224, 224)  # (H, W) fed to the network
    resize: str = "squash"
    mean: tuple[float, float, float] = LITE_MEAN
    std: tuple[float, float, float] = LITE_STD
    decoding: str = "argmax"
    temperature: float = 1.0
    dropout: float = 0.2
    version: str = ""
    weights_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    #: Split-conformal calibration of the count ranges (model.ranges.Conformal.to_dict()); None:
    #: the records carry no range. Left out of config.json when None, so such a config reads as before.
    conformal: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # JSON gives lists; keep tuples so configs compare and hash the same way either side.
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.mean = (float(self.mean[0]), float(self.mean[1]), float(self.mean[2]))
        self.std = (float(self.std[0]), float(self.std[1]), float(self.std[2]))
        self.validate()
        if not self.version:
            self.version = f"bincount-{self.arch}-untrained"

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {sorted(ARCHS)}")
        if self.num_classes < 2:
            raise ValueError("num_classes must be at least 2")
        if min(self.image_size) < 32:
            raise ValueError(f"image_size {self.image_size} is too small (minimum 32x32)")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"unknown resize policy {self.resize!r}; choose one of {RESIZE_POLICIES}")
        if self.decoding not in DECODINGS:
            raise ValueError(f"unknown decoding {self.decoding!r}; choose one of {DECODINGS}")
        if not self.temperature > 0:
            raise ValueError("temperature must be positive")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.conformal is not None:
            Conformal.from_dict(self.conformal)  # refuses a calibration this code cannot read

    def ranges(self) -> Conformal | None:
        """The range calibration serving applies, or None when the model has none."""
        return None if self.conformal is None else Conformal.from_dict(self.conformal)

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> ModelConfig:
        """A config with the backbone's native input size, normalisation and dropout."""
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
        spec = ARCHS[arch]
        values: dict[str, Any] = {
            "arch": arch,
            "image_size": spec.image_size,
            "mean": spec.mean,
            "std": spec.std,
            "dropout": spec.dropout,
        }
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        if self.conformal is None:
            del data["conformal"]
        return data

    def to_json(self) -> str:
        """Indented JSON, each list of the range calibration's scores on one line (hundreds of numbers)."""
        data = self.to_dict()
        lists: dict[str, str] = {}
        if self.conformal is not None:
            scores = data["conformal"]["scores"] = dict(data["conformal"]["scores"])
            for key, values in scores.items():
                lists[f"@scores:{key}@"] = json.dumps(values)
                scores[key] = f"@scores:{key}@"
        text = json.dumps(data, indent=2, sort_keys=False)
        for placeholder, values in lists.items():
            text = text.replace(json.dumps(placeholder), values)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            # A config written by a newer version must not be half-understood silently.
            raise ValueError(f"unknown config fields: {unknown}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelConfig:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_config(model_dir: str | os.PathLike[str]) -> ModelConfig:
    """``config.json`` of a model directory, after checking that ``model.pt`` is the file it names.

    A config is never paired with the wrong weights, whichever runtime serves them.
    """
    return read_config(Path(model_dir) / WEIGHTS_FILE, Path(model_dir) / CONFIG_FILE)


def read_config(weights_path: Path, config_path: Path) -> ModelConfig:
    """``config_path`` read and ``weights_path`` checked against it; :class:`ModelLoadError` if not."""
    try:
        config = ModelConfig.load(config_path)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"cannot read model config {config_path}: {exc}") from exc
    check_weights(weights_path, config, config_path)
    return config


def check_weights(weights_path: Path, config: ModelConfig, config_path: Path) -> None:
    """Raise :class:`ModelLoadError` unless ``weights_path`` exists and has the config's sha256."""
    if not weights_path.is_file():
        raise ModelLoadError(f"weights file {weights_path} does not exist")
    if config.weights_sha256:
        actual = sha256_file(weights_path)
        if actual != config.weights_sha256:
            raise ModelLoadError(
                f"{weights_path} has sha256 {actual}, but {config_path} expects {config.weights_sha256}"
            )
