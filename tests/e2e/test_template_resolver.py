"""Pure tests of the template reader and the intrinsic-function resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.emulator.stack import notification_configuration_for_api
from local.emulator.template import Resolver, load_template, parameter_values


def resolver_for(template: dict, **params: str) -> Resolver:
    return Resolver(
        parameters=parameter_values(template, params),
        ref=lambda logical_id: f"phys-{logical_id}",
        get_att=lambda logical_id, attr: f"{logical_id}.{attr}!",
        region="eu-west-1",
        stack_name="st",
        template=template,
    )


def test_tags_become_intrinsic_dicts(fixture_template: Path) -> None:
    template = load_template(fixture_template)
    queue = template["Resources"]["IngestBucket"]["Properties"]["NotificationConfiguration"]
    assert queue["QueueConfigurations"][0]["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert template["Resources"]["Bus"]["Properties"]["Name"] == {"Fn::Sub": "bincount-${Environment}"}


def test_resolves_sub_ref_getatt_and_conditions(fixture_template: Path) -> None:
    template = load_template(fixture_template)
    resolver = resolver_for(template, Environment="prod")
    env = template["Resources"]["Batcher"]["Properties"]["Environment"]["Variables"]
    assert resolver.resolve(env) == {
        "COUNTS_TABLE": "phys-CountsTable",
        "EVENT_BUS_NAME": "Bus.Name!",
        "MODE": "prod",
        "QUEUE_URL": "phys-IngestQueue",
    }
    name = template["Resources"]["IngestBucket"]["Properties"]["BucketName"]
    assert resolver.resolve(name) == "bincount-ingest-prod-123456789012"
    assert resolver.resolve({"Fn::Sub": ["${A}-${Q.Arn}-${!Lit}", {"A": {"Ref": "AWS::Region"}}]}) == (
        "eu-west-1-Q.Arn!-${Lit}"
    )
    assert resolver.resolve({"Fn::Join": ["/", ["a", {"Ref": "IngestPrefix"}]]}) == "a/incoming/"


def test_unknown_parameter_override_is_refused(fixture_template: Path) -> None:
    with pytest.raises(KeyError):
        parameter_values(load_template(fixture_template), {"NoSuchParameter": "1"})


def test_notification_configuration_translated_to_api_shape() -> None:
    declared = {
        "QueueConfigurations": [
            {
                "Event": "s3:ObjectCreated:*",
                "Queue": "arn:aws:sqs:us-east-1:123456789012:q",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "incoming/"}]}},
            }
        ],
        "EventBridgeConfiguration": {"EventBridgeEnabled": True},
    }
    assert notification_configuration_for_api(declared) == {
        "QueueConfigurations": [
            {
                "QueueArn": "arn:aws:sqs:us-east-1:123456789012:q",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
            }
        ],
        "EventBridgeConfiguration": {},
    }
