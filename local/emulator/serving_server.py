"""A model server with SageMaker's container HTTP contract, loading ``code/inference.py``.

SageMaker's PyTorch container answers ``GET /ping`` and ``POST /invocations`` and calls the
artifact's ``model_fn`` once and ``input_fn -> predict_fn -> output_fn`` per request, taking the
request's ``Content-Type`` and ``Accept``; an exception becomes an HTTP 500 (a failed record in
Batch Transform). This is the same contract in a few lines, for machines without TorchServe.

Run: ``python -m local.emulator.serving_server --model-dir DIR --port PORT`` (the model directory is
what ``/opt/ml/model`` would hold: the extracted ``model.tar.gz``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

from common.malloc import with_malloc_env
from local.emulator.http_handler import LocalRequestHandler
from local.emulator.moto_server import free_port
from training.promotion.artifact import load_inference_module, unpack_artifact

log = logging.getLogger(__name__)


class InferenceService:
    """``model_fn`` once, then the per-request chain; one prediction at a time on the CPU."""

    def __init__(self, model_dir: Path) -> None:
        self.module = load_inference_module(model_dir)
        self.model = self.module.model_fn(str(model_dir))
        # TorchServe runs one worker per core; here requests decode concurrently and the forward
        # pass runs alone with all the intra-op threads, which is faster on 2 cores.
        self._predict_lock = threading.Lock()

    def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        data = self.module.input_fn(body, content_type)
        with self._predict_lock:
            prediction = self.module.predict_fn(data, self.model)
        output = self.module.output_fn(prediction, accept)
        if isinstance(output, tuple):
            output, accept = output[0], output[1]
        if isinstance(output, str):
            output = output.encode("utf-8")
        return bytes(output), accept


def make_handler(service: InferenceService) -> type[LocalRequestHandler]:
    class Handler(LocalRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ping":
                self.reply(200, b"", "text/plain")
            else:
                self.reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self.reply(404, b"not found", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type") or "application/x-image"
            accept = self.headers.get("Accept") or "application/json"
            if accept == "*/*":
                accept = "application/json"
            try:
                payload, response_type = service.transform(body, content_type, accept)
            except Exception as error:  # the container answers 500 for any handler exception
                log.exception("inference failed")
                self.reply(500, f"{type(error).__name__}: {error}".encode(), "text/plain")
                return
            self.reply(200, payload, response_type)

    return Handler


def serve(model_dir: Path, port: int, host: str = "127.0.0.1") -> None:
    service = InferenceService(model_dir)
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    log.info("serving %s on http://%s:%d", model_dir, host, port)
    server.serve_forever()


def extract_model(artifact: Path, destination: Path) -> Path:
    """Unpack ``model.tar.gz`` the way SageMaker fills ``/opt/ml/model``."""
    return unpack_artifact(artifact, destination)


def wait_until_pinged(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None:
            raise RuntimeError(
                f"serving process exited with status {process.returncode} before /ping answered"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}/ping did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


@dataclass(frozen=True)
class Restart:
    """One restart of a model server that died: when, how it ended, how long requests found no server."""

    at: str  # when it was found dead (UTC, ISO 8601)
    exit_code: int | None  # negative: killed by that signal
    down_s: float  # from found dead to /ping answering again


class Supervisor:
    """Keeps one model server answering on its URL: a process that exits is started again.

    SageMaker replaces a Batch Transform instance whose container dies; the local stack does the
    same for its one model server, on the same port, so the executor's requests find it again
    and the state file's URL stays right. Requests sent while it is down fail as a container
    failure (connection refused), and the collector retries their photos whole. Only an exit is
    noticed: a server that hangs answering is the job timeout's business.
    """

    def __init__(
        self,
        start: Callable[[], subprocess.Popen[bytes]],
        url: str,
        startup_timeout_s: float,
        on_restart: Callable[[Restart], None] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self._start, self.url, self.startup_timeout_s = start, url, startup_timeout_s
        self.on_restart = on_restart
        self.poll_s = poll_s
        self.restarts: list[Restart] = []
        self._stop = threading.Event()
        self.process = start()
        try:
            wait_until_pinged(url, self.process, startup_timeout_s)
        except BaseException:
            stop_process_group(self.process)
            raise
        self._thread = threading.Thread(target=self._watch, name="model-server-supervisor", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            code = self.process.poll()
            if code is None:
                continue
            found = time.monotonic()
            at = datetime.now(UTC).isoformat(timespec="seconds")
            log.warning("model server %s exited with status %s: starting it again", self.url, code)
            stop_process_group(self.process)  # whatever it started goes with it
            if self._restart():
                restart = Restart(at, code, round(time.monotonic() - found, 1))
                self.restarts.append(restart)
                log.warning("model server %s answers again after %.1f s", self.url, restart.down_s)
                if self.on_restart is not None:
                    self.on_restart(restart)

    def _restart(self) -> bool:
        """Start the server until it answers /ping (waiting longer after each failed start)."""
        delay = 1.0
        while not self._stop.is_set():
            self.process = self._start()
            try:
                wait_until_pinged(self.url, self.process, self.startup_timeout_s)
                return True
            except (RuntimeError, TimeoutError) as error:
                log.error("model server %s did not start again: %s", self.url, error)
                stop_process_group(self.process)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.startup_timeout_s + 30)
        stop_process_group(self.process)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's group, SIGKILL it after 15 s; reaps the process."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serving_process(
    model_dir: Path,
    torch_threads: int | None = None,
    log_path: Path | None = None,
    startup_timeout_s: float = 120,
    on_restart: Callable[[Restart], None] | None = None,
    on_start: Callable[[Supervisor], None] | None = None,
) -> Iterator[str]:
    """Start this server as its own process (torch stays out of the demo's process), restarted
    whenever it dies (:class:`Supervisor`; ``on_start`` gets it); yields its URL."""
    port = free_port()
    threads = torch_threads or os.cpu_count() or 1
    env = {
        **with_malloc_env(os.environ),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "local.emulator.serving_server",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
    log_file = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    try:
        supervisor = Supervisor(start, url, startup_timeout_s, on_restart)
        try:
            if on_start is not None:
                on_start(supervisor)
            yield url
        finally:
            supervisor.close()
    finally:
        if not isinstance(log_file, int):
            log_file.close()


@contextlib.contextmanager
def server_process(
    command: list[str],
    env: dict[str, str],
    url: str,
    log_path: Path | None,
    startup_timeout_s: float,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a model server in its own process group until it answers ``/ping``; stop the whole group.

    A group, because a server may start workers of its own (TorchServe starts a JVM and Python
    workers) that must not outlive the demo.
    """
    log_file = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_until_pinged(url, process, startup_timeout_s)
        yield process
    finally:
        if process.poll() is None:
            stop_process_group(process)
        if not isinstance(log_file, int):
            log_file.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.model_dir, args.port, args.host)


if __name__ == "__main__":
    main()
