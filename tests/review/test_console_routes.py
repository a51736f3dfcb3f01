"""The console's routes (FastAPI TestClient) against the stack in moto."""

from __future__ import annotations

import dataclasses
import html
import json
import re
from typing import Any

import boto3
import pytest
from bincount.corrections import RecordVersion
from bincount.count_records import image_sk
from bincount.serving_records import CountResult
from fastapi.testclient import TestClient
from review_support import ReviewStack, sk

from cli.review.app import WRITE_HEADER, create_app
from cli.review.keys import console_keys, keys_json
from cli.review.queue import DISCREPANCY, LOW_CONFIDENCE, PICKED, REJECTED_READABLE, QueueItem
from cli.review.service import ReviewService

HEADERS = {WRITE_HEADER: "1"}


@pytest.fixture
def client(service: ReviewService) -> TestClient:
    return TestClient(create_app(service))


def key_of(stack: ReviewStack, bin_id: str, stamp: str) -> str:
    return f"{stack.resources.ingest_prefix}{bin_id}/{stamp}-cam1.jpg"


def sk_of(stack: ReviewStack, bin_id: str, stamp: str) -> str:
    """The record of the seeded upload of that photo (the newest, when the key has several)."""
    key = key_of(stack, bin_id, stamp)
    return sk([image for image in stack.seeded if image.key == key][-1])


def missing_sk(stack: ReviewStack, bin_id: str) -> str:
    return image_sk(key_of(stack, bin_id, "20990101T000000Z"), "no-such-version")


def photo_params(bin_id: str, record_sk: str) -> dict[str, str]:
    return {"bin_id": bin_id, "sk": record_sk}


def save(
    client: TestClient, bin_id: str, record_sk: str, count: str, seen: str | None = None, **headers: str
) -> Any:
    body = {"bin_id": bin_id, "sk": record_sk, "count": count, "seen": seen}
    return client.post("/api/corrections", json=body, headers=headers or HEADERS)


def test_queue_orders_unsure_then_discrepancy_then_rejected(seeded: ReviewStack, client: TestClient) -> None:
    answer = client.get("/api/queue").json()
    assert answer["reviewer"] == "alice"
    got = [(item["bin_id"], item["reason"]) for item in answer["items"]]
    assert got == [
        ("BIN-1", LOW_CONFIDENCE),
        ("BIN-1", LOW_CONFIDENCE),
        ("BIN-3", DISCREPANCY),
        ("BIN-2", REJECTED_READABLE),
    ]  # BIN-4 (sure, no expectation) and BIN-1's sure photo are not there
    assert answer["items"][0]["key"] == key_of(seeded, "BIN-1", "20261126T110000Z")  # oldest first


def test_page_renders_the_first_photo_with_everything_a_reviewer_needs(
    seeded: ReviewStack, client: TestClient
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "BIN-1" in html and "20261126T110000Z-cam1.jpg" in html and LOW_CONFIDENCE in html
    assert 'class="chart"' in html and html.count('class="col') == 6  # one bar per count
    assert "<svg" in html and "31% sure" in html
    assert "/static/console.js" in html and "https://" not in html  # everything served locally
    assert client.get("/static/console.js").status_code == 200
    assert client.get("/static/console.css").status_code == 200


def test_bin_page_lists_every_photo_of_the_bin_newest_first(seeded: ReviewStack, client: TestClient) -> None:
    items = client.get("/api/queue", params={"bin": "BIN-4"}).json()["items"]
    assert [item["key"] for item in items] == [key_of(seeded, "BIN-4", "20261126T090000Z")]
    assert (
        "expected"
        not in client.get("/", params={"bin": "BIN-4"}).text.split("bin history")[0].split("model")[-1]
    )
    assert "Bin NOPE has no photos" in client.get("/", params={"bin": "NOPE"}).text


def test_panel_and_photo_of_one_record(seeded: ReviewStack, client: TestClient) -> None:
    params = photo_params("BIN-3", sk_of(seeded, "BIN-3", "20261126T090000Z"))
    panel = client.get("/panel", params=params)
    assert panel.status_code == 200 and "expected <b>5</b>" in panel.text
    photo = client.get("/photo", params=params)
    assert photo.status_code == 200 and photo.content[:2] == b"\xff\xd8"  # a JPEG, through the console
    view = client.get("/api/photos", params=params).json()
    assert view["expected_quantity"] == 5 and view["model_count"] == 2 and view["reason"] == DISCREPANCY
    assert [row["value"] for row in view["history"]] == [5, 5, 2]
    assert [row["current"] for row in view["history"]] == [False, False, True]


def test_missing_photo_answers_one_clear_line(seeded: ReviewStack, client: TestClient) -> None:
    params = photo_params("BIN-3", missing_sk(seeded, "BIN-3"))
    panel = client.get("/panel", params=params)
    assert panel.status_code == 404 and "no longer exists" in panel.text
    assert client.get("/photo", params=params).status_code == 404


def test_save_through_the_api(seeded: ReviewStack, client: TestClient) -> None:
    record_sk = sk_of(seeded, "BIN-1", "20261126T120000Z")
    version = client.get("/api/photos", params=photo_params("BIN-1", record_sk)).json()["version"]
    answer = save(client, "BIN-1", record_sk, "5", version)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"reviewed_at": None} == {
        "bin_id": "BIN-1",
        "sk": record_sk,
        "key": key_of(seeded, "BIN-1", "20261126T120000Z"),
        "image_version": seeded.seeded[2].version,
        "status": "saved",
        "message": "saved count 5 (bin's latest count updated)",
        "label": "5",
        "source": "typed",
        "reviewer": "alice",
        "reviewed_at": None,
        "latest_updated": True,
    }
    assert seeded.latest("BIN-1")["count"] == 5 and len(seeded.events()) == 1
    assert len(client.get("/api/queue").json()["items"]) == 3  # it left the queue
    assert seeded.latest("BIN-1")["human_label"]["label_source"] == "typed"


