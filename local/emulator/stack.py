"""The stack from ``template.yaml`` created in moto's CloudFormation, plus what moto leaves out.

moto creates the template's buckets, queues, tables (streams included), buses and plain rules,
but skips ``AWS::Serverless::Function`` (so no event source mappings or function-generated rules)
and does not apply a bucket's ``NotificationConfiguration`` or ``VersioningConfiguration``.
:class:`LocalStack` reads those pieces from
the same template and resolves them against the created resources, so nothing is named twice.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulator.moto_server import AwsEndpoint
from local.emulator.template import ACCOUNT_ID, Resolver, load_template, parameter_values, resources_of_type

log = logging.getLogger(__name__)

FUNCTION_TYPE = "AWS::Serverless::Function"

# Parameters a deployment must give (no default) that mean nothing locally: the local Batch
# Transform serves the artifact the pipeline was started with, not one from S3.
LOCAL_PARAMETER_VALUES = {"ModelArtifactKey": "local/model.tar.gz"}


def local_parameter_values(template: Mapping[str, Any]) -> dict[str, str]:
    """The :data:`LOCAL_PARAMETER_VALUES` that ``template`` declares without a default."""
    declared = template.get("Parameters") or {}
    return {
        name: value
        for name, value in LOCAL_PARAMETER_VALUES.items()
        if name in declared and "Default" not in declared[name]
    }


@dataclass(frozen=True)
class SqsEventSource:
    """A function's SQS trigger as SAM declares it (``Events: {Type: SQS}``)."""

    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool


@dataclass(frozen=True)
class EventRuleSource:
    """A function's EventBridge trigger: the bus name and the event pattern of its rule."""

    bus_name: str
    pattern: dict[str, Any]


@dataclass(frozen=True)
class StreamEventSource:
    """A function's DynamoDB stream trigger as SAM declares it (``Events: {Type: DynamoDB}``)."""

    stream_arn: str
    batch_size: int
    starting_position: str  # TRIM_HORIZON or LATEST
    max_retry_attempts: int  # -1: until the record expires (Lambda's default)
    report_batch_item_failures: bool
    on_failure_queue_url: str  # "" when the mapping names no on-failure destination


@dataclass(frozen=True)
class FunctionSpec:
    """What the Lambda service would know about one function of the template."""

    logical_id: str
    handler: str  # "module.path.function"
    code_dir: Path
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int
    sqs_sources: list[SqsEventSource] = field(default_factory=list)
    rule_sources: list[EventRuleSource] = field(default_factory=list)
    stream_sources: list[StreamEventSource] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)  # ``rate(...)`` / ``cron(...)`` of Schedule events


