"""One record over the SageMaker container contract: ``POST /invocations`` on a model server.

The local Batch Transform, the CLI's count against a running stack and the serving benchmark all
send records this one way.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Protocol


class Invoker(Protocol):
    """Sends one record to the model server; returns the HTTP status and body."""

    def __call__(
        self, body: bytes, content_type: str, accept: str, timeout_s: float
    ) -> tuple[int, bytes]: ...


def http_invoker(url: str) -> Invoker:
    """POST /invocations on a server speaking the SageMaker container contract."""

    def invoke(body: bytes, content_type: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"{url}/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "Accept": accept},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    return invoke
