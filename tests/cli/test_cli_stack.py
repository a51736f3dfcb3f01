"""How the CLI finds a stack: deployed (CloudFormation outputs), local (state file), or neither."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest
from cli_support import stack_state
from moto import mock_aws

from cli.stack import StackResources, resolve_stack, resources_from_outputs
from common.errors import Refused, UsageError
from common.stack_state import ChildProcess, LocalStackState, process_alive, read_state, write_state

OUTPUTS = {
    "IngestBucketName": "in",
    "ResultsBucketName": "out",
    "CountsTableName": "counts",
    "JobsTableName": "jobs",
    "EventBusName": "bus",
    "IngestQueueUrl": "q",
    "IngestDLQUrl": "dlq",
    "CollectorDLQUrl": "cdlq",
    "CollectorFunctionName": "collector-fn",
}


def test_outputs_map_onto_resources_and_the_rest_is_kept() -> None:
    resources = resources_from_outputs("s", "eu-west-1", OUTPUTS)
    assert (resources.ingest_bucket, resources.collector_dlq_url, resources.ingest_prefix) == (
        "in",
        "cdlq",
        "incoming/",
    )
    assert resources.output("CollectorFunctionName") == "collector-fn"
    assert resources.output("Nope") == "" and not resources.is_local


def test_a_stack_without_the_template_outputs_is_refused() -> None:
    with pytest.raises(Refused, match="no output CountsTableName"):
        resources_from_outputs(
            "old", "eu-west-1", {k: v for k, v in OUTPUTS.items() if k != "CountsTableName"}
        )


def test_deployed_stack_resolves_from_describe_stacks(deployed: StackResources) -> None:
    assert deployed.counts_table == "bincount-counts-dev"
    assert deployed.ingest_queue_url.endswith("/bincount-ingest-dev")
    assert deployed.output("JobNamePrefix") == "bincount-dev"
    assert deployed.endpoint_url is None


def test_missing_stack_is_refused_in_one_line(no_local_stack: Path) -> None:
    with mock_aws(), pytest.raises(Refused, match="stack nope does not exist in eu-west-1"):
        resolve_stack("nope", "eu-west-1")


def test_no_stack_and_no_local_stack_says_how_to_get_one(no_local_stack: Path) -> None:
    with pytest.raises(UsageError, match="make up"):
        resolve_stack(None, None)
    with pytest.raises(Refused, match="local stack is not up"):
        resolve_stack("local", None)


def state(pid: int, create_time: float) -> LocalStackState:
    return stack_state(
        daemon_pid=pid,
        daemon_create_time=create_time,
        functions={"CollectorFunction": "bincount-local-CollectorFunction"},
        children=[ChildProcess(pid, create_time, "moto")],
    )


def test_state_file_round_trips_and_knows_its_ports(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, state(123, 1.0))
    assert read_state(path) == state(123, 1.0)
    assert state(1, 1.0).ports == [1, 2, 3]
    path.write_text("{half")
    assert read_state(path) is None


def test_a_reused_pid_is_not_our_process() -> None:
    import psutil

    me = psutil.Process()
    assert process_alive(me.pid, me.create_time())
    assert not process_alive(me.pid, me.create_time() - 1000)


def test_local_state_of_a_dead_daemon_is_refused(no_local_stack: Path) -> None:
    import psutil

    write_state(no_local_stack, state(os.getpid(), psutil.Process().create_time() - 1000))
    with pytest.raises(Refused, match="not running"):
        resolve_stack(None, None)


def test_local_clients_use_the_daemons_endpoints() -> None:
    resources = resources_from_outputs(
        "local",
        "us-east-1",
        OUTPUTS,
        endpoint_url="http://127.0.0.1:5000",
        service_endpoints=(("lambda", "http://127.0.0.1:6000"),),
    )
    assert resources.client("lambda").meta.endpoint_url == "http://127.0.0.1:6000"
    assert resources.client("s3").meta.endpoint_url == "http://127.0.0.1:5000"
    assert boto3.client("s3", region_name="us-east-1").meta.endpoint_url != "http://127.0.0.1:5000"
