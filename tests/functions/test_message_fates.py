"""Which SQS messages of a batch stay in the queue, and which of them only wait for capacity:
bincount.intake.message_fates on plain data, and the batcher's typed reading of SQS records."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from batcher import app
from bincount.intake import IntakePlan, MessageFates, message_fates
from bincount.submission import BatchReport

REASONS = ("malformed", "unrecorded", "unrefused", "staging_failed", "job_failed", "job_deferred")


def fates_for(reasons_by_message: dict[str, set[str]]) -> MessageFates:
    """Build the plan, the submission report and the side-effect sets the batcher passes."""

    def owners(reason: str) -> set[str]:
        return {message for message, reasons in reasons_by_message.items() if reason in reasons}

    plan = IntakePlan(
        malformed={message: "not JSON" for message in owners("malformed")},
        failed_messages=owners("staging_failed"),
    )
    report = BatchReport(failed_messages=owners("job_failed"), deferred_messages=owners("job_deferred"))
    return message_fates(plan, report, unrecorded=owners("unrecorded"), unrefused=owners("unrefused"))


@pytest.mark.parametrize(
    ("reasons", "failing", "waiting"),
    [
        (set(), False, False),
        ({"malformed"}, True, False),
        ({"unrecorded"}, True, False),
        ({"unrefused"}, True, False),
        ({"staging_failed"}, True, False),
        ({"job_failed"}, True, False),
        ({"job_deferred"}, True, True),
        ({"job_deferred", "job_failed"}, True, False),
        ({"job_deferred", "staging_failed"}, True, False),
        ({"job_deferred", "unrecorded"}, True, False),
        ({"job_deferred", "unrefused"}, True, False),
    ],
    ids=lambda value: "+".join(sorted(value)) if isinstance(value, set) else str(value),
)
def test_each_reason_decides_one_message(reasons: set[str], failing: bool, waiting: bool) -> None:
    fates = fates_for({"m": reasons})
    assert ("m" in fates.failing, "m" in fates.waiting) == (failing, waiting)


@pytest.mark.parametrize(
    "reasons",
    [set(combo) for size in range(len(REASONS) + 1) for combo in combinations(REASONS, size)],
    ids=lambda reasons: "+".join(sorted(reasons)) or "none",
)
def test_every_combination_fails_on_any_reason_and_waits_only_for_capacity(reasons: set[str]) -> None:
    fates = fates_for({"m": reasons, "clean": set()})
    assert ("m" in fates.failing) == bool(reasons)
    assert ("m" in fates.waiting) == (reasons == {"job_deferred"})
    assert "clean" not in fates.failing | fates.waiting
    assert fates.waiting <= fates.failing


def test_a_batch_decides_each_message_on_its_own() -> None:
    fates = fates_for(
        {
            "done": set(),
            "bad-body": {"malformed"},
            "no-record": {"unrecorded"},
            "other-bucket": {"unrefused"},
            "copy-failed": {"staging_failed"},
            "refused-job": {"job_failed"},
            "over-cap": {"job_deferred"},
            "split": {"job_deferred", "job_failed"},  # images in a deferred and in a refused chunk
        }
    )
    assert fates == MessageFates(
        failing=frozenset(
            {"bad-body", "no-record", "other-bucket", "copy-failed", "refused-job", "over-cap", "split"}
        ),
        waiting=frozenset({"over-cap"}),
    )


def test_nothing_to_report_without_messages() -> None:
    assert message_fates(IntakePlan(), BatchReport()) == MessageFates(frozenset(), frozenset())


def test_records_are_read_through_the_typed_sqs_event(event_file: Any) -> None:
    event = SQSEvent(event_file("sqs_s3_object_created.json"))
    records = list(event.records)
    assert [app.receive_count(record) for record in records] == [1, 2]
    response = app.partial_batch_response(records, {records[1].message_id, "not-in-batch"})
    assert response == {"batchItemFailures": [{"itemIdentifier": "2e1424d4-f796-459a-8184-9c92662be6da"}]}


def test_receive_count_defaults_to_one_when_the_attribute_is_missing(event_file: Any) -> None:
    raw = event_file("sqs_s3_object_created.json")
    del raw["Records"][0]["attributes"]
    raw["Records"][1]["attributes"] = {}
    assert [app.receive_count(record) for record in SQSEvent(raw).records] == [1, 1]