def test_accepting_the_models_count_is_recorded_as_an_acceptance(
    seeded: ReviewStack, client: TestClient
) -> None:
    record_sk = sk_of(seeded, "BIN-3", "20261126T090000Z")  # the model said 2
    version = client.get("/api/photos", params=photo_params("BIN-3", record_sk)).json()["version"]
    body = {"bin_id": "BIN-3", "sk": record_sk, "count": "2", "seen": version, "source": "accepted"}
    answer = client.post("/api/corrections", json=body, headers=HEADERS)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"].startswith("accepted the model's count 2")
    record = seeded.image(seeded.seeded[6])
    assert (record["human_count"], record["label_source"]) == (2, "accepted")
    assert client.get("/api/photos", params=photo_params("BIN-3", record_sk)).json()["label"]["source"] == (
        "accepted"
    )


def test_an_acceptance_of_another_count_than_the_models_is_refused(
    seeded: ReviewStack, client: TestClient
) -> None:
    record_sk = sk_of(seeded, "BIN-3", "20261126T090000Z")  # the model said 2
    body = {"bin_id": "BIN-3", "sk": record_sk, "count": "3", "source": "accepted"}
    answer = client.post("/api/corrections", json=body, headers=HEADERS)
    assert answer.status_code == 409 and "the model's count is 2, not 3" in answer.json()["error"]
    assert "human_count" not in seeded.image(seeded.seeded[6])


def test_the_key_help_lists_the_keys_the_script_is_given(seeded: ReviewStack, client: TestClient) -> None:
    page = client.get("/").text
    keys = json.loads(page.split('<script id="keys-data" type="application/json">')[1].split("</script>")[0])
    assert keys == keys_json(console_keys(5))
    shown = re.findall(r'<dt data-action="[a-z]+">([^<]+)</dt>', page)
    assert shown == [key["shown"] for key in keys] and shown[0] == "0 – 5"
    assert "0 – 9" not in page


@pytest.mark.parametrize(
    ("count", "version", "status", "text"),
    [
        ("8", None, 422, "outside 0..5"),
        ("three", None, 422, "not a number"),
        ("2", "etag|2026-01-01T00:00:00.000Z|", 409, "changed since the page was shown"),
        ("2", "not-a-version", 409, "no valid record version"),
    ],
)
def test_bad_saves_answer_why_and_write_nothing(
    seeded: ReviewStack, client: TestClient, count: str, version: str | None, status: int, text: str
) -> None:
    params = photo_params("BIN-1", sk_of(seeded, "BIN-1", "20261126T110000Z"))
    before = client.get("/api/photos", params=params).json()
    answer = save(client, "BIN-1", params["sk"], count, version)
    assert answer.status_code == status and text in answer.json()["error"]
    assert client.get("/api/photos", params=params).json() == before
    assert seeded.events() == []


