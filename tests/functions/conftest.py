"""Fixtures of the serverless pipeline's tests: fake AWS credentials, the stack from template.yaml
in moto, sample events, and a helper to build SQS events from S3 notifications."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from bincount.settings import environment_from_outputs
from moto_baseline import ModuleAccount

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
REGION = "us-east-1"

# The functions' own environment, as the template gives it (fake credentials: tests/conftest.py).
for _name, _value in {
    "AWS_REGION": REGION,
    "POWERTOOLS_SERVICE_NAME": "bincount",
    "POWERTOOLS_METRICS_NAMESPACE": "BinCount/test",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}.items():
    os.environ[_name] = _value


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event_file() -> Any:
    def load(name: str) -> dict[str, Any]:
        return copy.deepcopy(load_event(name))

    return load


@dataclass
class Stack:
    outputs: dict[str, str]
    env: dict[str, str]

    @property
    def ingest_bucket(self) -> str:
        return self.outputs["IngestBucketName"]

    @property
    def results_bucket(self) -> str:
        return self.outputs["ResultsBucketName"]


def create_stack() -> dict[str, str]:
    """template.yaml created in moto's CloudFormation; returns the stack's outputs."""
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="bincount-test",
        TemplateBody=(REPO / "template.yaml").read_text(),
        Parameters=[{"ParameterKey": "ModelArtifactKey", "ParameterValue": "models/test/model.tar.gz"}],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    description = cloudformation.describe_stacks(StackName="bincount-test")["Stacks"][0]
    assert description["StackStatus"] == "CREATE_COMPLETE", description.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description["Outputs"]}
    # As template.yaml declares (test_template checks it); moto's CloudFormation ignores it.
    boto3.client("s3", region_name=REGION).put_bucket_versioning(
        Bucket=outputs["IngestBucketName"], VersioningConfiguration={"Status": "Enabled"}
    )
    return outputs


def function_env(outputs: dict[str, str]) -> dict[str, str]:
    """The functions' environment as the template gives it, from the stack's outputs."""
    return {
        **environment_from_outputs(outputs),
        "ENVIRONMENT": "dev",
        "MAX_IMAGES_PER_JOB": "500",
        "MAX_JOBS_IN_FLIGHT": "4",
        "CONFIDENCE_THRESHOLD": "0.5",
    }


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[ModuleAccount[dict[str, str]]]:
    """One moto account per test module holding template.yaml's stack (its outputs)."""
    shared = ModuleAccount(create_stack)
    yield shared
    shared.close()


@pytest.fixture
def aws(shared_stack: ModuleAccount[dict[str, str]]) -> None:
    """An empty moto account of the test's own, for tests that create stacks themselves."""
    shared_stack.blank()


@pytest.fixture
def stack(shared_stack: ModuleAccount[dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> Stack:
    """template.yaml's stack in moto, as if just created; the functions' env vars from its outputs."""
    outputs = shared_stack.fresh()
    stack = Stack(outputs=outputs, env=function_env(outputs))
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    from bincount.settings import get_settings

    get_settings.cache_clear()
    return stack


@pytest.fixture
def quick_retries(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto keeps SQS delays for real: no backoff here (the backoff is tested with fakes)."""
    monkeypatch.setenv("RETRY_BASE_DELAY_S", "0")
    monkeypatch.setenv("PARKED_RETRY_DELAY_S", "0")


@pytest.fixture
def bus_queue(stack: Stack) -> str:
    """An SQS queue subscribed to every Bin Count event on the inventory bus (moto delivers)."""
    sqs = boto3.client("sqs", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    url = sqs.create_queue(QueueName="inventory-listener")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.outputs["EventBusName"]
    events.put_rule(Name="all-bincount", EventBusName=bus, EventPattern=json.dumps({"source": ["bincount"]}))
    events.put_targets(Rule="all-bincount", EventBusName=bus, Targets=[{"Id": "listener", "Arn": arn}])
    return str(url)


@dataclass
class LambdaContext:
    function_name: str = "bincount-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:bincount-test"
    aws_request_id: str = "7f0b4e0e-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext()


def pytest_configure(config: pytest.Config) -> None:
    # moto's CloudFormation names every resource type it skips (functions, policies, alarms).
    config.addinivalue_line("filterwarnings", "ignore:Tried to parse:UserWarning")
