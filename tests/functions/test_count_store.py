"""The counts table's batched calls against the table from template.yaml in moto, and the
cancellation handling of TransactWriteItems with a Stubber (only failed conditions are final)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from bincount.adapters.dynamodb import MAX_TRANSACTION_ITEMS, DynamoCountStore
from bincount.count_records import LatestWrite
from botocore.stub import ANY, Stubber
from pipeline_support import REGION


def image(i: int, etag: str = "e") -> dict[str, Any]:
    key = f"incoming/B{i % 7}/p{i:04d}.jpg"
    return {
        "pk": f"BIN#B{i % 7}",
        "sk": f"IMAGE#{key}",
        "image_key": key,
        "etag": f"{etag}{i}",
        "captured_at": "2026-01-01T00:00:00.000Z",
        "job_name": "job-1",
    }


@pytest.fixture
def store(stack: Any) -> DynamoCountStore:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.outputs["CountsTableName"])
    return DynamoCountStore(table, sleep=lambda _: None)


def test_put_images_skips_only_the_duplicates_across_transactions(store: DynamoCountStore) -> None:
    items = [image(i) for i in range(MAX_TRANSACTION_ITEMS + 30)]
    for already in (items[5], items[110]):
        assert store.put_image({**already, "job_name": "earlier"})

    written = store.put_images(items)

    assert [i for i, was_written in enumerate(written) if not was_written] == [5, 110]
    snapshot = store.read_state({"B0", "B1"}, [(f"B{i % 7}", item["sk"]) for i, item in enumerate(items)])
    assert len(snapshot.images) == len(items)
    assert snapshot.images[items[5]["sk"]]["job_name"] == "earlier"  # never overwritten
    assert snapshot.images[items[6]["sk"]]["job_name"] == "job-1"


def test_put_latests_reports_the_bins_that_moved_on(store: DynamoCountStore) -> None:
    assert store.put_latests([LatestWrite("B1", {"count": 1, "latest_version": "v1"}, None)]) == set()
    lost = store.put_latests(
        [
            LatestWrite("B1", {"count": 9, "latest_version": "v9"}, "v0"),  # someone else moved it
            LatestWrite("B2", {"count": 2, "latest_version": "v2"}, None),
        ]
    )
    assert lost == {"B1"}
    latest = store.read_state({"B1", "B2", "B3"}, []).latest
    assert {bin_id: item["count"] for bin_id, item in latest.items()} == {"B1": 1, "B2": 2}


def test_a_cancelled_transaction_resends_only_the_innocent_and_the_conflicted(stack: Any) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.outputs["CountsTableName"])
    stubber = Stubber(table.meta.client)
    reasons = [{"Code": "ConditionalCheckFailed"}, {"Code": "None"}, {"Code": "TransactionConflict"}]
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled",
        response_meta={},
        modeled_fields={"CancellationReasons": reasons},
        expected_params={"TransactItems": [ANY, ANY, ANY]},
    )
    stubber.add_response("transact_write_items", {}, {"TransactItems": [ANY, ANY]})
    sleeps: list[float] = []
    with stubber:
        written = DynamoCountStore(table, sleep=sleeps.append).put_images([image(1), image(2), image(3)])
    stubber.assert_no_pending_responses()
    assert written == [False, True, True]
    assert len(sleeps) == 1  # a conflict backs off before the resend
