"""The instance table: one rule for workers, threads and requests in flight, mirrored by template.yaml."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from local.emulator.template import load_template
from model import instances
from model.inference import SETTINGS, worker_settings
from training.sagemaker.inference_images import INSTANCE_TYPES

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_template_mapping_equals_the_python_table() -> None:
    mapping = load_template(TEMPLATE)["Mappings"]["InstanceTypes"]
    assert list(mapping) == list(instances.INSTANCE_SPECS) == list(INSTANCE_TYPES)
    for instance_type, row in mapping.items():
        plan = instances.plan_for(instance_type)
        spec = instances.INSTANCE_SPECS[instance_type]
        assert (int(row["VCpus"]), int(row["Gpus"])) == (spec.vcpus, spec.gpus), instance_type
        assert int(row["Workers"]) == plan.workers, instance_type
        assert int(row["ThreadsPerWorker"]) == plan.threads_per_worker, instance_type
        assert int(row["MaxConcurrentTransforms"]) == plan.max_concurrent_transforms, instance_type
        assert (row["Accelerator"] == "gpu") == (spec.gpus > 0), instance_type


@pytest.mark.parametrize(
    ("vcpus", "gpus", "plan"),
    [
        (2, 0, instances.ServingPlan(2, 1, 2)),
        (4, 1, instances.ServingPlan(4, 1, 4)),
        (48, 4, instances.ServingPlan(48, 1, 48)),
        (1, 0, instances.ServingPlan(1, 1, 1)),
    ],
)
def test_one_single_threaded_worker_per_vcpu(vcpus: int, gpus: int, plan: instances.ServingPlan) -> None:
    assert instances.serving_plan(vcpus, gpus) == plan


def test_template_takes_workers_and_concurrency_from_the_table_unless_given() -> None:
    template = load_template(TEMPLATE)
    parameters = template["Parameters"]
    assert parameters["ModelServerWorkers"]["Default"] == 0
    assert parameters["MaxConcurrentTransforms"]["Default"] == 0
    environment = template["Resources"]["BinCountModel"]["Properties"]["PrimaryContainer"]["Environment"]
    workers = environment["SAGEMAKER_MODEL_SERVER_WORKERS"]["Fn::If"]
    assert workers[0] == "WorkersFromInstanceType"
    assert workers[1] == {"Fn::FindInMap": ["InstanceTypes", {"Ref": "InstanceType"}, "Workers"]}
    assert environment["BINCOUNT_THREADS"]["Fn::If"][1]["Fn::FindInMap"][2] == "ThreadsPerWorker"
    assert "GpuInstanceType" in template["Conditions"]


def test_local_plan_uses_this_machines_cores() -> None:
    plan = instances.local_plan()
    assert plan.workers * plan.threads_per_worker >= 1
    assert plan.max_concurrent_transforms == plan.workers


def test_each_worker_takes_its_gpu_on_a_multi_gpu_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    context = SimpleNamespace(system_properties={"gpu_id": 6})
    assert worker_settings(SETTINGS, context).device == "cuda:2"
    assert worker_settings(SETTINGS, None) == SETTINGS
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_settings(SETTINGS, context) == SETTINGS
