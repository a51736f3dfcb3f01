"""DynamoDB tables behind CountStore and JobStore (resource API: numbers as Decimal)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from bincount.records import LATEST_SK, bin_pk, image_sk
from bincount.submission import IN_FLIGHT_ATTRIBUTE, IN_FLIGHT_VALUE

# Sparse index of the jobs table (template.yaml): only jobs not yet collected carry ``in_flight``.
IN_FLIGHT_INDEX = "InFlight"

# Once per object version: a replay is refused, and so is an older version of the same key.
IMAGE_CONDITION = "attribute_not_exists(sk) OR (etag <> :etag AND captured_at < :captured_at)"


def _condition_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _set_expression(attributes: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": value for i, value in enumerate(attributes.values())}
    expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
    return expression, names, values


class DynamoCountStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    def get_image(self, bin_id: str, image_key: str) -> dict[str, Any] | None:
        key = {"pk": bin_pk(bin_id), "sk": image_sk(image_key)}
        response = self.table.get_item(Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def put_image(self, item: dict[str, Any]) -> bool:
        try:
            self.table.put_item(
                Item=item,
                ConditionExpression=IMAGE_CONDITION,
                ExpressionAttributeValues={":etag": item["etag"], ":captured_at": item["captured_at"]},
            )
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
        expression, names, values = _set_expression(attributes)
        names["#version"] = "latest_version"
        if expected_version is None:
            condition = "attribute_not_exists(#version)"
        else:
            condition = "#version = :expected"
            values[":expected"] = expected_version
        try:
            self.table.update_item(
                Key={"pk": bin_pk(bin_id), "sk": LATEST_SK},
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


class DynamoJobStore:
    def __init__(self, table: Any) -> None:
        self.table = table

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
