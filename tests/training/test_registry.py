"""The local model registry (entries, promote, rollback, served artifact) and its AWS mapping."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from training.promotion import registry


def _artifact(path: Path, version: str, parent: str | None = None) -> Path:
    """A model.tar.gz holding only config.json: all the registry reads."""
    training: dict[str, Any] = {"metrics": {"test": {"accuracy": 0.4}}}
    if parent:
        training["init_from"] = {"version": parent}
    config = {"version": version, "weights_sha256": "ab" * 32, "training": training}
    data = json.dumps(config).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    registry.register(root, _artifact(tmp_path / "a" / "model.tar.gz", "v1"), "approved", "alice")
    registry.promote(root, "v1")
    return root


def test_register_copies_the_artifact_and_writes_one_entry(reg: Path, tmp_path: Path) -> None:
    entry = registry.register(reg, _artifact(tmp_path / "b" / "model.tar.gz", "v2", parent="v1"))
    assert entry["status"] == "candidate" and entry["parent"] == "v1"
    assert Path(entry["artifact"]) == reg / "artifacts" / "v2" / "model.tar.gz"
    assert len(entry["sha256"]) == 64 and entry["metrics"] == {"test": {"accuracy": 0.4}}
    assert [e["version"] for e in registry.entries(reg)] == ["v1", "v2"]


def test_only_approved_versions_are_promoted(reg: Path, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "b" / "model.tar.gz", "v2")
    registry.record_gate(
        reg, artifact, {"verdict": "refuse", "promoted": False, "reasons": ["worse"]}, "gate"
    )
    with pytest.raises(registry.Refused, match="v2 is rejected \\(worse\\)"):
        registry.promote(reg, "v2")
    assert registry.served_version(reg) == "v1"


def test_promote_then_rollback_serves_the_previous_version(reg: Path, tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "b" / "model.tar.gz", "v2")
    registry.record_gate(reg, artifact, {"verdict": "promote", "promoted": True, "reasons": []}, "gate")
    registry.promote(reg, "v2", "bob")
    assert registry.served_artifact(reg) == reg / "artifacts" / "v2" / "model.tar.gz"
    assert registry.load_entry(reg, "v1")["status"] == "archived"
    assert registry.load_entry(reg, "v2")["approved_by"] == "bob"

    assert registry.main(["--registry", str(reg), "rollback"]) == 0
    assert registry.served_version(reg) == "v1"
    assert registry.load_entry(reg, "v2")["status"] == "archived"
    assert registry.load_entry(reg, "v1")["status"] == "approved"
    log = json.loads((reg / "served.json").read_text())["log"]
    assert [e["action"] for e in log] == ["promote", "promote", "rollback"]


def test_cli_answers_in_one_line(reg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert registry.main(["--registry", str(reg), "rollback"]) == 1  # only one version ever served
    assert registry.main(["--registry", str(reg), "promote", "v9"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "python -m training.promotion.registry: error: nothing to roll back to: "
        "fewer than two versions have been served",
        f"python -m training.promotion.registry: error: version v9 is not in the registry {reg}",
    ]
    assert registry.main(["--registry", str(reg), "list"]) == 0
    assert "* v1" in capsys.readouterr().out
    assert registry.main(["--registry", str(tmp_path / "empty"), "served"]) == 1


def test_create_model_package_request_is_valid_for_sagemaker(reg: Path) -> None:
    entry = registry.load_entry(reg, "v1")
    entry["gate"] = {
        "verdict": "promote",
        "gate_set": {"difference": {"accuracy": 0.031}, "mcnemar": {"p": 0.01}},
    }
    request = registry.create_model_package_request(
        entry,
        "bincount",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312",
        "s3://bucket/models/v1/model.tar.gz",
    )
    assert request["ModelApprovalStatus"] == "Approved"
    assert request["CustomerMetadataProperties"]["gate_accuracy_diff"] == "0.0310"
    client = boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/bincount/1"
    with Stubber(client) as stub:  # validates the request against the service model: no AWS call
        stub.add_response("create_model_package", {"ModelPackageArn": arn}, request)
        stub.add_response(
            "update_model_package",
            {"ModelPackageArn": arn},
            registry.update_approval_request(arn, "rejected"),
        )
        assert client.create_model_package(**request)["ModelPackageArn"] == arn
        client.update_model_package(**registry.update_approval_request(arn, "rejected"))


# --- the local stack follows the registry (local.emulator.model_swap) ---------------------------------------
def test_the_stack_watcher_serves_each_promotion_and_rollback_once(reg: Path, tmp_path: Path) -> None:
    from local.emulator.model_swap import RegistryWatcher

    registry.register(reg, _artifact(tmp_path / "b" / "model.tar.gz", "v2"), "approved", "bob")
    served: list[str] = []
    watcher = RegistryWatcher(reg, registry.served_artifact(reg), lambda a: served.append(a.parent.name))
    assert not watcher.check_once()
    registry.promote(reg, "v2")
    assert watcher.check_once() and not watcher.check_once()
    registry.rollback(reg)
    assert watcher.check_once()
    assert served == ["v2", "v1"]


def test_a_model_that_does_not_start_leaves_the_old_one_serving_and_is_not_retried(
    reg: Path, tmp_path: Path
) -> None:
    from local.emulator.model_swap import RegistryWatcher

    registry.register(reg, _artifact(tmp_path / "b" / "model.tar.gz", "v2"), "approved", "bob")
    calls: list[Path] = []

    def broken(artifact: Path) -> None:
        calls.append(artifact)
        raise RuntimeError("serving process exited before /ping answered")

    watcher = RegistryWatcher(reg, registry.served_artifact(reg), broken)
    registry.promote(reg, "v2")
    assert not watcher.check_once() and not watcher.check_once()
    assert len(calls) == 1
    assert watcher.serving is not None and watcher.serving.parent.name == "v1"
