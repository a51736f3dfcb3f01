"""Play the inventory system: write each bin's expected quantity before its photos arrive.

In production the warehouse's inventory system keeps ``expected_quantity`` on the bin's
``LATEST`` item of the counts table (functions/bincount/count_records.py); the collector reads it when
a count lands and publishes ``Inventory Discrepancy Detected`` when the two disagree. The demo
knows the true counts (labels.csv, or the generated photos), so it writes them the way such a
system would, an ``UpdateItem`` that sets only its own attributes, and the discrepancy events
appear in the demo like in a warehouse. `bincount upload --expected labels.csv` writes them the
same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from bincount.count_records import LATEST_SK, bin_pk


class Labelled(Protocol):
    """An upload of the demo or of `bincount upload`: its bin and known count (None: unknown)."""

    @property
    def bin_id(self) -> str: ...

    @property
    def expected(self) -> int | None: ...


def expected_quantities(uploads: Iterable[Labelled]) -> dict[str, int]:
    """One expected quantity per bin: the label of the bin's last photo in upload order (newest)."""
    quantities: dict[str, int] = {}
    for upload in uploads:
        if upload.expected is not None:
            quantities[upload.bin_id] = upload.expected
    return quantities


def write_expected_quantities(dynamodb: Any, table: str, quantities: dict[str, int]) -> None:
    """SET ``expected_quantity`` on each bin's LATEST item, keeping whatever else it holds."""
    for bin_id, quantity in quantities.items():
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": bin_pk(bin_id)}, "sk": {"S": LATEST_SK}},
            UpdateExpression="SET expected_quantity = :quantity, bin_id = :bin",
            ExpressionAttributeValues={":quantity": {"N": str(quantity)}, ":bin": {"S": bin_id}},
        )