class LocalStack:
    """A created stack: physical ids, attributes, outputs and the template's function wiring."""

    def __init__(
        self,
        endpoint: AwsEndpoint,
        template_path: Path,
        stack_name: str,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.template_path = template_path
        self.template = load_template(template_path)
        self.stack_name = stack_name
        given = {**local_parameter_values(self.template), **(parameters or {})}
        self.parameters = parameter_values(self.template, given)
        self._given_parameters = given
        self.physical_ids: dict[str, str] = {}
        self.resource_types: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.resolver = Resolver(
            parameters=self.parameters,
            ref=self.ref,
            get_att=self.get_att,
            region=endpoint.region,
            stack_name=stack_name,
            template=self.template,
        )

    # -- creation -------------------------------------------------------------------------------

    def create(self, timeout_s: int = 120) -> LocalStack:
        """``create_stack`` with the template body, wait for it, then apply what moto skips."""
        cloudformation = self.endpoint.client("cloudformation")
        cloudformation.create_stack(
            StackName=self.stack_name,
            TemplateBody=self.template_path.read_text(encoding="utf-8"),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self._given_parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        cloudformation.get_waiter("stack_create_complete").wait(
            StackName=self.stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": timeout_s}
        )
        self.refresh()
        self.apply_bucket_versioning()
        self.apply_bucket_notifications()
        return self

    def refresh(self) -> None:
        """Read physical ids and outputs of the created stack."""
        cloudformation = self.endpoint.client("cloudformation")
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=self.stack_name):
            for summary in page["StackResourceSummaries"]:
                self.physical_ids[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
                self.resource_types[summary["LogicalResourceId"]] = summary["ResourceType"]
        stack = cloudformation.describe_stacks(StackName=self.stack_name)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self._attribute.cache_clear()

    def apply_bucket_versioning(self) -> list[str]:
        """Apply each bucket's ``VersioningConfiguration`` (moto's CloudFormation ignores it).

        Lifecycle rules are not applied: moto never expires anything, so they would change nothing.
        """
        s3 = self.endpoint.client("s3")
        return self._apply_bucket_property(
            "VersioningConfiguration",
            lambda bucket, declared: s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": str(declared["Status"])}
            ),
        )

    def apply_bucket_notifications(self) -> list[str]:
        """Apply each bucket's ``NotificationConfiguration`` (moto's CloudFormation ignores it)."""
        s3 = self.endpoint.client("s3")
        return self._apply_bucket_property(
            "NotificationConfiguration",
            lambda bucket, declared: s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration=notification_configuration_for_api(declared)
            ),
        )

    def _apply_bucket_property(self, name: str, apply: Callable[[str, Any], object]) -> list[str]:
        """``apply(bucket name, resolved property)`` for each bucket that declares ``name``; their ids."""
        applied = []
        for logical_id, resource in resources_of_type(self.template, "AWS::S3::Bucket").items():
            declared = (resource.get("Properties") or {}).get(name)
            if declared:
                apply(self.ref(logical_id), self.resolver.resolve(declared))
                applied.append(logical_id)
        return applied

    # -- intrinsic lookups ------------------------------------------------------------------------

    def ref(self, logical_id: str) -> str:
        """``!Ref`` of a resource: its physical id (for a queue, its URL)."""
        if self.physical_ids.get(logical_id):
            return self.physical_ids[logical_id]
        resource = self.template["Resources"].get(logical_id) or {}
        if resource.get("Type") == "AWS::Events::EventBus":
            # moto leaves an event bus without a physical id (its !Ref bug); the name is declared.
            return str(self.resolver.resolve((resource.get("Properties") or {})["Name"]))
        if logical_id in self.template["Resources"]:
            # Resources moto skipped (functions): AWS would return the function name.
            return f"{self.stack_name}-{logical_id}"
        raise KeyError(f"!Ref {logical_id}: neither a parameter nor a resource of the template")

    def get_att(self, logical_id: str, attribute: str) -> str:
        return self._attribute(logical_id, attribute)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one stack object per run
    def _attribute(self, logical_id: str, attribute: str) -> str:
        kind = self.template["Resources"][logical_id]["Type"]
        physical = self.ref(logical_id)
        region = self.endpoint.region
        if kind == "AWS::SQS::Queue":
            if attribute == "QueueUrl":
                return physical
            if attribute == "QueueName":
                return physical.rsplit("/", 1)[-1]
            attrs = self.endpoint.client("sqs").get_queue_attributes(
                QueueUrl=physical, AttributeNames=["All"]
            )
            return str(attrs["Attributes"]["QueueArn" if attribute == "Arn" else attribute])
        if kind == "AWS::S3::Bucket":
            return {
                "Arn": f"arn:aws:s3:::{physical}",
                "DomainName": f"{physical}.s3.amazonaws.com",
                "RegionalDomainName": f"{physical}.s3.{region}.amazonaws.com",
            }[attribute]
        if kind == "AWS::DynamoDB::Table":
            table = self.endpoint.client("dynamodb").describe_table(TableName=physical)["Table"]
            return str({"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")}[attribute])
        if kind == "AWS::Events::EventBus":
            name = physical.rsplit("/", 1)[-1]
            if attribute == "Name":
                return name
            return str(self.endpoint.client("events").describe_event_bus(Name=name)[attribute])
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
        if kind == FUNCTION_TYPE and attribute == "Arn":
            return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{physical}"
        if kind == "AWS::SageMaker::Model" and attribute == "ModelName":
            return physical.rsplit("/", 1)[-1]
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            return (
                physical
                if physical.startswith("arn:")
                else f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{physical}"
            )
        raise KeyError(f"!GetAtt {logical_id}.{attribute} ({kind}) is not known to the local stack")

    # -- functions --------------------------------------------------------------------------------

    def functions(self) -> dict[str, FunctionSpec]:
        """Every ``AWS::Serverless::Function`` with its resolved environment and triggers."""
        globals_ = (self.template.get("Globals") or {}).get("Function") or {}
        specs = {}
        for logical_id, resource in resources_of_type(self.template, FUNCTION_TYPE).items():
            props = {**globals_, **(resource.get("Properties") or {})}
            env = {
                **((globals_.get("Environment") or {}).get("Variables") or {}),
                **(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}),
            }
            code_uri = props.get("CodeUri", ".")
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                handler=str(props["Handler"]),
                code_dir=(self.template_path.parent / str(code_uri)).resolve(),
                environment={name: str(value) for name, value in self.resolver.resolve(env).items()},
                timeout_s=int(self.resolver.resolve(props.get("Timeout", 3))),
                memory_mb=int(self.resolver.resolve(props.get("MemorySize", 128))),
                sqs_sources=self._sqs_sources(props),
                rule_sources=self._rule_sources(logical_id, props),
                stream_sources=self._stream_sources(props),
                schedules=[str(spec.get("Schedule")) for spec in self._events(props, "Schedule")],
            )
        return specs

    def _events(self, props: Mapping[str, Any], *kinds: str) -> list[dict[str, Any]]:
        """The resolved properties of the function's events of these types, in template order."""
        return [
            self.resolver.resolve(event.get("Properties") or {})
            for event in (props.get("Events") or {}).values()
            if event.get("Type") in kinds
        ]

    def _sqs_sources(self, props: Mapping[str, Any]) -> list[SqsEventSource]:
        sources = []
        for spec in self._events(props, "SQS"):
            queue_arn = str(spec["Queue"])
            sources.append(
                SqsEventSource(
                    queue_url=self._queue_url_for_arn(queue_arn),
                    queue_arn=queue_arn,
                    batch_size=int(spec.get("BatchSize", 10)),
                    batching_window_s=float(spec.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (spec.get("FunctionResponseTypes") or []),
                )
            )
        return sources

    def _stream_sources(self, props: Mapping[str, Any]) -> list[StreamEventSource]:
        sources = []
        for spec in self._events(props, "DynamoDB"):
            on_failure = ((spec.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            sources.append(
                StreamEventSource(
                    stream_arn=str(spec["Stream"]),
                    batch_size=int(spec.get("BatchSize", 100)),
                    starting_position=str(spec.get("StartingPosition", "TRIM_HORIZON")),
                    max_retry_attempts=int(spec.get("MaximumRetryAttempts", -1)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (spec.get("FunctionResponseTypes") or []),
                    on_failure_queue_url=self._queue_url_for_arn(str(on_failure)) if on_failure else "",
                )
            )
        return sources

    def _rule_sources(self, logical_id: str, props: Mapping[str, Any]) -> list[EventRuleSource]:
        sources = []
        for spec in self._events(props, "EventBridgeRule", "CloudWatchEvent"):
            sources.append(
                EventRuleSource(bus_name=str(spec.get("EventBusName", "default")), pattern=spec["Pattern"])
            )
        # Plain AWS::Events::Rule resources whose targets name this function.
        for rule in resources_of_type(self.template, "AWS::Events::Rule").values():
            props_ = rule.get("Properties") or {}
            targets = props_.get("Targets") or []
            if any(_names_function(target.get("Arn"), logical_id) for target in targets):
                resolved = self.resolver.resolve({k: v for k, v in props_.items() if k != "Targets"})
                sources.append(
                    EventRuleSource(
                        bus_name=str(resolved.get("EventBusName", "default")),
                        pattern=resolved["EventPattern"],
                    )
                )
        return sources

    def _queue_url_for_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        return str(self.endpoint.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])

    def bus_names(self) -> list[str]:
        """Names of the template's custom event buses (the inventory bus)."""
        return [
            self.get_att(logical_id, "Name")
            for logical_id in resources_of_type(self.template, "AWS::Events::EventBus")
        ]


def _names_function(value: Any, logical_id: str) -> bool:
    if isinstance(value, dict):
        if value.get("Fn::GetAtt") in ([logical_id, "Arn"], f"{logical_id}.Arn"):
            return True
        if value.get("Ref") == logical_id:
            return True
        sub = value.get("Fn::Sub")
        return isinstance(sub, str) and "${" + logical_id in sub
    return False


def notification_configuration_for_api(declared: Mapping[str, Any]) -> dict[str, Any]:
    """Translate CloudFormation's ``NotificationConfiguration`` into the S3 API's shape.

    CloudFormation says ``Event`` (one) + ``Queue``/``Function``/``Topic`` + ``Filter.S3Key.Rules``;
    ``PutBucketNotificationConfiguration`` wants ``Events`` (a list) + ``QueueArn``/... +
    ``Filter.Key.FilterRules``.
    """
    api: dict[str, Any] = {}
    for cfn_key, api_key, target_cfn, target_api in (
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
    ):
        entries = []
        for entry in declared.get(cfn_key) or []:
            converted: dict[str, Any] = {target_api: entry[target_cfn], "Events": [entry["Event"]]}
            rules = ((entry.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            if rules:
                converted["Filter"] = {
                    "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
                }
            entries.append(converted)
        if entries:
            api[api_key] = entries
    if (declared.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
        api["EventBridgeConfiguration"] = {}
    return api
