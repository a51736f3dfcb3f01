"""The local stack's Lambda Invoke API answers boto3's ``lambda.invoke`` like Lambda does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.emulator.lambda_invoke_server import function_key, lambda_invoke_server
from local.emulator.moto_server import free_port


class FakeRuntime:
    name = "CollectorFunction"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def invoke(self, event: dict[str, Any]) -> Any:
        self.events.append(event)
        if event.get("fail"):
            raise RuntimeError("results not readable")
        return {"recorded": 3}


@pytest.fixture
def invoke_api() -> Iterator[tuple[Any, FakeRuntime]]:
    runtime = FakeRuntime()
    with lambda_invoke_server({"stack-CollectorFunction": runtime}, free_port()) as url:  # type: ignore[dict-item]
        client = boto3.client(
            "lambda",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="t",
            aws_secret_access_key="t",
        )
        yield client, runtime


def test_invoke_returns_the_handlers_result(invoke_api: tuple[Any, FakeRuntime]) -> None:
    client, runtime = invoke_api
    response = client.invoke(FunctionName="stack-CollectorFunction", Payload=json.dumps({"id": 1}).encode())
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"recorded": 3}
    assert runtime.events == [{"id": 1}]


def test_a_raising_handler_is_a_function_error(invoke_api: tuple[Any, FakeRuntime]) -> None:
    client, _ = invoke_api
    arn = "arn:aws:lambda:us-east-1:123456789012:function:stack-CollectorFunction"
    response = client.invoke(FunctionName=arn, Payload=json.dumps({"fail": True}).encode())
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorMessage"] == "results not readable"


def test_an_unknown_function_is_not_found(invoke_api: tuple[Any, FakeRuntime]) -> None:
    client, _ = invoke_api
    with pytest.raises(ClientError) as error:
        client.invoke(FunctionName="nope", Payload=b"{}")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_function_key_strips_arns_and_qualifiers() -> None:
    assert function_key("arn:aws:lambda:us-east-1:1:function:fn:live") == "fn"
    assert function_key("fn:live") == "fn"
