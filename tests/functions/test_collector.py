"""Collector handler on real-shaped state-change events, against the stack in moto.

Published events are observed the way consumers see them: a rule on the inventory bus delivers
to an SQS queue (moto delivers faithfully). Stubber stands in where moto is not faithful
(CreateTransformJob for re-drives, PutEvents partial failures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from bincount.batching import plan_chunks
from bincount.collection import CollectionIncomplete
from bincount.count_records import image_record_sk
from bincount.inventory_events import BinCountUpdated, ImageRef
from bincount.settings import Settings
from bincount.uploads import ImageObject
from bincount.wiring import Clients
from botocore.stub import ANY, Stubber
from collector import app
from pipeline_support import REGION, count_record, drain, job_event, stage_job

T1, T2, T3 = "2026-11-26T10:00:00.000Z", "2026-11-26T11:00:00.000Z", "2026-11-26T12:00:00.000Z"


def photo(stack: Any, bin_id: str, name: str, captured: str = T1, etag: str = "e") -> ImageObject:
    key = f"incoming/{bin_id}/{name}.jpg"
    return ImageObject(stack.ingest_bucket, key, f"{etag}-{name}", 1000, bin_id, captured, "image/jpeg")


def counts(stack: Any) -> Any:
    return boto3.resource("dynamodb", region_name=REGION).Table(stack.outputs["CountsTableName"])


def items(stack: Any, bin_id: str) -> dict[str, dict[str, Any]]:
    response = counts(stack).query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"BIN#{bin_id}"}
    )
    return {item["sk"]: item for item in response["Items"]}


@pytest.fixture
def use_runtime(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Install a collector runtime (real moto clients unless stubbed ones are given)."""

    def install(**clients: Any) -> Any:
        runtime = app.build_runtime(Settings.from_env(), Clients(**clients), sleep=lambda _: None)
        monkeypatch.setattr(app, "get_runtime", lambda: runtime)
        return runtime

    install()
    return install


