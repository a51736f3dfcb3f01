"""Emulator costs that AWS does not have, removed in the local moto server.

**Transactions.** moto 5.2's ``TransactWriteItems`` backs up the whole table with
``copy.deepcopy`` once per item of the transaction, before looking at any condition, so that it
can roll back. With a counts table of a few thousand records, a transaction of 100 image records
copied the table 100 times: seconds of the emulator's single core per job, and the batched
collector measured slower than the per-photo one. On AWS a transaction costs two write units
per item and nothing per table size.

The patch keeps moto's own transaction code and answers, and changes only when it copies:
every condition is checked first, against the same items with moto's own expression
evaluator; if one fails, the transaction is cancelled with moto's ``TransactionCanceledException``
(the same cancellation reasons, nothing written, nothing to roll back). Only when every condition
holds does moto's code run, with its table backup skipped. What is lost: a transaction that fails
*while writing* after its conditions held (a malformed update expression, a concurrent write
between the check and the write) is no longer rolled back in the emulator.

**Event delivery.** For every event and every rule target, moto's EventBridge builds a new
JSONPath parser (a PLY grammar) for each input path of the default input template: 13 % of the
server's samples under the benchmark. Parsing the same path gives the same immutable expression,
so ``jsonpath_ng.ext.parse`` is memoised.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import jsonpath_ng.ext
from moto.dynamodb import models as dynamodb_models
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import TransactionCanceledException
from moto.dynamodb.models.table import Table

_original_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


class _CopyWithoutTableBackups:
    """``copy`` for moto's dynamodb models module: tables are not copied (see the module doc)."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


_cached_jsonpath_parse = functools.lru_cache(maxsize=512)(jsonpath_ng.ext.parse)


def _condition_failure(backend: Any, action: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(code, message, item) of one transaction item as moto reports it; (None,)*3 when it holds."""
    op_type, op = next(iter(action.items()))
    condition = op.get("ConditionExpression")
    if condition is None:
        return None, None, None
    table = backend.get_table(op["TableName"])
    if op_type == "Put":
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
    else:
        key = op["Key"]
    current = backend.get_item(op["TableName"], key)
    evaluator = get_filter_expression(
        condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    )
    if evaluator.expr(current):
        return None, None, None
    old = None
    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
        old = current.to_json()["Attributes"]
    return "ConditionalCheckFailed", "The conditional request failed", old


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    try:
        errors = [_condition_failure(self, action) for action in transact_items]
    except Exception:  # malformed: moto's own code gives its own answer
        return _original_transact_write_items(self, transact_items)
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    return _original_transact_write_items(self, transact_items)


def apply(set_attribute: Callable[[Any, str, Any], None] = setattr) -> None:
    """Install the patch in this process (the emulator's; tests pass ``monkeypatch.setattr``)."""
    set_attribute(dynamodb_models, "copy", _CopyWithoutTableBackups())
    set_attribute(dynamodb_models.DynamoDBBackend, "transact_write_items", transact_write_items)
    set_attribute(jsonpath_ng.ext, "parse", _cached_jsonpath_parse)
