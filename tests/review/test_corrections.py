"""Correction rules: pure parts without AWS, then the whole save against the stack in moto."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from bincount.admission import CAPTURE_TIME_IN_FUTURE
from bincount.corrections import (
    MODEL_WRITE_GUARD,
    AlreadyLabelled,
    CorrectionStatus,
    HumanLabel,
    LabelOutOfRange,
    NotReviewable,
    PhotoGone,
    RecordVersion,
    StaleRecord,
    accepted_label,
    answer_for,
    label_source_of,
    parse_label,
    top_class,
)
from bincount.count_records import image_sk
from bincount.inventory_events import BinCountCorrected, from_eventbridge_event
from bincount.serving_records import CountResult
from bincount.uploads import ImageObject
from review_support import MODEL_VERSION, CorrectionsFunction, ReviewStack, corrections_mapping, sk

from cli.review.service import ReviewService, counts_table

# -- pure rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", HumanLabel(0)),
        ("5", HumanLabel(5)),
        (3, HumanLabel(3)),
        ("+", HumanLabel(6, True)),
        (" 2 ", HumanLabel(2)),
    ],
)
def test_labels_within_the_model_classes(value: object, expected: HumanLabel) -> None:
    assert parse_label(value, top=5) == expected


@pytest.mark.parametrize("value", ["6", "9", "-1", "x", "", "2.5", True])
def test_labels_outside_the_range_are_refused_with_the_range(value: object) -> None:
    with pytest.raises(LabelOutOfRange, match=r"0\.\.5"):
        parse_label(value, top=5)


def test_top_class_comes_from_the_record_then_the_shipped_model(repo_root: Path) -> None:
    assert top_class({"probabilities": [0.1] * 11}) == 10
    assert top_class({"outcome": "error"}) == 5  # no probabilities: the shipped model's 6 classes
    config = json.loads((repo_root / "model" / "weights" / "config.json").read_text())
    assert top_class({}) == config["num_classes"] - 1


@pytest.mark.parametrize(
    ("count", "answer", "label"),
    [(0, "0", HumanLabel(0)), (5, "5", HumanLabel(5)), (8, "+", HumanLabel(6, True))],
)
def test_a_counted_photo_is_answered_as_at_the_console(count: int, answer: str, label: HumanLabel) -> None:
    """The loop's reviewer knows exact counts; beyond the top class the console only has ``+``."""
    assert answer_for(count, top=5) == answer
    assert parse_label(answer_for(count, top=5), top=5) == label


@pytest.mark.parametrize(
    ("label", "count", "lower_bound", "right"),
    [
        (HumanLabel(3), 3, False, True),
        (HumanLabel(3), 4, False, False),
        (HumanLabel(7), 5, True, True),  # "5 or more" for 7 objects
        (HumanLabel(4), 5, True, False),
        (HumanLabel(6, True), 5, True, True),  # ">5" and "5 or more"
        (HumanLabel(6, True), 5, False, False),
    ],
)
def test_a_models_answer_is_judged_by_a_human_label(
    label: HumanLabel, count: int, lower_bound: bool, right: bool
) -> None:
    assert label.agrees_with(count, lower_bound) is right


def test_human_label_reads_more_than_top_apart_from_the_models_open_class() -> None:
    assert str(HumanLabel(6, is_lower_bound=True)) == ">5"
    assert str(HumanLabel(4)) == "4"


def test_record_version_round_trips_through_the_page() -> None:
    version = RecordVersion("abc|def", "2026-11-26T10:00:00.000Z", "")
    assert RecordVersion.parse(version.token()) == version
    with pytest.raises(StaleRecord):
        RecordVersion.parse("garbage")


# -- the save against moto ------------------------------------------------------------------------


def unsure(stack: ReviewStack) -> ImageObject:
    return next(image for image in stack.seeded if image.key.endswith("BIN-1/20261126T110000Z-cam1.jpg"))


def newest(stack: ReviewStack) -> ImageObject:
    return next(image for image in stack.seeded if image.key.endswith("BIN-1/20261126T120000Z-cam1.jpg"))


