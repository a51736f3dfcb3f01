"""Where a stack's resources are: the local stack (`make up`) or a deployed CloudFormation stack.

Every operator tool (CLI commands, review console, re-count) talks to a stack through
:class:`StackResources`, so none of them hard-codes a name: on AWS the names come from the
stack's outputs (template.yaml ``Outputs``), locally from the running local stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    def client(self, service: str) -> Any:
        """A boto3 client for this stack (local: moto server with dummy credentials)."""
        import boto3

        if self.endpoint_url:
            return boto3.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return boto3.client(service, region_name=self.region)

    def output(self, name: str) -> str:
        """A further stack output by its name in template.yaml (empty when absent)."""
        return dict(self.extra).get(name, "")
