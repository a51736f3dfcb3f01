"""`bincount count`: in process with the packed artifact, and through endpoints (faked servers)."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from cli_support import REGION, Run

from cli.counting import HttpEndpointCounter, Photo, SageMakerEndpointCounter
from common.errors import NotFound, Refused


def test_count_in_process_prints_every_photo_and_fails_for_the_bad_ones(
    run: Run, shipped_artifact: Path, tmp_path: Path, bin_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BINCOUNT_THREADS", "1")  # restored afterwards: the counter sets its own
    good = tmp_path / "bin.jpg"
    good.write_bytes(bin_jpeg)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(bin_jpeg[:200])  # a JPEG's start, then nothing: the model's error record
    argv = ["count", str(good), str(broken), "--model", str(shipped_artifact)]
    result = run(*argv, "--threads", "2", "--json")
    assert result.code == 1
    records = json.loads(result.out)
    assert [record["photo"] for record in records] == [str(good), str(broken)]
    counted = records[0]
    assert counted["count"] in range(len(counted["probabilities"]))
    assert counted["confidence"] == pytest.approx(counted["probabilities"][counted["count"]], abs=1e-3)
    assert counted["model_version"].startswith("bincount-")
    assert records[1]["error"]["code"] == "corrupt_image"
    assert os.environ["BINCOUNT_THREADS"] == "2"


def test_count_without_the_artifact_is_a_usage_error(run: Run, tmp_path: Path, bin_jpeg: bytes) -> None:
    photo = tmp_path / "bin.jpg"
    photo.write_bytes(bin_jpeg)
    result = run("count", str(photo), "--model", str(tmp_path / "none.tar.gz"))
    assert result.code == 2 and "run `make model`" in result.err and result.out == ""


class FakeContainer(BaseHTTPRequestHandler):
    """``/invocations`` like the model server: a count for JPEGs, HTTP 500 for anything else."""

    seen: ClassVar[list[tuple[str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeContainer.seen.append((self.headers["Content-Type"], len(body)))
        if body.startswith(b"\xff\xd8"):
            payload = json.dumps(
                {"count": 2, "confidence": 0.7, "probabilities": [0.1, 0.2, 0.7], "model_version": "m"}
            )
            status = 200
        else:
            payload, status = "ValueError: not an image", 500
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def container() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeContainer)
    # shutdown() waits for the loop to notice: poll every 50 ms, not the default 500 ms
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_count_through_an_http_endpoint_sends_the_bytes(
    run: Run, container: str, tmp_path: Path, bin_jpeg: bytes
) -> None:
    photo = tmp_path / "bin.jpg"
    photo.write_bytes(bin_jpeg)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nhello")  # a PNG's signature, then no picture
    FakeContainer.seen.clear()
    result = run("count", str(photo), str(bad), "--endpoint", container)
    assert result.code == 1
    assert FakeContainer.seen == [("image/jpeg", len(bin_jpeg)), ("image/png", 13)]
    lines = result.out.splitlines()
    assert lines[2].split()[:3] == [str(photo), "2", "0.70"]
    assert "endpoint_error: HTTP 500: ValueError: not an image" in lines[3]


def test_an_endpoint_that_does_not_answer_is_refused() -> None:
    counter = HttpEndpointCounter("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(Refused, match="does not answer"):
        counter.count([Photo("p.jpg", b"\xff\xd8", "image/jpeg")])


def runtime_response(payload: dict[str, object]) -> dict[str, object]:
    body = json.dumps(payload).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def test_sagemaker_endpoint_gets_image_bytes_and_model_errors_become_records() -> None:
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    photo = Photo("p.jpg", b"\xff\xd8\xffdata", "image/jpeg")
    request = {
        "EndpointName": "bincount-rt",
        "ContentType": "image/jpeg",
        "Accept": "application/json",
        "Body": photo.body,
    }
    with Stubber(client) as stubber:
        stubber.add_response("invoke_endpoint", runtime_response({"count": 1, "model_version": "m"}), request)
        stubber.add_client_error("invoke_endpoint", "ModelError", "Received server error (500)", 424)
        stubber.add_client_error(
            "invoke_endpoint", "ValidationError", "Endpoint bincount-rt of account x not found."
        )
        counter = SageMakerEndpointCounter("bincount-rt", client)
        assert counter.count([photo, photo]) == [
            {"count": 1, "model_version": "m"},
            {"error": {"code": "endpoint_error", "message": "Received server error (500)"}},
        ]
        with pytest.raises(NotFound, match="endpoint bincount-rt not found"):
            counter.count([photo])
