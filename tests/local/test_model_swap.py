"""Switching the local stack's model server: nothing in flight is lost (the registry watcher is
tested with the registry, tests/training/test_registry.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from local.emulator.model_swap import SwitchingInvoker


class FakeModelServer:
    """Answers /invocations with its version; ``hold`` keeps answers back until it is set."""

    def __init__(self, version: str) -> None:
        self.hold = threading.Event()
        self.hold.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hold.wait(30)
                body = json.dumps({"model_version": version}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the loop to notice: poll every 50 ms, not the default 500 ms
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def servers() -> Iterator[tuple[FakeModelServer, FakeModelServer]]:
    old, new = FakeModelServer("v1"), FakeModelServer("v2")
    yield old, new
    for server in (old, new):
        server.hold.set()
        server.server.shutdown()


def test_a_request_in_flight_finishes_on_the_old_server_and_later_ones_go_to_the_new(
    servers: tuple[FakeModelServer, FakeModelServer],
) -> None:
    old, new = servers
    invoker = SwitchingInvoker(old.url)
    old.hold.clear()
    answers: list[bytes] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(invoker(b"x", "image/jpeg", "application/json", 30)[1])
    )
    in_flight.start()
    while invoker.in_flight(old.url) == 0:
        threading.Event().wait(0.01)
    assert invoker.switch(new.url) == old.url
    assert json.loads(invoker(b"y", "image/jpeg", "application/json", 30)[1])["model_version"] == "v2"
    assert not invoker.drain(old.url, timeout_s=0.2)  # the old server still has a request to answer
    old.hold.set()
    assert invoker.drain(old.url, timeout_s=30)
    in_flight.join(30)
    assert [json.loads(answer)["model_version"] for answer in answers] == ["v1"]
