"""The `bincount` subcommands against template.yaml created in moto (a 'deployed' stack)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from bincount.count_records import image_sk
from botocore.response import StreamingBody
from botocore.stub import Stubber
from cli_support import REGION, Run

from cli.commands import redrive as redrive_command
from cli.commands.redrive import InvokeFailed, lambda_deliver
from cli.stack import StackResources


@pytest.fixture
def photos(tmp_path: Path, bin_jpeg: bytes, bin_png: bytes) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "front.jpg").write_bytes(bin_jpeg)
    (folder / "back.png").write_bytes(bin_png)
    (folder / "labels.csv").write_text("image,count\n")
    return folder


def test_every_subcommand_has_help(run: Run) -> None:
    for command in ("count", "upload", "bins", "history", "status", "redrive"):
        with pytest.raises(SystemExit) as exit_info:
            run(command, "--help")
        assert exit_info.value.code == 0


def test_unknown_option_is_a_one_line_usage_error(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("bins", "--colour")
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err
        == "bincount bins: error: unrecognized arguments: --colour (see bincount bins --help)\n"
    )


def test_no_stack_is_one_line_exit_2(run: Run) -> None:
    result = run("bins")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "make up" in result.err


def test_upload_puts_photos_under_the_bin_with_capture_time(
    on_stack: Run, photos: Path, deployed: StackResources
) -> None:
    result = on_stack(
        "upload", str(photos), "--bin", "BIN-7", "--captured-at", "2026-11-26T10:15:00Z", "--json"
    )
    assert result.code == 0, result.err
    keys = sorted(entry["key"] for entry in json.loads(result.out))
    assert keys == ["incoming/BIN-7/20261126T101500Z-back.png", "incoming/BIN-7/20261126T101500Z-front.jpg"]
    s3 = boto3.client("s3", region_name=REGION)
    head = s3.head_object(Bucket=deployed.ingest_bucket, Key=keys[1])
    assert head["ContentType"] == "image/jpeg"
    assert "skipping 1 non-photo" in result.err


def test_upload_refuses_missing_and_non_image_files_before_uploading(
    on_stack: Run, photos: Path, deployed: StackResources
) -> None:
    text = photos / "notes.jpg"
    text.write_text("not a photo")
    missing = on_stack("upload", str(photos / "front.jpg"), str(photos / "gone.jpg"), "--bin", "B1")
    not_image = on_stack("upload", str(photos), "--bin", "B1")
    assert (missing.code, not_image.code) == (2, 2)
    assert missing.err == f"bincount: error: DIR_OR_PHOTO {photos / 'gone.jpg'}: no such file or folder\n"
    assert f"DIR_OR_PHOTO {text}: not a JPEG or PNG photo" in not_image.err
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=deployed.ingest_bucket)
    assert listed.get("KeyCount", 0) == 0


def put_counts(table: str) -> None:
    dynamodb = boto3.resource("dynamodb", region_name=REGION).Table(table)
    for bin_id, count, confidence, review, expected in (
        ("A-1", 3, "0.91", False, 3),
        ("A-2", 1, "0.31", True, None),
        ("A-3", 4, "0.77", False, 2),
    ):
        latest: dict[str, Any] = {
            "pk": f"BIN#{bin_id}",
            "sk": "LATEST",
            "bin_id": bin_id,
            "count": count,
            "needs_review": review,
        }
        latest.update(confidence=Decimal(confidence), captured_at=f"2026-11-26T10:00:0{count}.000Z")
        latest.update(model_version="m1", latest_version="v", image_key=f"incoming/{bin_id}/p{count}.jpg")
        if expected is not None:
            latest["expected_quantity"] = expected
        dynamodb.put_item(Item=latest)
    for index, outcome in enumerate(("count", "count", "error")):
        item: dict[str, Any] = {
            "pk": "BIN#A-1",
            "sk": image_sk(f"incoming/A-1/p{index}.jpg", f"v{index}"),  # as the collector writes it
            "image_key": f"incoming/A-1/p{index}.jpg",
            "captured_at": f"2026-11-26T10:00:0{index}.000Z",
            "recorded_at": f"2026-11-26T10:01:0{index}.000Z",
            "model_version": "m1",
            "outcome": outcome,
        }
        if outcome == "count":
            item.update(count=index + 2, confidence=Decimal("0.8"), probabilities=[Decimal("0.2")] * 5)
        else:
            item.update(error_code="corrupt_image", error_message="cannot identify image file")
        dynamodb.put_item(Item=item)


def test_bins_lists_sorts_and_filters(on_stack: Run, deployed: StackResources) -> None:
    put_counts(deployed.counts_table)
    listed = on_stack("bins", "--sort", "count", "--desc", "--json")
    assert [row["bin_id"] for row in json.loads(listed.out)] == ["A-3", "A-1", "A-2"]
    review = json.loads(on_stack("bins", "--needs-review", "--json").out)
    assert [row["bin_id"] for row in review] == ["A-2"]
    wrong = on_stack("bins", "--discrepancy")
    assert wrong.code == 0
    assert (
        "A-3" in wrong.out
        and "A-1" not in wrong.out
        and "discrepancy" in wrong.out
        and "1 bin(s)" in wrong.out
    )


def test_history_shows_every_photo_and_refuses_an_unknown_bin(
    on_stack: Run, deployed: StackResources
) -> None:
    put_counts(deployed.counts_table)
    rows = json.loads(on_stack("history", "A-1", "--json").out)
    assert [row["count"] for row in rows] == [2, 3, None]
    assert rows[2]["error"] == "corrupt_image: cannot identify image file"
    assert all(row["model_version"] == "m1" for row in rows)
    unknown = on_stack("history", "NOPE")
    assert unknown.code == 1 and unknown.out == ""
    assert (
        unknown.err
        == "bincount: error: bin NOPE has no photos in bincount-counts-dev (stack bincount-cli-test)\n"
    )


def s3_notification(key: str) -> str:
    return json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": key}}}]})


def test_status_counts_waiting_jobs_dead_letters_and_errors(on_stack: Run, deployed: StackResources) -> None:
    put_counts(deployed.counts_table)
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.send_message(QueueUrl=deployed.ingest_queue_url, MessageBody=s3_notification("incoming/A/1.jpg"))
    sqs.send_message(QueueUrl=deployed.ingest_dlq_url, MessageBody=s3_notification("incoming/A/2.jpg"))
    jobs = boto3.resource("dynamodb", region_name=REGION).Table(deployed.jobs_table)
    jobs.put_item(
        Item={"pk": "bincount-dev-1", "job_name": "bincount-dev-1", "status": "InProgress", "image_count": 3}
    )
    jobs.put_item(
        Item={
            "pk": "bincount-dev-0",
            "status": "Failed",
            "failure_reason": "CapacityError",
            "updated_at": "2026",
        }
    )
    status = json.loads(on_stack("status", "--json").out)
    assert status["ingest_queue"] == {"waiting": 1, "in_flight": 0}
    assert [job["job_name"] for job in status["jobs_in_flight"]] == ["bincount-dev-1"]
    assert status["dead_letters"] == {"ingest": 1, "collector": 0}
    assert {entry["what"] for entry in status["last_errors"]} == {
        "photo incoming/A-1/p2.jpg",
        "job bincount-dev-0",
    }
    text = on_stack("status").out
    assert "bincount redrive ingest" in text


def test_redrive_ingest_moves_messages_back_and_names_the_photos(
    on_stack: Run, deployed: StackResources
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    for index in range(12):
        sqs.send_message(
            QueueUrl=deployed.ingest_dlq_url, MessageBody=s3_notification(f"incoming/A/{index}.jpg")
        )
    partial = json.loads(on_stack("redrive", "ingest", "--max", "5", "--json").out)
    assert (partial["moved"], partial["failed"]) == (5, 0)
    rest = on_stack("redrive", "ingest")
    assert rest.code == 0 and rest.out.startswith("redrive ingest: 7 moved, 0 failed")
    back = sqs.get_queue_attributes(
        QueueUrl=deployed.ingest_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert back["Attributes"]["ApproximateNumberOfMessages"] == "12"
    assert "moved: incoming/A/" in rest.out


def test_redrive_collector_needs_the_collector_output(on_stack: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redrive_command, "replay_function", lambda: fake_replay)
    result = on_stack("redrive", "collector")
    assert result.code == 1 and "no output CollectorFunctionName" in result.err


@dataclass
class FakeReport:
    moved: int = 0
    failed: int = 0
    details: list[str] = field(default_factory=list)


def fake_replay(sqs: Any, dlq_url: str, deliver: Any, max_messages: int | None = None) -> FakeReport:
    """The contract of bincount.replay.replay_collector_dlq, minimal: deliver each body, delete on success."""
    report = FakeReport()
    for message in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=max_messages or 10).get(
        "Messages", []
    ):
        try:
            deliver(json.loads(message["Body"]))
        except Exception as error:
            report.failed += 1
            report.details.append(str(error))
            continue
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
        report.moved += 1
    return report


class StubbedLambda(StackResources):
    """The moto stack, with a botocore Stubber standing in for Lambda (moto runs none without Docker)."""

    def client(self, service: str) -> Any:
        if service == "lambda":
            return LAMBDA
        return super().client(service)


LAMBDA = boto3.client("lambda", region_name=REGION)


def invoke_response(function_error: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_redrive_collector_invokes_the_collector_per_event(
    deployed: StackResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = StubbedLambda(
        **{**vars(deployed), "extra": (*deployed.extra, ("CollectorFunctionName", "collector-fn"))}
    )
    monkeypatch.setattr(redrive_command, "replay_function", lambda: fake_replay)
    monkeypatch.setattr(redrive_command, "stack_for", lambda args: stack)
    sqs = boto3.client("sqs", region_name=REGION)
    for job in ("bincount-dev-1", "bincount-dev-2"):
        sqs.send_message(
            QueueUrl=stack.collector_dlq_url, MessageBody=json.dumps({"detail": {"TransformJobName": job}})
        )
    with Stubber(LAMBDA) as stubber:
        stubber.add_response("invoke", invoke_response(None, {"ok": True}))
        stubber.add_response("invoke", invoke_response("Unhandled", {"errorMessage": "results not readable"}))
        from cli.main import main

        code = main(["redrive", "collector", "--json"])
        stubber.assert_no_pending_responses()
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and (report["moved"], report["failed"]) == (1, 1)
    assert report["details"] == ["collector-fn: results not readable"]


def test_lambda_deliver_sends_the_event_and_raises_on_function_error() -> None:
    client = boto3.client("lambda", region_name=REGION)
    event = {"detail": {"TransformJobName": "bincount-dev-1"}}
    with Stubber(client) as stubber:
        params = {
            "FunctionName": "fn",
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(event).encode(),
        }
        stubber.add_response("invoke", invoke_response(None, {}), params)
        stubber.add_response("invoke", invoke_response("Unhandled", {"errorMessage": "boom"}), params)
        deliver = lambda_deliver(client, "fn")
        deliver(event)
        with pytest.raises(InvokeFailed, match="fn: boom"):
            deliver(event)