def test_save_of_a_deleted_photo_is_refused(seeded: ReviewStack, client: TestClient) -> None:
    photo = seeded.seeded[1]
    boto3.client("s3").delete_object(Bucket=photo.bucket, Key=photo.key, VersionId=photo.version_id)
    answer = save(client, "BIN-1", sk(photo), "3")
    assert answer.status_code == 404 and "no longer in its bucket" in answer.json()["error"]
    assert "human_count" not in seeded.image(photo)


def test_conflicting_second_save_is_refused_same_value_accepted(
    seeded: ReviewStack, client: TestClient
) -> None:
    record_sk = sk_of(seeded, "BIN-1", "20261126T110000Z")
    version = RecordVersion.of(seeded.image(seeded.seeded[1])).token()
    assert save(client, "BIN-1", record_sk, "4", version).status_code == 200
    refused = save(client, "BIN-1", record_sk, "3", version)
    assert refused.status_code == 409 and "alice already saved 4" in refused.json()["error"]
    again = save(client, "BIN-1", record_sk, "4", version)
    assert again.status_code == 200 and again.json()["status"] == "already_saved"


def test_writes_need_the_console_header_and_a_local_host(seeded: ReviewStack, client: TestClient) -> None:
    record_sk = sk_of(seeded, "BIN-1", "20261126T110000Z")
    assert save(client, "BIN-1", record_sk, "3", None, Other="1").status_code == 403
    assert "human_count" not in seeded.image(seeded.seeded[1])
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400


def test_on_aws_photos_are_presigned_urls_never_a_public_bucket(seeded: ReviewStack) -> None:
    service = ReviewService.for_stack(seeded.resources, reviewer="alice")  # no endpoint URL: AWS
    assert service.photo_mode == "presign"
    photo = seeded.seeded[6]
    url = service.view("BIN-3", sk(photo))["url"]
    assert url.startswith("https://") and seeded.resources.ingest_bucket in url and "Signature" in url
    assert f"versionId={photo.version_id}" in url  # the reviewed upload, not whatever the key holds now
    panel = TestClient(create_app(service)).get("/panel", params=photo_params("BIN-3", sk(photo))).text
    # the same object version, signed again (Expires, and so the signature, moves with the clock)
    unsigned = url.split("&AWSAccessKeyId=")[0]
    assert unsigned.replace("&", "&amp;") + "&amp;AWSAccessKeyId=" in panel and "Signature=" in panel


