"""Switching the local stack's model server without losing a record in flight.

On AWS a promotion changes the model the *next* transform jobs are created with; the jobs
already running keep theirs. Locally every transform job shares one model server, so the
executor sends each record through a :class:`SwitchingInvoker`: it counts the requests in flight
per server, a switch points every request from then on at the new server, and the old one is
stopped only once its requests have been answered (:meth:`SwitchingInvoker.drain`). A job that
straddles the switch completes; its later records carry the new ``model_version``.

:class:`RegistryWatcher` ties the stack to a model registry (``training.promotion.registry``): when the
served version changes (``promote`` / ``rollback``), it asks the pipeline to serve the new
artifact and tells the daemon, which rewrites the state file with the new URL.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common.invocations import http_invoker

log = logging.getLogger(__name__)


class SwitchingInvoker:
    """Sends each record to the current model server; knows how many are in flight on each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._in_flight: Counter[str] = Counter()
        self._changed = threading.Condition()

    def __call__(self, body: bytes, content_type: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
        with self._changed:
            url = self.url
            self._in_flight[url] += 1
        try:
            return http_invoker(url)(body, content_type, accept, timeout_s)
        finally:
            with self._changed:
                self._in_flight[url] -= 1
                self._changed.notify_all()

    def switch(self, url: str) -> str:
        """Send every request from now on to ``url``; returns the server replaced."""
        with self._changed:
            previous, self.url = self.url, url
        return previous

    def in_flight(self, url: str) -> int:
        with self._changed:
            return self._in_flight[url]

    def drain(self, url: str, timeout_s: float) -> bool:
        """Wait until no request to ``url`` is in flight; False if some still are after ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight[url] == 0, timeout=timeout_s)


class RegistryWatcher:
    """Polls a registry's served artifact; on a change calls ``serve(artifact)`` (the switch)."""

    def __init__(self, registry: Path, serving: Path | None, serve: Callable[[Path], None]) -> None:
        self.registry = registry
        self.serving = serving
        self.serve = serve
        self.failed: Path | None = None  # an artifact that did not start: not retried every poll

    def check_once(self) -> bool:
        """Serve the registry's served artifact if it is not the one served; True if it switched."""
        from training.promotion.registry import served_artifact

        try:
            artifact = served_artifact(self.registry)
        except Exception as error:  # a registry being written: look again on the next poll
            log.warning("registry %s unreadable: %s", self.registry, error)
            return False
        if artifact is None or artifact in (self.serving, self.failed):
            return False
        log.info("registry %s serves %s: switching the model server", self.registry, artifact)
        try:
            self.serve(artifact)
        except Exception:  # a model that does not start: the old one keeps serving, the log says why
            log.exception("could not serve %s: still serving %s", artifact, self.serving)
            self.failed = artifact
            return False
        self.serving = artifact
        return True

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        while not stop.is_set():
            self.check_once()
            stop.wait(interval_s)
