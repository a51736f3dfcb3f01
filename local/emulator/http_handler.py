"""The request handler the local stack's small HTTP servers share (the model server, Lambda's Invoke).

Both answer HTTP/1.1 with keep-alive, so every reply carries its length; their request lines go to
the debug log of the module that defines the handler instead of stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any


class LocalRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """One whole response: status, ``Content-Type``, ``headers``, ``Content-Length``, body."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(type(self).__module__).debug(format, *args)
