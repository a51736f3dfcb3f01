"""DynamoDB tables behind CountStore and JobStore (resource API: numbers as Decimal).

Every write condition of the counts table is built here, once (``image_put``, ``latest_update``),
and used both by the single-item calls and by the batched ones: TransactWriteItems carries up
to 100 conditional writes in one round trip (BatchWriteItem cannot carry conditions). The
transactions are only a way to batch: a cancelled one names, per item, whether its condition
failed, and the items that did not fail are sent again without it. They cost two write units
per item instead of one, for 100x fewer round trips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from bincount.adapters.aws_errors import CONDITION_FAILED, error_code, succeeded
from bincount.count_records import LATEST_SK, CountSnapshot, LatestWrite, bin_pk
from bincount.recounts import HISTORY_ATTRIBUTE, RecountWrite
from bincount.submission import IN_FLIGHT_ATTRIBUTE, IN_FLIGHT_VALUE

# Sparse index of the jobs table (template.yaml): only jobs not yet collected carry ``in_flight``.
IN_FLIGHT_INDEX = "InFlight"

# Once per object version: the sort key names the upload (key + version), so a replay is refused
# and a re-upload of the key, another version, gets its own record.
IMAGE_CONDITION = "attribute_not_exists(sk)"
MAX_TRANSACTION_ITEMS = 100  # TransactWriteItems
MAX_BATCH_GET_KEYS = 100  # BatchGetItem
MAX_BATCH_ATTEMPTS = 8
# Cancellation reasons that say nothing against the item itself: send it again.
RETRYABLE_REASONS = frozenset(
    {
        "None",
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
    }
)


class BatchIncomplete(Exception):
    """DynamoDB kept some of a batch unprocessed after every attempt; the caller retries the event."""


def _set_expression(attributes: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    values = {f":v{i}": value for i, value in enumerate(attributes.values())}
    expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(attributes)))
    return expression, names, values


def conditional_set(
    key: dict[str, str], attributes: dict[str, Any], condition: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """UpdateItem arguments: SET ``attributes`` on ``key`` if ``condition`` holds.

    ``extra`` holds the condition's own ``#name``/``:value`` placeholders (``#`` keys are names).
    The same arguments serve a single UpdateItem (:func:`set_if`) and an ``Update`` of a
    transaction (``DynamoCountStore.put_latests``).
    """
    expression, names, values = _set_expression(attributes)
    names.update({k: v for k, v in extra.items() if k.startswith("#")})
    values.update({k: v for k, v in extra.items() if k.startswith(":")})
    return {
        "Key": key,
        "UpdateExpression": expression,
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def set_if(
    table: Any, key: dict[str, str], attributes: dict[str, Any], condition: str, extra: dict[str, Any]
) -> bool:
    """SET ``attributes`` on ``key`` if ``condition`` holds; False when it does not."""
    return _update_if(table, conditional_set(key, attributes, condition, extra))


def _update_if(table: Any, arguments: dict[str, Any]) -> bool:
    return succeeded(partial(table.update_item, **arguments), (CONDITION_FAILED,))


def image_put(item: dict[str, Any]) -> dict[str, Any]:
    """PutItem arguments of an image record: the record's write rules in one place."""
    return {"Item": item, "ConditionExpression": IMAGE_CONDITION}


def latest_update(write: LatestWrite) -> dict[str, Any]:
    """UpdateItem arguments moving a bin's LATEST, if it still holds the version read."""
    extra: dict[str, Any] = {"#version": "latest_version"}
    if write.expected_version is None:
        condition = "attribute_not_exists(#version)"
    else:
        condition = "#version = :expected"
        extra[":expected"] = write.expected_version
    return conditional_set({"pk": bin_pk(write.bin_id), "sk": LATEST_SK}, write.attributes, condition, extra)


def recount_update(write: RecountWrite) -> dict[str, Any]:
    """UpdateItem arguments of a re-count (bincount.recounts): the model fields SET, the previous
    result appended to the history, if the record still holds the model version read."""
    extra: dict[str, Any] = {"#mv": "model_version"}
    if write.expected_version is None:
        condition = "attribute_not_exists(#mv)"
    else:
        condition, extra[":expected"] = "#mv = :expected", write.expected_version
    arguments = conditional_set(
        {"pk": bin_pk(write.bin_id), "sk": write.sort_key}, write.attributes, condition, extra
    )
    arguments["UpdateExpression"] += ", #history = list_append(if_not_exists(#history, :empty), :entry)"
    arguments["ExpressionAttributeNames"]["#history"] = HISTORY_ATTRIBUTE
    arguments["ExpressionAttributeValues"].update({":empty": [], ":entry": [write.history]})
    return arguments


