"""Where a stack's resources are: the local stack (`make up`) or a deployed CloudFormation stack.

Every operator tool (CLI commands, review console, re-count) talks to a stack through
:class:`StackResources`, so none of them hard-codes a name: on AWS the names come from the
stack's outputs (template.yaml ``Outputs``), locally from the running local stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from common.errors import Refused, UsageError, did_you_mean


@dataclass(frozen=True)
class StackResources:
    """Physical names of one Bin Count stack; ``endpoint_url`` is set for the local (moto) stack."""

    stack: str  # "local" or the CloudFormation stack name
    region: str
    ingest_bucket: str
    ingest_prefix: str
    results_bucket: str
    counts_table: str
    jobs_table: str
    event_bus: str
    ingest_queue_url: str
    ingest_dlq_url: str
    collector_dlq_url: str
    model_name: str = ""
    realtime_endpoint: str = ""  # SageMaker endpoint name, or a local URL for the local stack
    endpoint_url: str | None = None  # moto server URL for the local stack, None on AWS
    extra: tuple[tuple[str, str], ...] = ()  # further outputs (name, value), e.g. new queues
    # local stack: services answered elsewhere than moto, e.g. ("lambda", Invoke API of the daemon)
    service_endpoints: tuple[tuple[str, str], ...] = ()

    @property
    def is_local(self) -> bool:
        return self.endpoint_url is not None

    def client(self, service: str) -> Any:
        """A boto3 client for this stack (local: moto server with dummy credentials)."""
        import boto3

        if self.endpoint_url:
            return boto3.client(
                service,  # type: ignore[call-overload]
                region_name=self.region,
                endpoint_url=dict(self.service_endpoints).get(service, self.endpoint_url),
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service, region_name=self.region)  # type: ignore[call-overload]

    def resource(self, service: str) -> Any:
        """A boto3 resource (e.g. ``dynamodb``) for this stack, reached as :meth:`client` is."""
        import boto3

        if self.endpoint_url:
            return boto3.resource(
                service,  # type: ignore[call-overload]
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.resource(service, region_name=self.region)  # type: ignore[call-overload]

    def outputs(self) -> dict[str, str]:
        """The stack's outputs by their names in template.yaml (the mapped ones as this stack holds them)."""
        named = {
            name: getattr(self, field) for field, name in {**REQUIRED_OUTPUTS, **OPTIONAL_OUTPUTS}.items()
        }
        return {**dict(self.extra), **named}

    def output(self, name: str) -> str:
        """A further stack output by its name in template.yaml (empty when absent)."""
        return dict(self.extra).get(name, "")


# -- finding a stack ----------------------------------------------------------------------------

LOCAL = "local"
REQUIRED_OUTPUTS = {
    "ingest_bucket": "IngestBucketName",
    "results_bucket": "ResultsBucketName",
    "counts_table": "CountsTableName",
    "jobs_table": "JobsTableName",
    "event_bus": "EventBusName",
    "ingest_queue_url": "IngestQueueUrl",
    "ingest_dlq_url": "IngestDLQUrl",
    "collector_dlq_url": "CollectorDLQUrl",
}
OPTIONAL_OUTPUTS = {
    "ingest_prefix": "IngestPrefix",
    "model_name": "ModelName",
    "realtime_endpoint": "RealtimeEndpointName",
}
HOW_TO_START = "start the local one with `make up`, or pass --stack NAME --region R for a deployed one"


def resources_from_outputs(
    stack: str, region: str, outputs: dict[str, str], **overrides: Any
) -> StackResources:
    """Map template.yaml's ``Outputs`` onto :class:`StackResources`; the rest goes to ``extra``."""
    missing = sorted(name for name in REQUIRED_OUTPUTS.values() if not outputs.get(name))
    if missing:
        raise Refused(
            f"stack {stack} has no output {', '.join(missing)}: was it deployed from this template.yaml?"
        )
    named = {field: outputs[name] for field, name in REQUIRED_OUTPUTS.items()}
    named.update({field: outputs.get(name, "") for field, name in OPTIONAL_OUTPUTS.items()})
    named["ingest_prefix"] = named["ingest_prefix"] or "incoming/"
    used = set(REQUIRED_OUTPUTS.values()) | set(OPTIONAL_OUTPUTS.values())
    extra = tuple(sorted((k, v) for k, v in outputs.items() if k not in used))
    return StackResources(stack=stack, region=region, extra=extra, **{**named, **overrides})


