"""The corrections function (functions/corrected/app.py) on the sample stream event, with fakes:
which stored changes are labels, what it publishes, which records it reports as failed."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from bincount.corrections import CorrectionPublisher, HumanLabel, MalformedRecord, label_change
from bincount.inventory_events import BinCountCorrected, from_detail
from corrected.app import CorrectedRuntime, process
from pipeline_fakes import MemoryCounts, RecordingSender


@pytest.fixture
def stream_event(events_dir: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((events_dir / "dynamodb_stream_label_saved.json").read_text())
    return event


def runtime(sender: RecordingSender, counts: MemoryCounts | None = None) -> CorrectedRuntime:
    publisher = CorrectionPublisher(counts or MemoryCounts(), sender, "bus")
    return CorrectedRuntime(publisher, BatchProcessor(event_type=EventType.DynamoDBStreams))


def test_a_saved_label_is_published_with_the_events_schema(stream_event: dict[str, Any]) -> None:
    sender, counts = RecordingSender(), MemoryCounts()
    assert process(stream_event, runtime(sender, counts)) == {"batchItemFailures": []}
    (entry,) = sender.delivered
    event = from_detail(entry["DetailType"], json.loads(entry["Detail"]))
    assert isinstance(event, BinCountCorrected) and entry["EventBusName"] == "bus"
    assert (event.count, event.model_count, event.count_is_lower_bound) == (4, 3, False)
    assert event.image.version_id == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    assert event.latest_updated is True and counts.get_latest("BIN-1")["count"] == 4  # no LATEST before


def test_changes_that_save_no_label_publish_nothing(stream_event: dict[str, Any]) -> None:
    (record,) = stream_event["Records"]
    recount = copy.deepcopy(record)  # the model's fields change, the label stays
    recount["dynamodb"]["OldImage"] = copy.deepcopy(record["dynamodb"]["NewImage"])
    recount["dynamodb"]["NewImage"]["model_version"] = {"S": "bincount-next"}
    removed = copy.deepcopy(record)
    removed["eventName"] = "REMOVE"
    del removed["dynamodb"]["NewImage"]
    latest = copy.deepcopy(record)
    latest["dynamodb"]["NewImage"]["sk"] = {"S": "LATEST"}
    for number, changed in enumerate((recount, removed, latest)):
        changed["dynamodb"]["SequenceNumber"] = str(number)
    sender = RecordingSender()
    assert process({"Records": [recount, removed, latest]}, runtime(sender)) == {"batchItemFailures": []}
    assert sender.delivered == []


def test_a_refused_event_fails_its_record_for_the_stream_to_retry(stream_event: dict[str, Any]) -> None:
    (record,) = stream_event["Records"]
    later = copy.deepcopy(record)
    later["dynamodb"]["SequenceNumber"] = "111100000000012345678999"
    sender = RecordingSender({(0, 0): "AccessDeniedException"})  # not retried by put_all
    answer = process({"Records": [record, later]}, runtime(sender))
    assert answer == {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    assert len(sender.delivered) == 1  # the second record's event went out


@pytest.mark.parametrize("count", [{"S": "../../abc"}, {"N": "-1"}, {"N": "2.5"}, {"BOOL": True}])
def test_a_malformed_label_is_skipped_not_retried(
    stream_event: dict[str, Any], count: dict[str, Any]
) -> None:
    stream_event["Records"][0]["dynamodb"]["NewImage"]["human_count"] = count
    sender = RecordingSender()
    assert process(stream_event, runtime(sender)) == {"batchItemFailures": []}
    assert sender.delivered == []


def test_label_change_compares_the_label_fields_only() -> None:
    old = {"sk": "IMAGE#k#v", "count": 3}
    new = {**old, "human_count": 4, "human_count_is_lower_bound": False, "reviewed_at": "t1"}
    assert label_change(old, new) == HumanLabel(4)
    assert label_change(new, {**new, "count": 2}) is None
    assert label_change(new, {**new, "human_count": 6, "human_count_is_lower_bound": True}) == HumanLabel(
        6, True
    )
    assert label_change(new, {**new, "reviewed_at": "t2"}) == HumanLabel(4)  # saved again by another person
    assert label_change(old, {"sk": "LATEST", "human_count": 4}) is None
    with pytest.raises(MalformedRecord, match=re.escape("human_count '../../abc' is not a count")):
        label_change(old, {**new, "human_count": "../../abc"})
