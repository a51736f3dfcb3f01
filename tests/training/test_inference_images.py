"""The serving-image block of template.yaml against the SageMaker SDK's image URI table (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.emulator.template import load_template
from training.sagemaker import inference_images

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
REFERENCE = inference_images.REFERENCE_TYPES


@pytest.fixture(scope="module")
def generated() -> str:
    return inference_images.generated_text()


def test_template_block_is_what_the_sdk_answers_for_every_region(generated: str) -> None:
    """Fails when the SDK's table moves on or the block was edited by hand: regenerate it."""
    assert inference_images.current_block(TEMPLATE.read_text()) == generated, (
        "run: python -m training.sagemaker.inference_images --write template.yaml"
    )


def test_mapping_covers_all_regions_with_both_variants() -> None:
    images = load_template(TEMPLATE)["Mappings"]["InferenceImages"]
    assert len(images) >= 39 and {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= set(images)
    accounts = set()
    for region, uris in images.items():
        assert uris == {kind: inference_images.image_uri(region, t) for kind, t in REFERENCE.items()}
        assert ":2.6-cpu-py312" in uris["cpu"] and ":2.6-gpu-py312" in uris["gpu"]
        # the ECR pull statement takes the account from the cpu URI: both variants share it
        assert uris["cpu"].split(".")[0] == uris["gpu"].split(".")[0]
        assert f".{region}." in uris["cpu"]
        accounts.add(uris["cpu"].split(".")[0])
    assert len(accounts) > 1  # one account's literal URI would be wrong in many regions


def test_instance_types_pick_the_variant_the_sdk_picks() -> None:
    template = load_template(TEMPLATE)
    mapping = template["Mappings"]["InstanceTypes"]
    assert mapping["ml.g4dn.xlarge"]["Accelerator"] == "gpu"
    assert mapping["ml.p3.2xlarge"]["Accelerator"] == "gpu"
    assert mapping["ml.c5.xlarge"]["Accelerator"] == "cpu"
    for parameter in ("InstanceType", "RealtimeInstanceType"):
        assert template["Parameters"][parameter]["AllowedValues"] == list(mapping), parameter
    assert template["Conditions"]["GpuInstanceType"] == {
        "Fn::Equals": [{"Fn::FindInMap": ["InstanceTypes", {"Ref": "InstanceType"}, "Accelerator"]}, "gpu"]
    }


def test_accelerator_reads_the_image_tag() -> None:
    assert inference_images.accelerator("a.dkr.ecr.r.amazonaws.com/pytorch-inference:2.6-gpu-py312") == "gpu"
    with pytest.raises(ValueError, match="neither"):
        inference_images.accelerator("a.dkr.ecr.r.amazonaws.com/pytorch-inference-neuron:2.6-py312")


def test_write_replaces_only_the_block(tmp_path: Path, generated: str) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        f"Parameters: {{}}\n{inference_images.BEGIN}\nstale: 1\n{inference_images.END}\nResources: {{}}\n"
    )
    assert inference_images.main(["--write", str(template)]) == 0
    assert template.read_text() == f"Parameters: {{}}\n{generated}Resources: {{}}\n"


def test_write_refuses_a_template_without_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Resources: {}\n")
    assert inference_images.main(["--write", str(template)]) == 2
    assert "no generated block" in capsys.readouterr().err
    assert inference_images.main(["--write", str(tmp_path / "missing.yaml")]) == 2
