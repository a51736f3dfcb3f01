"""``python -m moto.server`` with two per-request costs removed, for the local pipeline.

Profiled under ``make bench-pipeline`` (py-spy, 300 photos), moto's single server process was the
pipeline's limit, and about a fifth of its samples went to things that say nothing about AWS:

* finding the backend of each request: every call matches the host name inferred from the
  request against hundreds of URL regexes, under a lock that every request waits for (3 % of the
  server's samples searching, about 7 % waiting). The answer depends only on that host name, so
  it is remembered;
* werkzeug's access log line per request (9 %), which the demo writes to a file nobody reads;
* and, once the collector batched its writes, moto's table copies in ``TransactWriteItems``
  (``local.emulator.moto_patches``).

Everything else is moto's own server (``DomainDispatcherApplication``, ``MotoRequestHandler``,
werkzeug's threaded server), so requests are answered exactly as by ``moto.server``.

Run: ``python -m local.emulator.moto_launcher -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

from local.emulator import moto_patches


class CachedDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend answers for which host name."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backend_by_host: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backend_by_host:
            self._backend_by_host[host] = super().get_backend_for_host(host)
        return self._backend_by_host[host]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds queue URLs from it
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_patches.apply()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, CachedDispatcher(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