def resolve_stack(name: str | None, region: str | None) -> StackResources:
    """The stack a command talks to: ``local`` (the running `make up` stack) or a deployed one.

    ``name`` None means the local stack when it is up, else a :class:`UsageError` saying how to
    get one. A stack that does not exist or is not in a usable state is :class:`Refused`.
    """
    from common.stack_state import default_state_path, read_state

    if name is None:
        if read_state(default_state_path()) is None:
            raise UsageError(f"no stack given and the local stack is not up: {HOW_TO_START}")
        name = LOCAL
    if name == LOCAL:
        return resolve_local(default_state_path())
    return resolve_deployed(name, region)


def resolve_local(state_path: Path) -> StackResources:
    """The local stack from its state file; its outputs read back from moto's CloudFormation."""
    from common.stack_state import process_alive, read_state

    state = read_state(state_path)
    if state is None:
        raise Refused(f"the local stack is not up (no {state_path}): start it with `make up`")
    if not process_alive(state.daemon_pid, state.daemon_create_time):
        raise Refused(f"the local stack recorded in {state_path} is not running: `make down`, then `make up`")
    try:
        outputs = _stack_outputs(_local_client(state.moto_url, state.region), state.stack_name)
    except BotoCoreError as error:
        raise Refused(f"the local stack's emulator at {state.moto_url} does not answer ({error})") from error
    functions = {f"{logical}Name": name for logical, name in state.functions.items()}
    return resources_from_outputs(
        LOCAL,
        state.region,
        {**outputs, **functions},
        endpoint_url=state.moto_url,
        realtime_endpoint=state.model_server_url,
        service_endpoints=(("lambda", state.lambda_url),),
    )


def resolve_deployed(name: str, region: str | None) -> StackResources:
    """A deployed stack's outputs through ``DescribeStacks`` (credentials: the usual AWS chain)."""
    import boto3

    local_hint = did_you_mean(name, [LOCAL], "--stack {} (the stack `make up` starts)")
    if local_hint and not region:  # `--stack locl`: a typo of local, not a deployed stack's name
        raise UsageError(f"--stack {name}: no such stack{local_hint}")
    region = region or boto3.session.Session().region_name
    if not region:
        raise UsageError(
            f"--stack {name} is a deployed stack's name, so it needs --region R "
            "(or AWS_REGION / a profile with a region); the local stack is --stack local"
        )
    try:
        outputs = _stack_outputs(boto3.client("cloudformation", region_name=region), name, local_hint)
    except NoCredentialsError as error:
        raise Refused(
            f"no AWS credentials to read stack {name}: configure a profile or AWS_* variables"
        ) from error
    except BotoCoreError as error:
        raise Refused(f"cannot reach CloudFormation in {region}: {error}") from error
    return resources_from_outputs(name, region, outputs)


USABLE_STATES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")


def _stack_outputs(cloudformation: Any, name: str, hint: str = "") -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "does not exist" in message:
            where = cloudformation.meta.region_name
            raise Refused(f"--stack {name}: stack {name} does not exist in {where}{hint}") from error
        raise Refused(f"cannot read stack {name}: {message}") from error
    status = stacks[0].get("StackStatus", "")
    if status not in USABLE_STATES:
        raise Refused(f"stack {name} is {status}, not up")
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}


def _local_client(url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})
    return boto3.client(
        "cloudformation",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def stack_for(args: Any) -> StackResources:
    """The stack named by a command's global options (``--stack``, ``--region``)."""
    return resolve_stack(getattr(args, "stack", None), getattr(args, "region", None))
