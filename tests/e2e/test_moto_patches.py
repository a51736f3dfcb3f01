"""The emulator's transaction patch answers like moto: cancellation reasons, nothing written on a
failed condition, everything written when all hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.emulator import moto_patches


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto_patches.apply(monkeypatch.setattr)
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        yield dynamodb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )


def put(sk: str, value: int) -> dict[str, Any]:
    item = {"pk": "p", "sk": sk, "v": value}
    return {"Put": {"TableName": "t", "Item": item, "ConditionExpression": "attribute_not_exists(sk)"}}


def test_a_failed_condition_cancels_with_moto_reasons_and_writes_nothing(table: Any) -> None:
    table.put_item(Item={"pk": "p", "sk": "taken", "v": 0})
    with pytest.raises(ClientError) as raised:
        table.meta.client.transact_write_items(TransactItems=[put("new", 1), put("taken", 2)])
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in raised.value.response["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
    ]
    assert "Item" not in table.get_item(Key={"pk": "p", "sk": "new"})
    assert table.get_item(Key={"pk": "p", "sk": "taken"})["Item"]["v"] == 0


def test_conditions_that_hold_write_every_item(table: Any) -> None:
    table.meta.client.transact_write_items(TransactItems=[put(f"k{i}", i) for i in range(3)])
    update = {
        "Update": {
            "TableName": "t",
            "Key": {"pk": "p", "sk": "k1"},
            "UpdateExpression": "SET v = :new",
            "ConditionExpression": "v = :old",
            "ExpressionAttributeValues": {":new": 10, ":old": 1},
        }
    }
    table.meta.client.transact_write_items(TransactItems=[update])
    assert [item["v"] for item in table.scan()["Items"]] == [0, 10, 2]
