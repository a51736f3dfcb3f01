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
from moto import mock_aws
from moto_baseline import Baseline, transform_jobs

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
REGION = "us-east-1"

# Set before any boto3 client exists: no real credentials can leak into a test.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_SERVICE_NAME": "bincount",
    "POWERTOOLS_METRICS_NAMESPACE": "BinCount/test",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    # the shared stack's queues are purged before every test (moto_baseline), not once a minute
    "MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR": "false",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)


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
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    description = cloudformation.describe_stacks(StackName="bincount-test")["Stacks"][0]
    assert description["StackStatus"] == "CREATE_COMPLETE", description.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in description["Outputs"]}


def function_env(outputs: dict[str, str]) -> dict[str, str]:
    """The functions' environment as the template gives it, from the stack's outputs."""
    return {
        "ENVIRONMENT": "dev",
        "INGEST_PREFIX": outputs["IngestPrefix"],
        "RESULTS_BUCKET": outputs["ResultsBucketName"],
        "COUNTS_TABLE": outputs["CountsTableName"],
        "JOBS_TABLE": outputs["JobsTableName"],
        "IDEMPOTENCY_TABLE": outputs["IdempotencyTableName"],
        "EVENT_BUS_NAME": outputs["EventBusName"],
        "MODEL_NAME": outputs["ModelName"],
        "JOB_NAME_PREFIX": outputs["JobNamePrefix"],
        "MAX_IMAGES_PER_JOB": "500",
        "MAX_JOBS_IN_FLIGHT": "4",
        "CONFIDENCE_THRESHOLD": "0.5",
        "INGEST_QUEUE_URL": outputs["IngestQueueUrl"],
        "RETRY_QUEUE_URL": outputs["RetryQueueUrl"],
    }


class SharedStack:
    """One moto account holding the stack for a whole test module, reset to its baseline per test."""

    def __init__(self) -> None:
        self.mock = mock_aws()
        self.start()

    def start(self) -> None:
        self.mock.start()
        self.outputs = create_stack()
        self.baseline = Baseline.capture()

    def fresh(self) -> Stack:
        if transform_jobs():  # they cannot be deleted: start again from an empty account
            self.mock.stop()
            self.start()
        else:
            self.baseline.restore()
        return Stack(outputs=self.outputs, env=function_env(self.outputs))


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[SharedStack]:
    shared = SharedStack()
    yield shared
    shared.mock.stop()


@pytest.fixture
def stack(shared_stack: SharedStack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """template.yaml's stack in moto, as if just created; the functions' env vars from its outputs."""
    stack = shared_stack.fresh()
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    from bincount.settings import get_settings

    get_settings.cache_clear()
    return stack


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
