"""How many model-server workers, threads and requests in flight an instance type gets.

The one table of transform instance types (vCPUs, GPUs) and the one rule that turns them into a
serving plan. ``template.yaml``'s ``InstanceTypes`` mapping is generated from it
(``python -m training.sagemaker.inference_images --write template.yaml``), because CloudFormation cannot
compute; the local TorchServe and the benchmarks size themselves with :func:`local_plan`, the
same rule applied to this machine.

The rule, measured through TorchServe on the development machine (docs/serving-cost.md):

* one worker per vCPU, one intra-op thread each. SageMaker's inference toolkit calls the handlers
  once per request, so requests overlap only across workers; single-threaded workers spend no
  time synchronising threads, and decoding (always single-threaded) overlaps other workers'
  forward passes. On a GPU instance the workers decode on the vCPUs and share the GPU(s)
  (TorchServe gives worker *i* GPU *i mod GPUs*).
* ``MaxConcurrentTransforms`` = workers: one request in flight per worker; more only queue in
  TorchServe. The batcher lowers it further so that it times ``MaxPayloadInMB`` stays <= 100.

Pure Python (no torch): the Lambda functions and the template generator read it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceSpec:
    vcpus: int
    gpus: int = 0


@dataclass(frozen=True)
class ServingPlan:
    """What one transform instance runs: TorchServe workers, threads per worker, requests in flight."""

    workers: int
    threads_per_worker: int
    max_concurrent_transforms: int


#: x86 instance types Batch Transform offers for the PyTorch inference container (AWS's instance
#: type pages: vCPUs and GPUs per size).
INSTANCE_SPECS: dict[str, InstanceSpec] = {
    **{
        f"ml.m5.{size}": InstanceSpec(vcpus)
        for size, vcpus in (
            ("large", 2),
            ("xlarge", 4),
            ("2xlarge", 8),
            ("4xlarge", 16),
            ("12xlarge", 48),
            ("24xlarge", 96),
        )
    },
    **{
        f"ml.m6i.{size}": InstanceSpec(vcpus)
        for size, vcpus in (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32))
    },
    **{
        f"ml.c5.{size}": InstanceSpec(vcpus)
        for size, vcpus in (("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("9xlarge", 36), ("18xlarge", 72))
    },
    **{
        f"ml.c6i.{size}": InstanceSpec(vcpus)
        for size, vcpus in (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16), ("8xlarge", 32))
    },
    **{
        f"ml.r5.{size}": InstanceSpec(vcpus)
        for size, vcpus in (("large", 2), ("xlarge", 4), ("2xlarge", 8), ("4xlarge", 16))
    },
    **{
        f"ml.{family}.{size}": InstanceSpec(vcpus, gpus)
        for family in ("g4dn", "g5", "g6")
        for size, vcpus, gpus in (
            ("xlarge", 4, 1),
            ("2xlarge", 8, 1),
            ("4xlarge", 16, 1),
            ("8xlarge", 32, 1),
            ("12xlarge", 48, 4),
            ("16xlarge", 64, 1),
        )
    },
    **{
        f"ml.p3.{size}": InstanceSpec(vcpus, gpus)
        for size, vcpus, gpus in (("2xlarge", 8, 1), ("8xlarge", 32, 4), ("16xlarge", 64, 8))
    },
}


def serving_plan(vcpus: int, gpus: int = 0) -> ServingPlan:
    """The rule of the module docstring, for any machine."""
    workers = max(1, vcpus, gpus)
    return ServingPlan(
        workers=workers, threads_per_worker=max(1, vcpus // workers), max_concurrent_transforms=workers
    )


def plan_for(instance_type: str) -> ServingPlan:
    """The plan of a transform instance type; ``KeyError`` for a type the table does not know."""
    spec = INSTANCE_SPECS[instance_type]
    return serving_plan(spec.vcpus, spec.gpus)


def local_plan() -> ServingPlan:
    """This machine as a transform instance (no GPU counted: the local servers run on the CPU)."""
    return serving_plan(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def template_mapping() -> dict[str, dict[str, str]]:
    """The serving columns of template.yaml's ``InstanceTypes`` mapping, per instance type.

    Strings: they become environment variables, and a mapping's values are strings or lists.
    """
    mapping: dict[str, dict[str, str]] = {}
    for instance_type, spec in INSTANCE_SPECS.items():
        plan = serving_plan(spec.vcpus, spec.gpus)
        mapping[instance_type] = {
            "VCpus": str(spec.vcpus),
            "Gpus": str(spec.gpus),
            "Workers": str(plan.workers),
            "ThreadsPerWorker": str(plan.threads_per_worker),
            "MaxConcurrentTransforms": str(plan.max_concurrent_transforms),
        }
    return mapping
