"""``model.package``: the artifact layout, the CLI round trip and a clean import inside the container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from model import package
from model.network import ModelConfig, build_model, half_state_dict, sha256_file

pytestmark = pytest.mark.slow  # every test here packs or builds a network

EXPECTED_MEMBERS = {
    "model.pt",
    "config.json",
    "code/inference.py",
    "code/requirements.txt",
    "code/model/__init__.py",
    "code/model/network.py",
    "code/model/preprocess.py",
    "code/model/runtime.py",
}


def test_artifact_holds_weights_config_and_code(packed_model: Path, model_dir: Path) -> None:
    with tarfile.open(packed_model) as archive:
        names = set(archive.getnames())
    assert names >= EXPECTED_MEMBERS
    assert names - EXPECTED_MEMBERS <= {"model.onnx"}
    config = json.loads((model_dir / "config.json").read_text())
    assert config["weights_sha256"] == sha256_file(model_dir / "model.pt")
    assert config["arch"] == "efficientnet_lite0" and config["image_size"] == [224, 224]
    weights = torch.load(model_dir / "model.pt", weights_only=True)
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    requirements = (model_dir / "code/requirements.txt").read_text().splitlines()
    assert all(not line.strip() or line.startswith("#") for line in requirements)


def test_code_in_the_artifact_imports_and_serves_from_a_clean_sys_path(
    model_dir: Path, bin_jpeg: bytes
) -> None:
    """As the container runs it: only code/ importable, the repository nowhere on sys.path."""
    (model_dir.parent / "photo.jpg").write_bytes(bin_jpeg)
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(model_dir / 'code')!r})\n"
        "import inference, model.network\n"
        f"assert model.network.__file__.startswith({str(model_dir / 'code')!r}), model.network.__file__\n"
        f"loaded = inference.model_fn({str(model_dir)!r})\n"
        f"body = open({str(model_dir.parent / 'photo.jpg')!r}, 'rb').read()\n"
        "record = inference.predict_fn(inference.input_fn(body, 'image/jpeg'), loaded)\n"
        "out, kind = inference.output_fn(record, 'application/json')\n"
        "print(kind, out)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BINCOUNT_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=model_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    kind, _, payload = done.stdout.strip().partition(" ")
    assert kind == "application/json"
    assert json.loads(payload)["model_version"] == "bincount-test-lite0"


def test_cli_round_trip_packs_given_weights(tmp_path: Path) -> None:
    config = ModelConfig.for_arch(
        "efficientnet_lite0", num_classes=5, version="trained-1", training={"val_acc": 0.5}
    )
    torch.manual_seed(1)
    network = build_model(config)
    torch.save(half_state_dict(network), tmp_path / "weights.pt")
    config.save(tmp_path / "config.json")
    out = tmp_path / "out" / "model.tar.gz"
    args = [
        "--out",
        str(out),
        "--weights",
        str(tmp_path / "weights.pt"),
        "--config",
        str(tmp_path / "config.json"),
    ]
    assert package.main([*args, "--no-onnx"]) == 0
    extracted = tmp_path / "extracted"
    with tarfile.open(out) as archive:
        archive.extractall(extracted, filter="data")
    from model.inference import SETTINGS, input_fn, load_model, predict_fn
    from model.network import load_state

    loaded, loaded_config = load_state(extracted)
    assert loaded_config.version == "trained-1" and loaded_config.training == {"val_acc": 0.5}
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), network.eval()(x), rtol=2e-2, atol=2e-2)
    served = load_model(extracted, SETTINGS)
    from imaging import draw_bin, encode

    record = predict_fn(input_fn(encode(draw_bin(4, seed=2)), "image/jpeg"), served)
    assert len(record["probabilities"]) == 5 and record["model_version"] == "trained-1"


def test_cli_without_weights_packs_pretrained_backbone_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package, "SHIPPED_WEIGHTS_DIR", tmp_path / "no-shipped-weights")
    out = tmp_path / "model.tar.gz"
    assert package.main(["--out", str(out), "--no-onnx"]) == 0
    assert "untrained head" in capsys.readouterr().out
    with tarfile.open(out) as archive:
        member = archive.extractfile("config.json")
        assert member is not None
        config = json.loads(member.read())
    assert config["arch"] == "efficientnet_lite0" and "untrained" in config["version"]


def test_cli_prefers_the_shipped_trained_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "weights"
    shipped.mkdir()
    config = ModelConfig(version="bincount-efficientnet_lite0-shipped")
    torch.save(half_state_dict(build_model(config)), shipped / "model.pt")
    config.weights_sha256 = sha256_file(shipped / "model.pt")
    config.save(shipped / "config.json")
    monkeypatch.setattr(package, "SHIPPED_WEIGHTS_DIR", shipped)
    _state, resolved, source = package.resolve_inputs(None, None, None)
    assert resolved.version == "bincount-efficientnet_lite0-shipped"
    assert str(shipped / "model.pt") in source


def test_package_model_sets_the_hash_the_loader_checks(tmp_path: Path) -> None:
    config = ModelConfig(version="v")
    out = package.package_model(tmp_path / "m.tar.gz", build_model(config).state_dict(), config, onnx=False)
    with tarfile.open(out) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    assert config.weights_sha256 == sha256_file(tmp_path / "x" / "model.pt")
    assert not (tmp_path / "m.tar.gz.partial").exists()