def test_a_long_queue_is_cut_and_says_how_many_wait(
    seeded: ReviewStack, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.review.app.PAGE_QUEUE", 2)
    html = client.get("/").text
    assert "+2 waiting" in html and '<b id="left">2</b>' in html


def test_page_whose_first_photo_vanished_says_so(
    seeded: ReviewStack, service: ReviewService, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = key_of(seeded, "BIN-1", "20990101T000000Z")
    gone = QueueItem(0, "2026-11-26T00:00:00.000Z", "BIN-1", key, missing_sk(seeded, "BIN-1"), PICKED)
    monkeypatch.setattr(
        service, "queue", lambda bin_id="", problems=None: [gone]
    )  # deleted between Scan and view
    page = TestClient(create_app(service)).get("/")
    assert page.status_code == 200 and "no longer exists" in page.text and 'data-gone="1"' in page.text


def test_reads_follow_every_page(seeded: ReviewStack, service: ReviewService) -> None:
    """Queue and export read with paginated Scan/Query: small pages give the same items."""
    everything = list(service.labels.scan())
    assert len(everything) == len(seeded.seeded) + 3  # an IMAGE# per photo, LATEST per counted bin
    assert sorted(item["sk"] for item in service.labels._items("scan", Limit=2)) == sorted(
        item["sk"] for item in everything
    )


def test_an_upload_without_a_version_id_is_shown_only_while_the_key_holds_its_bytes(
    seeded: ReviewStack, service: ReviewService, client: TestClient
) -> None:
    """Identity by ETag (the local stack's notifications carry no versionId): the key is read with
    IfMatch, so a later upload's bytes are never shown for this record."""
    photo = seeded.seeded[6]
    by_etag = dataclasses.replace(photo, version_id="")
    assert by_etag.version == f"etag:{photo.etag}"
    seeded.record(by_etag, CountResult(2, 0.4, (0.1, 0.1, 0.4, 0.2, 0.1, 0.1), False, "m"))
    params = photo_params("BIN-3", sk(by_etag))
    current = boto3.client("s3").get_object(Bucket=photo.bucket, Key=photo.key)["Body"].read()
    assert client.get("/photo", params=params).content == current
    seeded.photo("BIN-3", "20261126T090000Z", 3, 0.9, drawn=3)  # new bytes under the key
    assert client.get("/photo", params=params).status_code == 404
    answer = save(client, "BIN-3", sk(by_etag), "2")
    assert answer.status_code == 404 and "no longer in its bucket" in answer.json()["error"]


HTML_PHOTO = b"<!doctype html><html><body><script>document.title = 'ran'</script></body></html>"


def test_photo_answers_only_images_typed_by_their_content(seeded: ReviewStack, client: TestClient) -> None:
    """The uploader picks the bytes and the stored Content-Type: neither reaches the browser unchecked."""
    page = seeded.photo("BIN-5", "20261126T100000Z", None, error="transform_failed", body=HTML_PHOTO,
                        content_type="text/html")  # fmt: skip
    refused = client.get("/photo", params=photo_params("BIN-5", sk(page)))
    assert refused.status_code == 415 and "not a JPEG or PNG image" in refused.json()["error"]
    assert refused.headers["x-content-type-options"] == "nosniff" and b"<script>" not in refused.content
    polyglot = b"\xff\xd8\xff" + HTML_PHOTO  # JPEG's first bytes, then a page: Pillow reads no JPEG
    fake = seeded.photo("BIN-5", "20261126T110000Z", None, error="transform_failed", body=polyglot)
    assert client.get("/photo", params=photo_params("BIN-5", sk(fake))).status_code == 415

    real = seeded.seeded[6]  # a JPEG, re-uploaded with the type an attacker would choose
    jpeg = seeded.s3.get_object(Bucket=real.bucket, Key=real.key, VersionId=real.version_id)["Body"].read()
    relabelled = seeded.photo("BIN-5", "20261126T120000Z", 2, body=jpeg, content_type="text/html")
    photo = client.get("/photo", params=photo_params("BIN-5", sk(relabelled)))
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in photo.headers["content-security-policy"]


def test_every_answer_carries_a_policy_that_runs_only_the_console_script(
    seeded: ReviewStack, client: TestClient
) -> None:
    record = photo_params("BIN-3", sk_of(seeded, "BIN-3", "20261126T090000Z"))
    for path, params in (("/", {}), ("/panel", record), ("/api/queue", {}), ("/static/console.js", {})):
        answer = client.get(path, params=params)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy, path
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    page = client.get("/").text
    assert " on" not in page.replace(" one", "").split("<body>")[1].split(">")[0]  # no handler attributes
    # the queue and the key map as data (JSON, which the browser never runs), and the script file
    assert (
        page.count("<script") == 3
        and page.count('<script id="') == page.count('type="application/json"') == 2
    )


def test_presigned_urls_pin_the_image_type_and_the_policy_allows_their_origin(seeded: ReviewStack) -> None:
    service = ReviewService.for_stack(seeded.resources, reviewer="alice")  # no endpoint URL: AWS
    url = service.view("BIN-3", sk(seeded.seeded[6]))["url"]
    assert "response-content-type=image%2Fjpeg" in url
    policy = TestClient(create_app(service)).get("/").headers["content-security-policy"]
    assert service.photo_origin.startswith("https://")
    assert f"img-src 'self' data: {service.photo_origin};" in policy


def test_a_malformed_record_is_one_line_and_every_page_still_works(
    seeded: ReviewStack, client: TestClient
) -> None:
    """``human_count`` = "../../abc" written by a raw UpdateItem: named once, left out, no 500."""
    bad = seeded.seeded[1]
    seeded.table.update_item(
        Key={"pk": "BIN#BIN-1", "sk": sk(bad)},
        UpdateExpression="SET human_count = :c",
        ExpressionAttributeValues={":c": "../../abc"},
    )
    line = f"record BIN#BIN-1 {sk(bad)}: human_count '../../abc' is not a count"
    answer = client.get("/api/queue").json()
    assert answer["problems"] == [line] and len(answer["items"]) == 3
    page = client.get("/")
    assert page.status_code == 200 and f"{line} (left out)" in html.unescape(page.text)
    assert client.get("/", params={"bin": "BIN-1"}).status_code == 200
    assert client.get("/panel", params=photo_params("BIN-1", sk(seeded.seeded[2]))).status_code == 200
    panel = client.get("/panel", params=photo_params("BIN-1", sk(bad)))
    assert panel.status_code == 422 and line in html.unescape(panel.text)
    fixed = save(client, "BIN-1", sk(bad), "3", RecordVersion.of(seeded.image(bad)).token())
    assert fixed.status_code == 200 and seeded.image(bad)["human_count"] == 3  # a save repairs it
