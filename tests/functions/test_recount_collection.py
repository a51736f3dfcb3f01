"""The collector's re-count write against DynamoDB (moto): the new model's result goes onto the
existing records with their history, once; human labels survive; only the newest photo moves
its bin's LATEST."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from bincount.adapters.dynamodb import DynamoCountStore
from bincount.batching import Chunk, output_key_for, plan_chunks
from bincount.collection import Collector
from bincount.count_decisions import DecisionRules
from bincount.count_records import image_record_sk
from bincount.job_events import TransformJobEvent
from bincount.recounts import recount_chunks, recount_image
from bincount.submission import Submitter
from bincount.uploads import ImageObject
from pipeline_fakes import CONFIG, LAYOUT, FakeTransforms, MemoryJobs, MemoryObjects, RecordingSender
from pipeline_support import REGION

RULES = DecisionRules(confidence_threshold=0.5)

OLD = ImageObject(
    "ingest", "incoming/B1/old.jpg", "e-old", 10, "B1", "2026-01-01T01:00:00.000Z", "image/jpeg"
)
NEW = ImageObject(
    "ingest", "incoming/B1/new.jpg", "e-new", 10, "B1", "2026-01-01T03:00:00.000Z", "image/jpeg"
)


@pytest.fixture
def counts(stack: Any) -> DynamoCountStore:
    """The counts table of template.yaml (moto)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(stack.outputs["CountsTableName"])
    return DynamoCountStore(table, sleep=lambda _: None)


class Pipeline:
    def __init__(self, counts: DynamoCountStore) -> None:
        self.objects, self.sender, self.counts = MemoryObjects(), RecordingSender(), counts
        submitter = Submitter(self.objects, FakeTransforms(), MemoryJobs(), LAYOUT, CONFIG)
        self.collector = Collector(
            self.objects,
            counts,
            MemoryJobs(),
            self.sender,
            submitter,
            LAYOUT,
            "bus",
            DecisionRules(confidence_threshold=0.5),
            "bincount",
        )

    def run(
        self, chunk: Chunk, counts: dict[str, int], version: str, served: dict[str, Any] | None = None
    ) -> Any:
        """Submit the chunk, play Batch Transform (one .out per photo), collect the finished job
        (``served``: fields every record adds, e.g. a calibrated range)."""
        self.collector.submitter.submit(chunk)
        for image in chunk.images:
            record = {
                "count": counts[image.key],
                "confidence": 0.9,
                "probabilities": [0.1],
                "model_version": version,
                **(served or {}),
            }
            key = output_key_for(LAYOUT, chunk.job_name, image.manifest_entry)
            self.objects.put_bytes("results", key, json.dumps(record).encode())
        return self.collector.collect(TransformJobEvent(chunk.job_name, "Completed"))

    def record(self, image: ImageObject) -> dict[str, Any]:
        item = self.counts.get_image(image.bin_id, image_record_sk(image))
        assert item is not None
        return item

    def recount(self, counts: dict[str, int], version: str, served: dict[str, Any] | None = None) -> Any:
        images = [recount_image(self.record(image)) for image in (OLD, NEW)]
        (chunk,) = recount_chunks(images, 10, "bincount", version)
        return self.run(chunk, counts, version, served)

    def updates(self) -> list[tuple[int, int | None, str]]:
        details = [
            json.loads(e["Detail"]) for e in self.sender.delivered if e["DetailType"] == "Bin Count Updated"
        ]
        return [(d["count"], d["previous_count"], d["model_version"]) for d in details]


@pytest.fixture
def counted(counts: DynamoCountStore) -> Pipeline:
    """Both photos of bin B1 counted by v1 (old: 1, new: 3)."""
    pipeline = Pipeline(counts)
    (chunk,) = plan_chunks([OLD, NEW], 10)
    pipeline.run(chunk, {OLD.key: 1, NEW.key: 3}, "v1")
    return pipeline


def test_a_recount_updates_the_records_keeps_history_and_moves_latest_for_the_newest_only(
    counted: Pipeline,
) -> None:
    report = counted.recount({OLD.key: 2, NEW.key: 4}, "v2")

    assert report.recounted == 2 and report.duplicates == 0
    old, new = counted.record(OLD), counted.record(NEW)
    assert (old["count"], old["model_version"], new["count"], new["model_version"]) == (2, "v2", 4, "v2")
    assert [(h["model_version"], h["count"]) for h in old["model_history"]] == [("v1", 1)]
    assert new["model_history"][0]["job_name"].startswith("bincount-") and new["job_name"].startswith(
        "bincount-rc"
    )
    latest = counted.counts.get_latest("B1")
    assert latest is not None
    assert (latest["image_key"], latest["count"], latest["previous_count"]) == (NEW.key, 4, 3)
    assert latest["model_version"] == "v2"
    assert counted.updates()[-1] == (4, 3, "v2")  # one update for the newest photo, none for the older


def test_a_replayed_recount_is_a_duplicate_and_the_history_grows_once(counted: Pipeline) -> None:
    counted.recount({OLD.key: 2, NEW.key: 4}, "v2")
    sent = len(counted.updates())

    replay = counted.recount({OLD.key: 2, NEW.key: 4}, "v2")

    assert replay.recounted == 0 and replay.duplicates == 2
    assert len(counted.record(OLD)["model_history"]) == 1
    assert len(counted.updates()) == sent


