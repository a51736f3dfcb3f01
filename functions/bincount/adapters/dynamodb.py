"""DynamoDB tables behind CountStore and JobStore (resource API: numbers as Decimal)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from bincount.corrections import MODEL_WRITE_GUARD
from bincount.records import LATEST_SK, bin_pk, image_sk

# Once per object version: a replay is refused, and so is an older version of the same key; a
# newer version never replaces a reviewer's label (MODEL_WRITE_GUARD, bincount/corrections.py).
IMAGE_CONDITION = (
    f"attribute_not_exists(sk) OR (etag <> :etag AND captured_at < :captured_at AND {MODEL_WRITE_GUARD})"
)


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

    @classmethod
    def from_env(cls, table_name: str) -> DynamoCountStore:
        return cls(boto3.resource("dynamodb").Table(table_name))

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

    def update(self, job_name: str, attributes: dict[str, Any]) -> None:
        expression, names, values = _set_expression({"job_name": job_name, **attributes})
        self.table.update_item(
            Key={"pk": job_name},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
