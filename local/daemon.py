"""The local stack that stays up: the pipeline of ``make demo``, kept running until told to stop.

``python -m local.daemon`` (started detached by ``make up``, see :mod:`local.updown`) brings up
moto, the stack from ``template.yaml``, the model server and the Lambda/Batch-Transform
stand-ins (:func:`local.emulator.pipeline.local_pipeline`), adds Lambda's Invoke API for the hosted
functions, writes the state file once everything answers (again after each restart of a model
server that died), and waits for SIGTERM/SIGINT. Then it
tears everything down in reverse order and removes the state file. Uploads into the ingest
bucket are counted as they arrive, as on AWS; all state lives in moto's memory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import psutil

from common.stack_state import (
    STATE_DIR,
    ChildProcess,
    LocalStackState,
    default_state_path,
    read_state,
    write_state,
)
from local.demo import choose_server, decision_parameters, false_alarm_rate, quiet_handlers
from local.emulator.lambda_invoke_server import lambda_invoke_server
from local.emulator.model_swap import RegistryWatcher
from local.emulator.moto_server import free_port
from local.emulator.pipeline import REPO_ROOT, LocalPipeline, PipelineOptions, local_pipeline
from local.emulator.serving_server import Restart

log = logging.getLogger("local.daemon")


def started_processes() -> list[psutil.Process]:
    """Every process this one started, for `make down`: its descendants and their sessions.

    The servers run in sessions of their own; TorchServe's JVM leaves the process tree (its
    launcher exits and it is re-parented) but stays in the launcher's session, so a session is
    what names everything a server started.
    """
    descendants = psutil.Process().children(recursive=True)
    sessions = {_session(child.pid) for child in descendants} - {os.getsid(0), None}
    found = {child.pid: child for child in descendants}
    for process in psutil.process_iter():
        if process.pid not in found and _session(process.pid) in sessions:
            found[process.pid] = process
    return list(found.values())


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def recorded(processes: list[psutil.Process]) -> tuple[list[ChildProcess], list[int]]:
    """The processes as the state file keeps them, and the TCP ports they (and we) listen on."""
    children: list[ChildProcess] = []
    ports: set[int] = set()
    for process in [psutil.Process(), *processes]:
        try:
            listening = process.net_connections(kind="tcp")
            if process.pid != os.getpid():
                children.append(
                    ChildProcess(process.pid, process.create_time(), " ".join(process.cmdline()[:4]))
                )
        except psutil.Error:
            continue
        ports.update(conn.laddr.port for conn in listening if conn.status == psutil.CONN_LISTEN)
    return children, sorted(ports)


def state_of(pipeline: LocalPipeline, lambda_url: str, log_dir: Path) -> LocalStackState:
    functions = {logical_id: pipeline.stack.ref(logical_id) for logical_id in pipeline.runtimes}
    children, listening = recorded(started_processes())
    me = psutil.Process()
    from bincount.timefmt import now

    return LocalStackState(
        daemon_pid=me.pid,
        daemon_create_time=me.create_time(),
        started_at=now(),
        region=pipeline.endpoint.region,
        stack_name=pipeline.stack.stack_name,
        moto_url=pipeline.endpoint.url,
        model_server_url=pipeline.serving_url,
        model_server=pipeline.options.server,
        lambda_url=lambda_url,
        functions=functions,
        log_dir=str(log_dir),
        children=children,
        listening=listening,
        model_artifact=str(Path(pipeline.options.model_artifact).resolve()),
        model_server_restarts=[asdict(restart) for restart in pipeline.model_servers.restarts],
    )


def serve_until_stopped(
    options: PipelineOptions, state_path: Path, stop: threading.Event, registry: Path | None = None
) -> None:
    """Bring everything up, publish the state file, wait for ``stop``, tear down, remove the file.

    With ``registry``, the stack serves that registry's served version (``--model`` only while
    it serves none) and follows each promotion or rollback (:mod:`local.emulator.model_swap`).
    """
    log_dir = options.log_dir or STATE_DIR
    if registry is not None:
        from training.promotion.registry import served_artifact

        options.model_artifact = served_artifact(registry) or options.model_artifact
    with local_pipeline(options) as pipeline:
        runtimes = {}
        for logical_id, runtime in pipeline.runtimes.items():
            runtimes[logical_id] = runtime
            runtimes[pipeline.stack.ref(logical_id)] = runtime
        with lambda_invoke_server(runtimes, free_port()) as lambda_url:
            state = state_of(pipeline, lambda_url, log_dir)
            write_state(state_path, state)

            def restarted(restart: Restart) -> None:  # new processes (for `make down`), the restart
                write_state(state_path, state_of(pipeline, lambda_url, log_dir))

            pipeline.model_servers.listeners.append(restarted)
            log.info("local stack up: %s (state %s)", state.urls, state_path)
            if registry is not None:
                follow_registry(pipeline, registry, lambda_url, log_dir, state_path, stop)
            try:
                stop.wait()
                log.info("stopping the local stack")
            finally:
                recorded = read_state(state_path)
                if recorded is not None and recorded.daemon_pid == os.getpid():
                    state_path.unlink(missing_ok=True)


def follow_registry(
    pipeline: LocalPipeline,
    registry: Path,
    lambda_url: str,
    log_dir: Path,
    state_path: Path,
    stop: threading.Event,
) -> None:
    """A thread that serves each version the registry promotes and republishes the state file
    (the operator tools find the model server's new URL there)."""

    def publish(url: str) -> None:
        write_state(state_path, state_of(pipeline, lambda_url, log_dir))
        log.info("model server %s takes every request now", url)

    def serve(artifact: Path) -> None:
        previous = pipeline.options.model_artifact
        pipeline.options.model_artifact = artifact  # what the state file names from the switch on
        try:
            url = pipeline.serve(artifact, publish)
        except BaseException:
            pipeline.options.model_artifact = previous
            raise
        write_state(state_path, state_of(pipeline, lambda_url, log_dir))  # without the old server
        log.info("now serving %s at %s", artifact, url)

    watcher = RegistryWatcher(registry, pipeline.options.model_artifact, serve)
    threading.Thread(target=watcher.run, args=(stop,), name="registry-watcher", daemon=True).start()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--state", type=Path, default=None, help="state file (default: build/local-stack)")
    parser.add_argument("--log-dir", type=Path, default=None, help="logs (default: beside the state file)")
    parser.add_argument("--server", choices=("auto", "python", "torchserve"), default="python")
    parser.add_argument("--stack-name", default="bincount-local")
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="serve this model registry's served version, follow promotions",
    )
    parser.add_argument("--verbose", action="store_true", help="keep the handlers' own JSON logs")
    parser.add_argument(
        "--alpha", type=false_alarm_rate, default=None, help="discrepancy false-alarm rate α (default 0.05)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_path = args.state or default_state_path()
    log_dir = args.log_dir or state_path.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    options = PipelineOptions(
        model_artifact=args.model,
        template=args.template,
        stack_name=args.stack_name,
        log_dir=log_dir,
        parameters=decision_parameters(args.alpha),
        environment_overrides=quiet_handlers(args.verbose),
        server=choose_server(args.server),
    )
    serve_until_stopped(options, state_path, stop, args.registry)
    log.info("local stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
