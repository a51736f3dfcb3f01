"""Reading the counts and jobs tables for the operator's commands, and the row fields more than one
command shows (each command's own rules live in its module under cli/commands/).

The counts table holds ``BIN#<id> / LATEST`` (the latest count of a bin) and
``BIN#<id> / IMAGE#<key>#<version digest>`` (one per upload, a count or an error: a re-upload
of a key is a record of its own), see functions/bincount/count_records.py. Both readers match the
``IMAGE#`` prefix, so they find every upload. Listing bins scans for the LATEST items (paginated); a bin's
history is one query on its partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from bincount.count_records import LATEST_SK, bin_pk

Item = dict[str, Any]
MODEL = "model"
PERSON = "person"


def _items(client: Any, operation: str, **request: Any) -> Iterator[Item]:
    """Every item of a paginated scan or query, as plain values (the resource layer's types)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    for page in client.get_paginator(operation).paginate(**request):
        for item in page.get("Items", []):
            yield {name: deserializer.deserialize(value) for name, value in item.items()}


def latest_items(dynamodb: Any, table: str) -> list[Item]:
    """The LATEST item of every bin."""
    values = {":latest": {"S": LATEST_SK}}
    return list(
        _items(
            dynamodb,
            "scan",
            TableName=table,
            FilterExpression="sk = :latest",
            ExpressionAttributeValues=values,
        )
    )


def image_items_of_bin(dynamodb: Any, table: str, bin_id: str) -> list[Item]:
    """Every IMAGE# record of one bin (one query on its partition)."""
    condition = "pk = :pk AND begins_with(sk, :image)"
    values = {":pk": {"S": bin_pk(bin_id)}, ":image": {"S": "IMAGE#"}}
    return list(
        _items(
            dynamodb,
            "query",
            TableName=table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
    )


def image_items(dynamodb: Any, table: str) -> list[Item]:
    """Every IMAGE# record of every bin (one scan)."""
    values = {":image": {"S": "IMAGE#"}}
    request = {"FilterExpression": "begins_with(sk, :image)", "ExpressionAttributeValues": values}
    return list(_items(dynamodb, "scan", TableName=table, **request))


def error_items(dynamodb: Any, table: str) -> list[Item]:
    """Every image record that ended as an error."""
    return list(
        _items(
            dynamodb,
            "scan",
            TableName=table,
            FilterExpression="begins_with(sk, :image) AND #outcome = :error",
            ExpressionAttributeNames={"#outcome": "outcome"},
            ExpressionAttributeValues={":image": {"S": "IMAGE#"}, ":error": {"S": "error"}},
        )
    )


def job_items(dynamodb: Any, table: str) -> list[Item]:
    return list(_items(dynamodb, "scan", TableName=table))


# -- row fields that `bins` and `history` share ----------------------------------------------------


def range_fields(item: Item) -> Item:
    """The calibrated range of a stored count as plain values (all None without one)."""
    low, high, level = item.get("count_low"), item.get("count_high"), item.get("range_level")
    return {
        "count_low": None if low is None else int(low),
        "count_high": None if high is None else int(high),
        "range_level": None if level is None else float(level),
        "range_open": None if item.get("range_open") is None else bool(item["range_open"]),
        "review_reason": item.get("review_reason"),
    }


def select_reviewed(rows: Iterable[Item], reviewed: str | None) -> list[Item]:
    """``--reviewed yes``: rows a person labelled; ``no``: the others; None: all."""
    if reviewed is None:
        return list(rows)
    return [row for row in rows if row["reviewed"] == (reviewed == "yes")]


def source_text(row: Item) -> str:
    """Where a count came from, as the tables show it: ``model``, ``alice`` or ``alice, accepted``."""
    if row.get("count_source", MODEL if not row.get("reviewed") else PERSON) == MODEL:
        return MODEL
    accepted = row.get("label_source") == "accepted"
    return f"{row.get('reviewer') or 'person'}{', accepted' if accepted else ''}"
