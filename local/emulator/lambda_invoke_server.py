"""Lambda's ``Invoke`` API for the functions the local stack hosts.

Operator tools invoke a function the way they would on AWS (``boto3.client("lambda").invoke``),
e.g. ``bincount redrive collector`` hands dead-lettered events back to the collector. Locally the
functions run inside the daemon's process (:class:`local.emulator.lambda_runtime.FunctionRuntime`), so the
daemon answers ``POST /2015-03-31/functions/{name}/invocations`` for them: the same request and
response shapes (``X-Amz-Function-Error: Unhandled`` and an ``errorMessage`` body when the
handler raises), so the tools need no local special case beyond the endpoint URL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping
from http.server import ThreadingHTTPServer
from urllib.parse import unquote

from local.emulator.http_handler import LocalRequestHandler
from local.emulator.lambda_runtime import FunctionRuntime

log = logging.getLogger(__name__)

INVOKE_PATH = "/2015-03-31/functions/"


def function_key(name_or_arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` or ``NAME`` -> ``NAME``."""
    if name_or_arn.startswith("arn:"):
        parts = name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else name_or_arn
    return name_or_arn.split(":", 1)[0]


def invoke_response(runtime: FunctionRuntime, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    """Run the handler with the JSON payload; Lambda's status, headers and body for the outcome."""
    try:
        event = json.loads(payload or b"{}")
    except json.JSONDecodeError as error:
        body = {"errorType": "InvalidRequestContentException", "message": f"payload is not JSON: {error}"}
        return 400, {"x-amzn-ErrorType": "InvalidRequestContentException"}, json.dumps(body).encode()
    headers = {"X-Amz-Executed-Version": "$LATEST"}
    try:
        result = runtime.invoke(event)
    except Exception as error:  # Lambda reports the handler's exception in the body, status 200
        log.exception("%s failed on an Invoke", runtime.name)
        headers["X-Amz-Function-Error"] = "Unhandled"
        body = {"errorType": type(error).__name__, "errorMessage": str(error)}
        return 200, headers, json.dumps(body).encode()
    return 200, headers, json.dumps(result, default=str).encode()


def make_handler(functions: Mapping[str, FunctionRuntime]) -> type[LocalRequestHandler]:
    class Handler(LocalRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length)
            if not (self.path.startswith(INVOKE_PATH) and "/invocations" in self.path):
                self.reply(404, b'{"message": "not an Invoke request"}', "application/json")
                return
            name = function_key(unquote(self.path[len(INVOKE_PATH) :].split("/invocations", 1)[0]))
            runtime = functions.get(name)
            if runtime is None:
                body = {"Type": "User", "message": f"Function not found: {name}"}
                error_type = {"x-amzn-ErrorType": "ResourceNotFoundException"}
                self.reply(404, json.dumps(body).encode(), "application/json", error_type)
                return
            status, headers, body_bytes = invoke_response(runtime, payload)
            self.reply(status, body_bytes, "application/json", headers)

    return Handler


@contextlib.contextmanager
def lambda_invoke_server(functions: Mapping[str, FunctionRuntime], port: int) -> Iterator[str]:
    """Serve Invoke for ``functions`` (name -> runtime) on 127.0.0.1:``port``; yields the URL."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(functions))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="lambda-invoke", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