def test_a_third_version_appends_to_the_history(counted: Pipeline) -> None:
    counted.recount({OLD.key: 2, NEW.key: 4}, "v2")
    counted.recount({OLD.key: 0, NEW.key: 5}, "v3")

    history = counted.record(NEW)["model_history"]
    assert [(h["model_version"], h["count"]) for h in history] == [("v1", 3), ("v2", 4)]
    assert counted.counts.get_latest("B1")["count"] == 5  # type: ignore[index]


def test_human_labels_survive_and_latest_keeps_the_human_count(counted: Pipeline) -> None:
    table = counted.counts.table
    label = {"human_count": 7, "reviewer": "ana", "reviewed_at": "2026-01-02T00:00:00.000Z"}
    for image in (OLD, NEW):
        key = {"pk": "BIN#B1", "sk": image_record_sk(image)}
        table.update_item(
            Key=key,
            UpdateExpression="SET human_count = :c, reviewer = :r, reviewed_at = :t",
            ExpressionAttributeValues={":c": label["human_count"], ":r": "ana", ":t": label["reviewed_at"]},
        )
    table.update_item(
        Key={"pk": "BIN#B1", "sk": "LATEST"},
        UpdateExpression="SET #c = :c, human_label = :h",
        ExpressionAttributeNames={"#c": "count"},
        ExpressionAttributeValues={":c": 7, ":h": {"reviewer": "ana", "reviewed_at": label["reviewed_at"]}},
    )

    report = counted.recount({OLD.key: 2, NEW.key: 4}, "v2")

    assert report.recounted == 2
    for image, count in ((OLD, 2), (NEW, 4)):
        record = counted.record(image)
        assert (record["human_count"], record["reviewer"], record["reviewed_at"]) == (
            7,
            "ana",
            label["reviewed_at"],
        )
        assert (record["count"], record["model_version"], len(record["model_history"])) == (count, "v2", 1)
    latest = counted.counts.get_latest("B1")
    assert latest is not None and latest["count"] == 7 and latest["model_version"] == "v1"
    assert all(version == "v1" for *_, version in counted.updates())  # no Bin Count Updated from v2


def test_a_failed_recount_keeps_the_count(counted: Pipeline) -> None:
    images = [recount_image(counted.record(OLD))]
    (chunk,) = recount_chunks(images, 10, "bincount", "v2")
    counted.collector.submitter.submit(chunk)
    body = {"error": {"code": "invalid_image", "message": "bad"}, "model_version": "v2"}
    counted.objects.put_bytes(
        "results", output_key_for(LAYOUT, chunk.job_name, images[0].manifest_entry), json.dumps(body).encode()
    )

    report = counted.collector.collect(TransformJobEvent(chunk.job_name, "Completed"))

    assert report.recount_errors == 1 and report.recounted == 0
    assert (counted.record(OLD)["count"], counted.record(OLD)["model_version"]) == (1, "v1")


CALIBRATED = {
    "probabilities": [0.01, 0.3, 0.41, 0.2, 0.05, 0.03],
    "count_p_values": [0.004, 0.41, 0.83, 0.27, 0.09, 0.03],  # expected 4: p = 0.09, borderline
    "count_low": 1,
    "count_high": 3,
    "range_level": 0.9,
    "range_open": False,
    "range_contiguous": True,
}


def test_a_recount_by_a_calibrated_model_decides_again_and_an_old_one_clears_its_range(
    counted: Pipeline,
) -> None:
    """The re-count's review is decided against the bin's expected quantity, its range lands on
    the record and LATEST; a later re-count by a model without a calibration leaves no stale range."""
    counted.counts.table.update_item(
        Key={"pk": "BIN#B1", "sk": "LATEST"},
        UpdateExpression="SET expected_quantity = :q",
        ExpressionAttributeValues={":q": 4},
    )
    counted.recount({OLD.key: 2, NEW.key: 2}, "v2", CALIBRATED)

    new, latest = counted.record(NEW), counted.counts.get_latest("B1")
    assert latest is not None
    assert (new["count_low"], new["count_high"], new["review_reason"], new["needs_review"]) == (
        1,
        3,
        "borderline_discrepancy",
        True,
    )
    assert (latest["count_low"], latest["count_high"], latest["review_reason"]) == (
        1,
        3,
        "borderline_discrepancy",
    )
    assert [float(p) for p in new["count_p_values"]] == CALIBRATED["count_p_values"]
    reviews = [
        json.loads(e["Detail"])
        for e in counted.sender.delivered
        if e["DetailType"] == "Bin Count Needs Review"
    ]
    assert {r["image"]["key"]: r["review_reason"] for r in reviews if r["model_version"] == "v2"} == {
        OLD.key: "borderline_discrepancy",  # an older photo of the bin: reviewed, LATEST untouched
        NEW.key: "borderline_discrepancy",
    }

    counted.recount({OLD.key: 2, NEW.key: 2}, "v3")  # no calibration, confident (0.9): no review
    new, latest = counted.record(NEW), counted.counts.get_latest("B1")
    assert latest is not None
    assert (new["count_low"], new["count_p_values"], new["review_reason"], new["needs_review"]) == (
        None,
        None,
        None,
        False,
    )
    assert (latest["count_low"], latest["range_level"], latest["review_reason"]) == (None, None, None)
    assert latest["expected_quantity"] == 4