def by_type(delivered: list[dict[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    return [event["detail"] for event in delivered if event["detail-type"] == detail_type]


def test_completed_job_records_counts_and_publishes(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    a, b = photo(stack, "B1", "a"), photo(stack, "B2", "b")
    name, event = stage_job([a, b], {a.key: count_record(3, 0.9), b.key: count_record(0, 0.8)})

    summary = app.handler(event, context)

    assert (summary["counted"], summary["rejected"], summary["events_published"]) == (2, 0, 2)
    b1 = items(stack, "B1")
    assert b1["LATEST"]["count"] == 3 and b1["LATEST"]["image_key"] == a.key
    assert b1[image_record_sk(a)]["outcome"] == "count" and b1[image_record_sk(a)]["job_name"] == name
    updated = by_type(drain(bus_queue), "Bin Count Updated")
    assert sorted((d["bin_id"], d["count"], d["previous_count"]) for d in updated) == [
        ("B1", 3, None),
        ("B2", 0, None),
    ]
    assert all(d["job_name"] == name and d["model_version"] == "v1" for d in updated)
    job = (
        boto3.resource("dynamodb", region_name=REGION)
        .Table(stack.outputs["JobsTableName"])
        .get_item(Key={"pk": name})
    )
    assert (job["Item"]["status"], job["Item"]["counted"]) == ("Completed", 2)


@pytest.mark.parametrize(
    "idempotency", [True, False], ids=["powertools-idempotency", "conditional-writes-only"]
)
def test_replayed_completion_changes_nothing(
    stack: Any,
    bus_queue: str,
    use_runtime: Any,
    context: Any,
    monkeypatch: pytest.MonkeyPatch,
    idempotency: bool,
) -> None:
    if not idempotency:
        monkeypatch.setenv("IDEMPOTENCY_TABLE", "")
        use_runtime()
    a = photo(stack, "B1", "a")
    _, event = stage_job([a], {a.key: count_record(2)})
    first = app.handler(event, context)
    for _ in range(2):
        replay = app.handler(event, context)
        assert replay == first if idempotency else replay["duplicates"] == 1
    assert len(items(stack, "B1")) == 2  # one IMAGE#, one LATEST
    assert len(drain(bus_queue)) == 1


def test_older_photo_never_overwrites_newer_count(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    newer, older = photo(stack, "B1", "new", captured=T2), photo(stack, "B1", "old", captured=T1)
    app.handler(stage_job([newer], {newer.key: count_record(4)})[1], context)
    summary = app.handler(stage_job([older], {older.key: count_record(1)})[1], context)

    assert summary["stale"] == 1
    b1 = items(stack, "B1")
    assert (b1["LATEST"]["count"], b1["LATEST"]["image_key"]) == (4, newer.key)
    assert b1[image_record_sk(older)]["count"] == 1  # the older photo is still on record
    updated = by_type(drain(bus_queue), "Bin Count Updated")
    assert [d["count"] for d in updated] == [4]

    newest = photo(stack, "B1", "newest", captured=T3)
    app.handler(stage_job([newest], {newest.key: count_record(5)})[1], context)
    assert [(d["count"], d["previous_count"]) for d in by_type(drain(bus_queue), "Bin Count Updated")] == [
        (5, 4)
    ]


def test_error_record_is_recorded_and_rejected(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    good, bad, garbage = photo(stack, "B1", "good"), photo(stack, "B2", "bad"), photo(stack, "B3", "garbage")
    error = {
        "error": {"code": "corrupt_image", "message": "cannot identify image file"},
        "model_version": "v1",
    }
    _, event = stage_job(
        [good, bad, garbage], {good.key: count_record(1), bad.key: error, garbage.key: b"<html>oops"}
    )
    summary = app.handler(event, context)
    assert (summary["counted"], summary["rejected"]) == (1, 2)
    record = items(stack, "B2")
    assert "LATEST" not in record
    assert record[image_record_sk(bad)]["error_code"] == "corrupt_image"
    assert items(stack, "B3")[image_record_sk(garbage)]["error_code"] == "invalid_output"
    rejected = by_type(drain(bus_queue), "Bin Image Rejected")
    assert sorted(d["error_code"] for d in rejected) == ["corrupt_image", "invalid_output"]


def test_low_confidence_and_discrepancy(stack: Any, bus_queue: str, use_runtime: Any, context: Any) -> None:
    # An inventory system knows bin B1 should hold 4 items.
    counts(stack).put_item(Item={"pk": "BIN#B1", "sk": "LATEST", "expected_quantity": 4})
    a = photo(stack, "B1", "a")
    app.handler(stage_job([a], {a.key: count_record(2, confidence=0.3)})[1], context)
    delivered = drain(bus_queue)
    assert [d["confidence"] for d in by_type(delivered, "Bin Count Needs Review")] == [0.3]
    (discrepancy,) = by_type(delivered, "Inventory Discrepancy Detected")
    assert (discrepancy["expected_quantity"], discrepancy["count"], discrepancy["difference"]) == (4, 2, -2)
    latest = items(stack, "B1")["LATEST"]
    assert (latest["expected_quantity"], latest["count"], latest["needs_review"]) == (4, 2, True)


def test_failed_job_records_outputs_and_redrives_the_rest(stack: Any, use_runtime: Any, context: Any) -> None:
    images = [photo(stack, f"B{i}", "x") for i in range(5)]
    done = images[0]
    name, _ = stage_job(images, {done.key: count_record(1)})
    failed = job_event(name, "Failed", stack.results_bucket, "AlgorithmError: poison image")
    halves = [
        plan_chunks(part, max_images=5, prefix="bincount-dev")[0].job_name
        for part in (images[1:3], images[3:5])
    ]
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(sagemaker)
    stubber.add_response("list_transform_jobs", {"TransformJobSummaries": []})  # room under the cap
    for half in halves:
        arn = {"TransformJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:transform-job/{half}"}
        stubber.add_response(
            "create_transform_job", arn, {"TransformJobName": half, **{k: ANY for k in REQUEST_KEYS}}
        )
    use_runtime(sagemaker=sagemaker)

    with stubber:
        summary = app.handler(failed, context)
    stubber.assert_no_pending_responses()

    assert (summary["counted"], summary["redriven_images"]) == (1, 4)
    assert summary["redriven_jobs"] == {half: "started" for half in halves}
    assert image_record_sk(done) in items(stack, "B0")
    assert all(image_record_sk(image) not in items(stack, image.bin_id) for image in images[1:])


REQUEST_KEYS = (
    "ModelName",
    "MaxConcurrentTransforms",
    "MaxPayloadInMB",
    "BatchStrategy",
    "ModelClientConfig",
    "TransformInput",
    "TransformOutput",
    "TransformResources",
    "Tags",
)


def test_a_photo_failing_alone_while_the_server_answered_ends_as_transform_failed(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    poison, good = photo(stack, "B9", "poison"), photo(stack, "B8", "good")
    name, _ = stage_job([poison, good], {good.key: count_record(2)})  # the server answered the other
    reason = "ClientError: See job logs for more information"
    app.handler(job_event(name, "Failed", stack.results_bucket, reason), context)
    record = items(stack, "B9")[image_record_sk(poison)]
    assert (record["outcome"], record["error_code"]) == ("error", "transform_failed")
    assert "See job logs" in record["error_message"]
    assert items(stack, "B8")[image_record_sk(good)]["outcome"] == "count"
    assert [d["error_code"] for d in by_type(drain(bus_queue), "Bin Image Rejected")] == ["transform_failed"]


def test_a_lone_photo_failing_without_any_answer_waits_instead_of_being_rejected(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    lone = photo(stack, "B9", "lone")
    name, _ = stage_job([lone], {})
    reason = "ClientError: See job logs for more information"
    summary = app.handler(job_event(name, "Failed", stack.results_bucket, reason), context)
    assert (summary["failure_kind"], summary["rejected"]) == ("per_record", 0)
    assert list(summary["waiting_jobs"]) == [f"{name[: -len('-r1')]}-r1"]
    assert image_record_sk(lone) not in items(stack, "B9")
    assert by_type(drain(bus_queue), "Bin Image Rejected") == []


def test_put_events_partial_failure_resends_only_failed_entries(
    stack: Any, use_runtime: Any, context: Any
) -> None:
    a, b = photo(stack, "B1", "a"), photo(stack, "B2", "b")
    name, event = stage_job([a, b], {a.key: count_record(3), b.key: count_record(1)})
    bus = stack.outputs["EventBusName"]
    second = BinCountUpdated(
        bin_id="B2",
        image=ImageRef(stack.ingest_bucket, b.key, b.etag),
        captured_at=T1,
        model_version="v1",
        job_name=name,
        count=1,
        confidence=0.9,
        previous_count=None,
        count_is_lower_bound=False,
        needs_review=False,
    ).to_eventbridge_entry(bus)
    events = boto3.client("events", region_name=REGION)
    stubber = Stubber(events)
    stubber.add_response(
        "put_events",
        {
            "FailedEntryCount": 1,
            "Entries": [
                {"EventId": "11111111-2222"},
                {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"},
            ],
        },
        {"Entries": [ANY, ANY]},
    )
    stubber.add_response(
        "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "3333"}]}, {"Entries": [second]}
    )
    use_runtime(events=events)
    with stubber:
        summary = app.handler(event, context)
    stubber.assert_no_pending_responses()
    assert (summary["counted"], summary["events_published"]) == (2, 2)


def test_unpublished_events_leave_the_image_for_the_retry(
    stack: Any, bus_queue: str, use_runtime: Any, context: Any
) -> None:
    a = photo(stack, "B1", "a")
    _, event = stage_job([a], {a.key: count_record(3)})
    events = boto3.client("events", region_name=REGION)
    stubber = Stubber(events)
    for _ in range(4):  # PUBLISH_MAX_ATTEMPTS
        stubber.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
            },
        )
    use_runtime(events=events)
    with stubber, pytest.raises(CollectionIncomplete):
        app.handler(event, context)
    assert image_record_sk(a) not in items(stack, "B1")  # not committed
    assert items(stack, "B1")["LATEST"]["count"] == 3

    use_runtime()  # EventBridge/Lambda retries the same event
    summary = app.handler(event, context)
    assert summary["counted"] == 1
    (updated,) = by_type(drain(bus_queue), "Bin Count Updated")
    assert (updated["count"], updated["previous_count"]) == (3, None)


def test_other_events_and_running_jobs_are_ignored(stack: Any, use_runtime: Any, context: Any) -> None:
    assert app.handler({"detail-type": "Object Created", "detail": {}}, context) == {"ignored": True}
    foreign = job_event("someone-elses-job", "Completed", stack.results_bucket)
    assert app.handler(foreign, context)["ignored"] is True


def test_idempotent_collect_is_built_once_per_environment_and_each_event_parsed_once(
    stack: Any, use_runtime: Any, context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    wrap, parse = app.idempotent_function, app.parse_job_event

    def counting_wrap(*args: Any, **kwargs: Any) -> Any:
        calls.append("built")
        return wrap(*args, **kwargs)

    def counting_parse(event: Any) -> Any:
        calls.append("parsed")
        return parse(event)

    monkeypatch.setattr(app, "idempotent_function", counting_wrap)
    monkeypatch.setattr(app, "parse_job_event", counting_parse)
    use_runtime()  # a fresh environment, wired with the spies
    a = photo(stack, "B1", "a")
    _, event = stage_job([a], {a.key: count_record(2)})
    first = app.handler(event, context)
    assert app.handler(event, context) == first  # the replay is answered by Powertools idempotency
    assert calls == ["built", "parsed", "parsed"]
