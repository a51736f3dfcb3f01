"""template.yaml: creatable by moto's CloudFormation, and consistent with the code it deploys."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from bincount.adapters.dynamodb import IN_FLIGHT_INDEX
from bincount.settings import Settings

REPO = Path(__file__).resolve().parents[2]


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: {suffix: None})


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load((REPO / "template.yaml").read_text(), Loader=_Loader)
    return loaded


def test_stack_creates_in_moto(stack: Any) -> None:
    """The ``stack`` fixture asserts CREATE_COMPLETE; here the resources it made."""
    assert stack.outputs["EventBusName"] == "bincount-inventory-dev"  # !GetAtt Bus.Name, not the moto object
    s3 = boto3.client("s3", region_name="us-east-1")
    assert s3.head_bucket(Bucket=stack.ingest_bucket) and s3.head_bucket(Bucket=stack.results_bucket)
    sqs = boto3.client("sqs", region_name="us-east-1")
    attributes = sqs.get_queue_attributes(QueueUrl=stack.outputs["IngestQueueUrl"], AttributeNames=["All"])
    assert '"maxReceiveCount"' in attributes["Attributes"]["RedrivePolicy"]
    model = boto3.client("sagemaker", region_name="us-east-1").describe_model(
        ModelName=stack.outputs["ModelName"]
    )
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["TS_MAX_REQUEST_SIZE"] == environment["TS_MAX_RESPONSE_SIZE"] == "104857600"
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    assert environment["MALLOC_MMAP_THRESHOLD_"] == "2000000000"
    assert model["PrimaryContainer"]["Image"] == stack.outputs["InferenceImage"]
    assert model["PrimaryContainer"]["Image"].endswith("/pytorch-inference:2.6-gpu-py312")  # ml.g4dn default
    Settings.from_env()  # the outputs make a complete configuration


def test_handlers_exist_and_env_covers_required_settings(template: dict[str, Any]) -> None:
    functions = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    for properties in functions.values():
        module, function = properties["Handler"].rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function))
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for required in ("RESULTS_BUCKET", "COUNTS_TABLE", "JOBS_TABLE", "EVENT_BUS_NAME", "MODEL_NAME"):
        assert required in variables
    assert template["Globals"]["Function"]["CodeUri"] == "functions/"


def test_no_wildcard_action_on_wildcard_resource(template: dict[str, Any]) -> None:
    def statements(node: Any) -> list[dict[str, Any]]:
        found = []
        if isinstance(node, dict):
            if "Effect" in node and "Action" in node:
                found.append(node)
            for value in node.values():
                found.extend(statements(value))
        elif isinstance(node, list):
            for value in node:
                found.extend(statements(value))
        return found

    for statement in statements(template["Resources"]):
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(action == "*" or str(action).endswith(":*") for action in actions), statement


def test_notification_filters_on_the_prefix_only(template: dict[str, Any]) -> None:
    """S3's suffix filters are case-sensitive (``.Jpg`` would be lost): the batcher decides."""
    configurations = template["Resources"]["IngestBucket"]["Properties"]["NotificationConfiguration"]
    (entry,) = configurations["QueueConfigurations"]
    assert entry["Event"] == "s3:ObjectCreated:*"
    assert [rule["Name"] for rule in entry["Filter"]["S3Key"]["Rules"]] == ["prefix"]


def test_ingest_bucket_keeps_versions_and_expires_replaced_ones(template: dict[str, Any]) -> None:
    properties = template["Resources"]["IngestBucket"]["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireReplacedVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == {
        "Ref": None
    }  # the NoncurrentVersionExpirationDays parameter (the test loader drops tag values)
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert all(rule["Status"] == "Enabled" for rule in rules.values())


def test_retry_queue_reconciler_and_their_alarms(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    retry_queue = resources["RetryQueue"]["Properties"]
    assert retry_queue["MessageRetentionPeriod"] == 1209600 and "RedrivePolicy" not in retry_queue
    reconciler = resources["ReconcilerFunction"]["Properties"]
    assert reconciler["Handler"] == "reconciler.app.handler"
    assert [event["Type"] for event in reconciler["Events"].values()] == ["Schedule"]
    assert "RETRY_QUEUE_URL" in template["Globals"]["Function"]["Environment"]["Variables"]
    for name in (
        "RetryQueueOldestPhotoAlarm",
        "ParkedPhotosAlarm",
        "ReconcilerErrorsAlarm",
        "ReconcileProblemsAlarm",
    ):
        properties = resources[name]["Properties"]
        assert properties["AlarmActions"] and properties["OKActions"], name
    index = resources["JobsTable"]["Properties"]["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == IN_FLIGHT_INDEX


def test_decision_parameters_reach_every_function_that_collects() -> None:
    """α, the review budget and the width reach the collector, the reconciler (it collects missed
    jobs) and the batcher (its error records go through the same collector) from the parameters."""
    from local.emulator.template import load_template  # reads the tags (!Ref) as CloudFormation does

    template = load_template(REPO / "template.yaml")
    parameters = template["Parameters"]
    assert parameters["DiscrepancyFalseAlarmRate"]["Default"] == 0.05
    assert parameters["ReviewBudget"]["Default"] == 0.1
    assert (
        0
        < parameters["DiscrepancyFalseAlarmRate"]["MinValue"]
        < parameters["DiscrepancyFalseAlarmRate"]["MaxValue"]
        < 1
    )
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DISCREPANCY_FALSE_ALARM_RATE"] == {"Ref": "DiscrepancyFalseAlarmRate"}
    assert variables["REVIEW_BUDGET"] == {"Ref": "ReviewBudget"}
    assert variables["REVIEW_RANGE_WIDTH"] == {"Ref": "ReviewRangeWidth"}
    assert variables["CONFIDENCE_THRESHOLD"] == {"Ref": "ConfidenceThreshold"}  # models without a range
