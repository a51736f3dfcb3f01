"""DynamoDB tables behind CountStore and JobStore (resource API: numbers as Decimal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from bincount.records import LATEST_SK, bin_pk
from bincount.submission import IN_FLIGHT_ATTRIBUTE, IN_FLIGHT_VALUE

# Sparse index of the jobs table (template.yaml): only jobs not yet collected carry ``in_flight``.
IN_FLIGHT_INDEX = "InFlight"

# Once per object version: the sort key names the upload (key + version), so a replay is refused
# and a re-upload of the key, another version, gets its own record.
IMAGE_CONDITION = "attribute_not_exists(sk)"


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _set_expression(attributes: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": value for i, value in enumerate(attributes.values())}
    expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
    return expression, names, values


def set_if(
    table: Any, key: dict[str, str], attributes: dict[str, Any], condition: str, extra: dict[str, Any]
) -> bool:
    """SET ``attributes`` on ``key`` if ``condition`` holds; False when it does not.

    ``extra`` holds the condition's own ``#name``/``:value`` placeholders (``#`` keys are names).
    """
    expression, names, values = _set_expression(attributes)
    names.update({k: v for k, v in extra.items() if k.startswith("#")})
    values.update({k: v for k, v in extra.items() if k.startswith(":")})
    try:
        table.update_item(
            Key=key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as error:
        if _condition_failed(error):
            return False
        raise
    return True


class DynamoCountStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    @classmethod
    def from_env(cls, table_name: str) -> DynamoCountStore:
        return cls(boto3.resource("dynamodb").Table(table_name))

    def get_image(self, bin_id: str, sort_key: str) -> dict[str, Any] | None:
        key = {"pk": bin_pk(bin_id), "sk": sort_key}
        response = self.table.get_item(Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def put_image(self, item: dict[str, Any]) -> bool:
        try:
            self.table.put_item(Item=item, ConditionExpression=IMAGE_CONDITION)
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def get_latest(self, bin_id: str) -> dict[str, Any] | None:
        response = self.table.get_item(Key={"pk": bin_pk(bin_id), "sk": LATEST_SK}, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def put_latest(self, bin_id: str, attributes: dict[str, Any], expected_version: str | None) -> bool:
        extra: dict[str, Any] = {"#version": "latest_version"}
        if expected_version is None:
            condition = "attribute_not_exists(#version)"
        else:
            condition = "#version = :expected"
            extra[":expected"] = expected_version
        return set_if(self.table, {"pk": bin_pk(bin_id), "sk": LATEST_SK}, attributes, condition, extra)


class DynamoJobStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    @classmethod
    def from_env(cls, table_name: str) -> DynamoJobStore:
        return cls(boto3.resource("dynamodb").Table(table_name))

    def get(self, job_name: str) -> dict[str, Any] | None:
        response = self.table.get_item(Key={"pk": job_name}, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def record(self, job_name: str, attributes: dict[str, Any]) -> bool:
        try:
            self.table.put_item(
                Item={"pk": job_name, "job_name": job_name, **attributes},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def update(self, job_name: str, attributes: dict[str, Any], remove: Sequence[str] = ()) -> None:
        expression, names, values = _set_expression({"job_name": job_name, **attributes})
        if remove:
            names.update({f"#r{i}": name for i, name in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        self.table.update_item(
            Key={"pk": job_name},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def in_flight(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {
            "IndexName": IN_FLIGHT_INDEX,
            "KeyConditionExpression": "#f = :f",
            "ExpressionAttributeNames": {"#f": IN_FLIGHT_ATTRIBUTE},
            "ExpressionAttributeValues": {":f": IN_FLIGHT_VALUE},
        }
        while True:
            response = self.table.query(**query)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            query["ExclusiveStartKey"] = response["LastEvaluatedKey"]