def test_saving_writes_the_human_label_and_keeps_the_model_result(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = unsure(seeded)
    result = service.correct(photo.bin_id, sk(photo), "4", RecordVersion.of(seeded.image(photo)).token())
    assert result.status is CorrectionStatus.SAVED
    record = seeded.image(photo)
    assert record["human_count"] == 4 and record["human_count_is_lower_bound"] is False
    assert record["reviewer"] == "alice" and record["reviewed_at"]
    assert record["replaced_count"] == 3 and record["replaced_model_version"] == MODEL_VERSION
    assert record["count"] == 3  # the model's own result stays for comparison


def test_event_goes_to_the_bus_with_the_documented_schema(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = unsure(seeded)
    service.correct(photo.bin_id, sk(photo), "+")
    [delivered] = seeded.events()
    event = from_eventbridge_event(delivered)
    assert isinstance(event, BinCountCorrected)
    assert (event.bin_id, event.count, event.count_is_lower_bound, event.model_count) == ("BIN-1", 6, True, 3)
    assert event.reviewer == "alice" and event.image.key == photo.key and event.image.etag == photo.etag
    assert event.latest_updated is False  # an older photo of the bin


def test_latest_follows_only_the_bins_newest_photo(seeded: ReviewStack, service: ReviewService) -> None:
    service.correct("BIN-1", sk(unsure(seeded)), "1")
    assert seeded.latest("BIN-1")["count"] == 4  # older photo: the newer model count stays
    result = service.correct("BIN-1", sk(newest(seeded)), "5")
    latest = seeded.latest("BIN-1")
    assert result.latest_followed and latest["count"] == 5 and latest["needs_review"] is False
    assert latest["human_label"]["reviewer"] == "alice" and latest["human_label"]["model_count"] == 4
    assert latest["image_key"] == newest(seeded).key and latest["previous_count"] == 3


def test_a_labelled_rejected_photo_becomes_the_bins_latest_count(
    seeded: ReviewStack, service: ReviewService
) -> None:
    rejected = next(image for image in seeded.seeded if image.bin_id == "BIN-2")
    result = service.correct("BIN-2", sk(rejected), "1")
    latest = seeded.latest("BIN-2")
    assert result.latest_followed and latest["count"] == 1 and latest["image_key"] == rejected.key
    assert seeded.events()[0]["detail"]["model_count"] is None


def test_a_model_never_overwrites_a_human_label(seeded: ReviewStack, service: ReviewService) -> None:
    photo = unsure(seeded)
    service.correct(photo.bin_id, sk(photo), "4")
    recount = CountResult(1, 0.99, (0.0, 0.99, 0.0, 0.0, 0.0, 0.01), False, "bincount-next")
    # the collector writes once per upload: a replay of the labelled upload is refused ...
    assert seeded.record(photo, recount, job="bincount-dev-replay") is False
    # ... and a re-upload of the key with new bytes is another photo, with its own record
    reupload = dataclasses.replace(
        photo, etag="new-etag", version_id="v2", uploaded_at="2026-12-01T00:00:00.000Z"
    )
    assert seeded.record(reupload, recount, job="bincount-dev-reupload") is True
    assert sk(reupload) != sk(photo) and "human_count" not in seeded.image(reupload)
    record = seeded.image(photo)
    assert record["human_count"] == 4 and record["count"] == 3 and record["etag"] == photo.etag
    # a write that may replace a record (a future re-count) carries MODEL_WRITE_GUARD
    table = counts_table(seeded.resources)
    with pytest.raises(table.meta.client.exceptions.ConditionalCheckFailedException):
        table.put_item(Item={**record, "count": 1}, ConditionExpression=MODEL_WRITE_GUARD)


def test_two_uploads_of_a_key_are_reviewed_apart(seeded: ReviewStack, service: ReviewService) -> None:
    """A re-upload under the same key is its own photo: its label, its event, LATEST its own."""
    first = newest(seeded)
    second = seeded.photo("BIN-1", "20261126T120000Z", 1, 0.35)  # same key, new bytes, newer upload
    assert seeded.latest("BIN-1")["image_version"] == second.version
    older = service.correct("BIN-1", sk(first), "4")
    assert older.latest_followed is False  # LATEST holds the newer upload of the same key
    newer = service.correct("BIN-1", sk(second), "2")
    assert newer.latest_followed and seeded.latest("BIN-1")["count"] == 2
    assert (seeded.image(first)["human_count"], seeded.image(second)["human_count"]) == (4, 2)
    versions = [event["detail"]["image"]["version_id"] for event in seeded.events()]
    assert versions == [first.version_id, second.version_id] and first.version_id != second.version_id
    assert service.photo("BIN-1", sk(first))[0] != service.photo("BIN-1", sk(second))[0]


def test_second_reviewer_with_a_different_count_is_refused(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = unsure(seeded)
    rendered = RecordVersion.of(seeded.image(photo)).token()  # both pages show the same version
    service.correct(photo.bin_id, sk(photo), "4", rendered)
    seeded.events()
    bob = ReviewService.for_stack(seeded.resources, reviewer="bob", photo_mode="proxy")
    with pytest.raises(AlreadyLabelled, match=r"alice already saved 4.*your 2 was not saved"):
        bob.correct(photo.bin_id, sk(photo), "2", rendered)
    record = seeded.image(photo)
    assert record["human_count"] == 4 and record["reviewer"] == "alice"
    assert seeded.events() == []


def test_second_reviewer_with_the_same_count_is_accepted_unchanged(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = unsure(seeded)
    rendered = RecordVersion.of(seeded.image(photo)).token()
    first = service.correct(photo.bin_id, sk(photo), "4", rendered)
    bob = ReviewService.for_stack(seeded.resources, reviewer="bob", photo_mode="proxy")
    second = bob.correct(photo.bin_id, sk(photo), "4", rendered)
    assert second.status is CorrectionStatus.ALREADY_SAVED and "already saved as 4 by alice" in second.message
    record = seeded.image(photo)
    assert record["reviewer"] == "alice" and record["reviewed_at"] == first.record["reviewed_at"]


def test_relabelling_needs_the_version_that_shows_the_label(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = unsure(seeded)
    service.correct(photo.bin_id, sk(photo), "4")
    with pytest.raises(AlreadyLabelled, match="pass the record version"):
        service.correct(photo.bin_id, sk(photo), "2")
    service.correct(photo.bin_id, sk(photo), "2", RecordVersion.of(seeded.image(photo)).token())
    assert seeded.image(photo)["human_count"] == 2


def test_stale_page_writes_nothing(seeded: ReviewStack, service: ReviewService) -> None:
    photo = unsure(seeded)
    stale = RecordVersion(photo.etag, "2026-01-01T00:00:00.000Z").token()  # not what the record holds now
    before = seeded.image(photo)
    with pytest.raises(StaleRecord, match="changed since the page was shown"):
        service.correct(photo.bin_id, sk(photo), "4", stale)
    assert seeded.image(photo) == before and seeded.events() == []


def test_out_of_range_writes_nothing(seeded: ReviewStack, service: ReviewService) -> None:
    photo = unsure(seeded)
    before = seeded.image(photo)
    with pytest.raises(LabelOutOfRange, match=r"outside 0\.\.5"):
        service.correct(photo.bin_id, sk(photo), "7")
    assert seeded.image(photo) == before and seeded.events() == []


def test_photo_gone_from_bucket_or_table_writes_nothing(seeded: ReviewStack, service: ReviewService) -> None:
    photo = unsure(seeded)
    boto3.client("s3").delete_object(Bucket=photo.bucket, Key=photo.key, VersionId=photo.version_id)
    with pytest.raises(PhotoGone, match="no longer in its bucket"):
        service.correct(photo.bin_id, sk(photo), "4")
    assert "human_count" not in seeded.image(photo)
    with pytest.raises(PhotoGone, match="no longer exists"):
        service.correct("BIN-1", image_sk(f"{seeded.resources.ingest_prefix}BIN-1/x.jpg", "v1"), "4")
    assert seeded.events() == []


def test_sample_event_follows_the_schema(
    events_dir: Path, seeded: ReviewStack, service: ReviewService
) -> None:
    """events/bin_count_corrected.json has exactly the fields the console publishes."""
    sample = json.loads((events_dir / "bin_count_corrected.json").read_text())
    parsed = from_eventbridge_event(sample)
    assert isinstance(parsed, BinCountCorrected) and parsed.count == 4 and parsed.model_count == 3
    service.correct("BIN-1", sk(unsure(seeded)), "4")
    [delivered] = seeded.events()
    assert set(delivered["detail"]) == set(sample["detail"])
    assert set(delivered["detail"]["image"]) == set(sample["detail"]["image"])


def listener_messages(stack: ReviewStack) -> list[dict[str, Any]]:
    """What reached the bus's listener, without letting the corrections function run first."""
    answer = stack.sqs.receive_message(QueueUrl=stack.listener_url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in answer.get("Messages", [])]


def test_the_event_comes_from_the_stored_label_not_from_the_reviewer(
    seeded: ReviewStack, service: ReviewService
) -> None:
    photo = newest(seeded)
    result = service.correct(photo.bin_id, sk(photo), "5")
    assert listener_messages(seeded) == []  # the save itself put nothing on the bus
    assert seeded.store.get_latest("BIN-1")["count"] == 4  # nor moved LATEST
    assert result.latest_followed  # what the function is about to do, said to the reviewer
    [event] = seeded.events()  # the stream delivered the change: LATEST followed, event published
    assert event["detail"] == json.loads(json.dumps(result.event.detail()))
    assert seeded.latest("BIN-1")["count"] == 5


def test_a_change_without_a_new_label_publishes_nothing(seeded: ReviewStack, service: ReviewService) -> None:
    photo = unsure(seeded)
    service.correct(photo.bin_id, sk(photo), "4")
    assert len(seeded.events()) == 1
    seeded.table.update_item(  # a re-count of the labelled record: the model's fields only
        Key={"pk": "BIN#BIN-1", "sk": sk(photo)},
        UpdateExpression="SET model_version = :v",
        ExpressionAttributeValues={":v": "bincount-next"},
    )
    assert seeded.events() == [] and seeded.image(photo)["human_count"] == 4


class FlakySender:
    """PutEvents refused (a code PutEvents does not retry) ``failures`` times, then delivered."""

    def __init__(self, real: Any, failures: int = 1) -> None:
        self.real, self.calls, self.failures = real, 0, failures

    def send(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls <= self.failures:
            return [{"ErrorCode": "AccessDeniedException", "ErrorMessage": "not now"} for _ in entries]
        result: list[dict[str, Any]] = self.real.send(entries)
        return result


def test_an_unpublished_event_is_delivered_again_by_the_stream(
    seeded: ReviewStack, service: ReviewService
) -> None:
    seeded.deliver()
    real = seeded.corrections.function.runtime.publisher.sender
    flaky = CorrectionsFunction(seeded.resources, sender=FlakySender(real))
    stream = corrections_mapping(seeded.resources, flaky, starting_position="LATEST")
    photo = unsure(seeded)
    service.correct("BIN-1", sk(photo), "4")  # the label is stored: the save succeeded
    stream.poll_once()
    assert stream.records_failed == 1 and listener_messages(seeded) == []
    stream.poll_once()  # the same record again, from the failed one
    [event] = listener_messages(seeded)
    assert event["detail"]["reviewed_at"] == seeded.image(photo)["reviewed_at"]
    assert flaky.invocations == 2


def test_a_label_the_bus_keeps_refusing_ends_in_the_on_failure_queue(
    seeded: ReviewStack, service: ReviewService
) -> None:
    seeded.deliver()
    dlq = seeded.resources.client("sqs").get_queue_url(QueueName="bincount-corrections-dlq-dev")["QueueUrl"]
    broken = CorrectionsFunction(seeded.resources, sender=FlakySender(None, failures=99))
    stream = corrections_mapping(
        seeded.resources, broken, max_retry_attempts=2, on_failure_queue_url=dlq, starting_position="LATEST"
    )
    service.correct("BIN-1", sk(unsure(seeded)), "4")
    for _ in range(3):  # the first try and two retries
        stream.poll_once()
    assert stream.given_up == 1 and broken.invocations == 3 and listener_messages(seeded) == []
    [message] = seeded.sqs.receive_message(QueueUrl=dlq).get("Messages", [])
    info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"].startswith("arn:aws:dynamodb:")
    assert seeded.image(unsure(seeded))["human_count"] == 4  # the label stands, the batch is described


def test_a_malformed_stored_label_is_skipped_not_retried(seeded: ReviewStack) -> None:
    """A raw UpdateItem with a garbage human_count (what ReviewerPolicy's attribute list still
    allows): the function logs it and moves on; no event, nothing stuck."""
    photo = unsure(seeded)
    seeded.deliver()
    seeded.table.update_item(
        Key={"pk": "BIN#BIN-1", "sk": sk(photo)},
        UpdateExpression="SET human_count = :c, reviewed_at = :t",
        ExpressionAttributeValues={":c": "../../abc", ":t": "2026-12-01T00:00:00.000Z"},
    )
    assert seeded.events() == [] and seeded.corrections.records_failed == 0


def test_a_photo_the_batcher_rejected_is_not_reviewable(seeded: ReviewStack, service: ReviewService) -> None:
    """A future-dated name must not move the bin's latest count through a label either."""
    future = seeded.photo("BIN-1", "20991231T000000Z", None, error=CAPTURE_TIME_IN_FUTURE)
    before = seeded.latest("BIN-1")
    with pytest.raises(NotReviewable, match="rejected before counting"):
        service.correct("BIN-1", sk(future), "3")
    assert "human_count" not in seeded.image(future) and seeded.latest("BIN-1") == before
    assert sk(future) not in {entry.sk for entry in service.queue("BIN-1")}
    assert seeded.events() == []


def test_only_an_exact_model_count_can_be_accepted() -> None:
    assert accepted_label({"count": 3}) == HumanLabel(3)
    with pytest.raises(LabelOutOfRange, match="type 5 or \\+"):
        accepted_label({"count": 5, "count_is_lower_bound": True})  # "5 or more": which one?
    with pytest.raises(LabelOutOfRange, match="no count"):
        accepted_label({"count": None})
    assert label_source_of({"human_count": 2}) == "typed"  # labelled before label_source existed
    assert label_source_of({"human_count": 2, "label_source": "accepted"}) == "accepted"
    assert label_source_of({"count": 2}) is None
