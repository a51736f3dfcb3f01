"""The trained default model in ``model/weights/``: loads, matches its checksum, answers stably.

Accuracy is measured by ``python -m training.evaluate`` (README, model card), never asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from shipped_expectations import RECORD, WEIGHTS_DIR, predict_shipped

from model.config import ModelConfig, sha256_file
from model.network import load_state

MAX_BYTES = 16 * 1024 * 1024


def test_shipped_weights_are_small_and_match_their_checksum() -> None:
    config = ModelConfig.load(WEIGHTS_DIR / "config.json")
    weights = WEIGHTS_DIR / "model.pt"
    assert weights.stat().st_size <= MAX_BYTES
    assert config.weights_sha256 == sha256_file(weights)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}


@pytest.mark.slow
def test_shipped_weights_load_into_the_one_network_definition() -> None:
    network, config = load_state(WEIGHTS_DIR)
    assert config.num_classes == 6 and config.top_class_open
    assert config.training.get("command"), "the model card's training command lives in the config too"
    logits = network.eval()(torch.zeros(1, 3, *config.image_size))
    assert logits.shape == (1, config.num_classes)


def test_a_tampered_weights_file_is_refused(tmp_path) -> None:
    (tmp_path / "config.json").write_text((WEIGHTS_DIR / "config.json").read_text())
    data = bytearray((WEIGHTS_DIR / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "model.pt").write_bytes(bytes(data))
    with pytest.raises(Exception, match=r"(?i)sha256|checksum"):
        load_state(tmp_path)


@pytest.mark.parametrize("runtime", ["torch", "torchscript", "onnx"])
def test_shipped_model_gives_the_recorded_answers(runtime: str, shipped_artifact: Path) -> None:
    recorded = json.loads(RECORD.read_text())
    assert recorded["weights_sha256"] == ModelConfig.load(WEIGHTS_DIR / "config.json").weights_sha256, (
        "model/weights changed: rerun tests/model/shipped_expectations.py and update the model card"
    )
    records = predict_shipped(runtime, shipped_artifact)
    for got, want in zip(records, recorded["records"], strict=True):
        assert got["count"] == want["count"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=2e-3)
        assert got["model_version"] == want["model_version"]
        # a probability 2e-3 apart (ONNX vs torch) may pass a few of the 245 calibration scores
        assert got["count_p_values"] == pytest.approx(want["count_p_values"], abs=0.02)


def test_shipped_config_carries_a_range_calibration_on_photos_it_never_saw() -> None:
    config = ModelConfig.load(WEIGHTS_DIR / "config.json")
    ranges = config.ranges()
    assert ranges is not None and ranges.groups == "predicted_count"
    record = config.training["conformal"]
    assert len(ranges.scores["all"]) == record["n_calibration"]
    assert record["calibration_ids_sha256"] != record["test_ids_sha256"]


@pytest.mark.slow
def test_the_shipped_onnx_graph_is_the_shipped_weights() -> None:
    """``model/weights/model.onnx`` (what packs without torch) names the weights' hash and computes
    their logits within 1e-4 (fp32); after new weights: ``python -m model.package --refresh-shipped-onnx``."""
    ort = pytest.importorskip("onnxruntime")
    network, config = load_state(WEIGHTS_DIR)
    session = ort.InferenceSession(str(WEIGHTS_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["weights_sha256"] == config.weights_sha256
    batch = torch.rand(3, 3, *config.image_size) * 4 - 2
    with torch.inference_mode():
        eager = network.eval()(batch).numpy()
    (served,) = session.run(["logits"], {"input": batch.numpy()})
    assert abs(served - eager).max() <= 1e-4
