"""moto in server mode as its own process, and boto3 clients pointed at it.

A separate process (rather than ``mock_aws`` in-process) is what makes the demo honest: the
handlers, the executor and the demo talk to the emulator over HTTP exactly as they would talk to
AWS, and the emulator's delivery threads (S3 -> SQS, EventBridge -> SQS) run outside our GIL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free loopback port (the tiny race is acceptable for a local run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class AwsEndpoint:
    """Where the emulated AWS answers, and how to build clients and environments for it."""

    url: str
    region: str = REGION
    _config: Config = field(
        default_factory=lambda: Config(
            retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32
        )
    )
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        """One client per service, shared by threads (clients are thread-safe; creating one is slow)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.session.Session().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.url,
                    region_name=self.region,
                    config=self._config,
                    **FAKE_CREDENTIALS,
                )
            return self._clients[service]

    def environment(self) -> dict[str, str]:
        """Variables that make any boto3 client in this process (the handlers') use the emulator."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
        }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def moto_server(
    port: int | None = None,
    startup_timeout: float = 30.0,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[AwsEndpoint]:
    """Run moto's server on 127.0.0.1 for the duration of the ``with`` block.

    It runs through ``local.emulator.moto_launcher`` (moto's server without its per-request backend
    search and access log). The server is stopped on normal
    exit, on exceptions and on Ctrl-C; its output goes to ``log_path`` (or nowhere) so it cannot
    interleave with the demo's progress bars.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    module = "local.emulator.moto_launcher"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us, not moto: we stop it in order
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with status {process.returncode} before answering")
            if time.monotonic() > deadline:
                raise TimeoutError(f"moto server did not answer on {url} within {startup_timeout:.0f} s")
            time.sleep(0.1)
        yield AwsEndpoint(url)
    finally:
        _stop(process)
        if not isinstance(log, int):
            log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for a block and restore the previous values afterwards."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