class DynamoCountStore:
    def __init__(self, table: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        self.table = table
        self.sleep = sleep

    # -- one item at a time -----------------------------------------------------------------------

    def get_image(self, bin_id: str, sort_key: str) -> dict[str, Any] | None:
        key = {"pk": bin_pk(bin_id), "sk": sort_key}
        response = self.table.get_item(Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def put_image(self, item: dict[str, Any]) -> bool:
        return succeeded(partial(self.table.put_item, **image_put(item)), (CONDITION_FAILED,))

    def get_latest(self, bin_id: str) -> dict[str, Any] | None:
        response = self.table.get_item(Key={"pk": bin_pk(bin_id), "sk": LATEST_SK}, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def put_latest(self, bin_id: str, attributes: dict[str, Any], expected_version: str | None) -> bool:
        return _update_if(self.table, latest_update(LatestWrite(bin_id, attributes, expected_version)))

    # -- batched ----------------------------------------------------------------------------------

    def read_state(self, bin_ids: Collection[str], images: Collection[tuple[str, str]]) -> CountSnapshot:
        """LATEST of ``bin_ids`` and the records of ``(bin_id, sort key)``: consistent BatchGetItem."""
        keys = [{"pk": bin_pk(bin_id), "sk": LATEST_SK} for bin_id in sorted(set(bin_ids))]
        keys += [{"pk": bin_pk(bin_id), "sk": sort_key} for bin_id, sort_key in sorted(set(images))]
        snapshot = CountSnapshot()
        for item in self._batch_get(keys):
            if item["sk"] == LATEST_SK:
                snapshot.latest[str(item["pk"]).removeprefix("BIN#")] = item
            else:
                snapshot.images[str(item["sk"])] = item
        return snapshot

    def put_latests(self, writes: Sequence[LatestWrite]) -> set[str]:
        """Apply every write whose condition holds; returns the bins whose LATEST had moved on."""
        actions = [{"Update": {"TableName": self.table.name, **latest_update(write)}} for write in writes]
        reasons = self._transact(actions)
        return {write.bin_id for write, reason in zip(writes, reasons, strict=True) if reason is not None}

    def put_images(self, items: Sequence[dict[str, Any]]) -> list[bool]:
        """Write each record unless one of the same or a newer version exists (False: duplicate)."""
        actions = [{"Put": {"TableName": self.table.name, **image_put(item)}} for item in items]
        return [reason is None for reason in self._transact(actions)]

    def put_recounts(self, writes: Sequence[RecountWrite]) -> list[bool]:
        """Apply each re-count whose record still holds the version read (False: a duplicate)."""
        actions = [{"Update": {"TableName": self.table.name, **recount_update(write)}} for write in writes]
        return [reason is None for reason in self._transact(actions)]

    def _batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        client, name, found = self.table.meta.client, self.table.name, []
        for start in range(0, len(keys), MAX_BATCH_GET_KEYS):
            request: dict[str, Any] = {
                name: {"Keys": keys[start : start + MAX_BATCH_GET_KEYS], "ConsistentRead": True}
            }
            for attempt in range(MAX_BATCH_ATTEMPTS):
                response = client.batch_get_item(RequestItems=request)
                found.extend(response.get("Responses", {}).get(name, []))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self.sleep(0.05 * 2**attempt)
            else:
                raise BatchIncomplete(f"BatchGetItem left {len(request[name]['Keys'])} keys unprocessed")
        return found

    def _transact(self, actions: list[dict[str, Any]]) -> list[str | None]:
        """Each action's failed-condition code (None: written), one transaction per chunk.

        Items held back only because another item's condition failed (reason ``None``) are sent
        again at once; conflicts and throttling back off first.
        """
        outcome: list[str | None] = [None] * len(actions)
        for start in range(0, len(actions), MAX_TRANSACTION_ITEMS):
            pending = list(range(start, min(start + MAX_TRANSACTION_ITEMS, len(actions))))
            for attempt in range(MAX_BATCH_ATTEMPTS):
                pending, contended = self._transact_once(actions, pending, outcome)
                if not pending:
                    break
                if contended:
                    self.sleep(0.05 * 2**attempt)
            else:
                raise BatchIncomplete(f"TransactWriteItems kept {len(pending)} writes back")
        return outcome

    def _transact_once(
        self, actions: list[dict[str, Any]], pending: list[int], outcome: list[str | None]
    ) -> tuple[list[int], bool]:
        """One transaction over ``pending``: records failed conditions; (to send again, contended)."""
        try:
            self.table.meta.client.transact_write_items(TransactItems=[actions[i] for i in pending])
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons") or []
            if len(reasons) != len(pending):
                raise
            retry, contended = [], False
            for index, reason in zip(pending, reasons, strict=True):
                code = str(reason.get("Code") or "None")
                if code == "ConditionalCheckFailed":
                    outcome[index] = code
                elif code in RETRYABLE_REASONS:
                    retry.append(index)
                    contended = contended or code != "None"
                else:
                    raise
            return retry, contended
        return [], False


class DynamoJobStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, job_name: str) -> dict[str, Any] | None:
        response = self.table.get_item(Key={"pk": job_name}, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def record(self, job_name: str, attributes: dict[str, Any]) -> bool:
        put = partial(
            self.table.put_item,
            Item={"pk": job_name, "job_name": job_name, **attributes},
            ConditionExpression="attribute_not_exists(pk)",
        )
        return succeeded(put, (CONDITION_FAILED,))

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
