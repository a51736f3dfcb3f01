"""``make up`` / ``make down``: start the local stack in the background, and stop all of it.

``up`` starts :mod:`local.daemon` detached (its own session, output in build/local-stack/),
waits until it has written the state file, prints where it listens and returns. ``down`` says
what the emulator held (it all lives in moto's memory and is lost), stops the daemon, then
anything it started that is still there, and checks that none of its processes and none of its
ports remain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from common.malloc import with_malloc_env
from common.stack_state import (
    REPO_ROOT,
    ChildProcess,
    LocalStackState,
    default_state_path,
    process_alive,
    read_state,
)


def pid_file(state_path: Path) -> Path:
    """The daemon's pid, written at once (the state file only exists once everything is up)."""
    return state_path.with_name("daemon.pid")


def describe(state: LocalStackState, state_path: Path) -> str:
    lines = [f"local stack up (daemon pid {state.daemon_pid}, model server: {state.model_server})"]
    for name, url in state.urls.items():
        lines.append(f"  {name:<13} {url}")
    lines.append(f"  {'state file':<13} {state_path}")
    lines.append(f"  {'logs':<13} {state.log_dir}")
    lines.extend(try_lines())
    return "\n".join(lines)


def bincount_command() -> str:
    """How to run `bincount` from here, as printed: the script the install put beside this Python
    (.venv/bin/bincount: it is on PATH only in an activated environment), relative when shorter."""
    script = Path(sys.executable).parent / "bincount"
    if not script.is_file():
        return f"{sys.executable} -m cli.main"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def try_lines() -> list[str]:
    """The next steps `make up` prints, each one runnable as shown (no PATH change needed)."""
    bincount = bincount_command()
    activate = Path(sys.executable).parent / "activate"
    return [
        f"Try these (or `source {os.path.relpath(activate)}` once, then plain `bincount ...`):",
        f"  {bincount} upload PHOTOS_OR_FOLDER          # each photo its own bin; --bin BIN-1 for one bin",
        f"  {bincount} bins                             # latest count per bin (and whose: model or person)",
        f"  {bincount} count PHOTO                      # count now with the model this stack serves",
        f"  {bincount} review                           # the review console, http://127.0.0.1:8765/",
        "Stop: make down",
    ]


def running_state(state_path: Path) -> LocalStackState | None:
    state = read_state(state_path)
    if state is not None and process_alive(state.daemon_pid, state.daemon_create_time):
        return state
    return None


def start(args: argparse.Namespace) -> int:
    state_path: Path = args.state
    already = running_state(state_path)
    if already is not None:
        print("already up\n" + describe(already, state_path))
        return 0
    if not args.model.is_file():
        print(f"up: error: model artifact {args.model} is missing: run `make model`", file=sys.stderr)
        return 2
    state_path.unlink(missing_ok=True)  # a stale file of a stack that died
    log_dir = state_path.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "local.daemon", "--state", str(state_path), "--model", str(args.model)]
    command += ["--server", args.server]
    if args.registry is not None:
        command += ["--registry", str(args.registry.resolve())]
    if getattr(args, "alpha", None) is not None:
        command += ["--alpha", f"{args.alpha:g}"]
    python_path = os.pathsep.join(
        [str(REPO_ROOT), str(REPO_ROOT / "functions"), os.environ.get("PYTHONPATH", "")]
    )
    env = {**with_malloc_env(os.environ), "PYTHONPATH": python_path}
    with (log_dir / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=REPO_ROOT, start_new_session=True,
        )  # fmt: skip
    me = psutil.Process(process.pid)
    pid_file(state_path).write_text(json.dumps({"pid": process.pid, "create_time": me.create_time()}))
    state = wait_for_state(process, state_path, args.timeout)
    if state is None:
        stop_group(process.pid)
        tail = (log_dir / "daemon.log").read_text(errors="replace").splitlines()[-15:]
        print("up: error: the local stack did not come up; end of daemon.log:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in tail), file=sys.stderr)
        return 1
    print(describe(state, state_path))
    return 0


def wait_for_state(
    process: subprocess.Popen[bytes], state_path: Path, timeout_s: float
) -> LocalStackState | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(state_path)
        if state is not None and state.daemon_pid == process.pid:
            return state
        if process.poll() is not None:
            return None
        time.sleep(0.5)
    return None


def stop_group(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM the process group led by ``pid`` (or the process alone), SIGKILL what outlives grace."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    kill = os.killpg if group == pid else os.kill
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    try:
        psutil.Process(pid).wait(timeout=grace_s)
    except psutil.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
    except psutil.Error:
        pass


def held_in_memory(moto_url: str, region: str) -> str:
    """What the emulator holds now (lost on stop): objects, table items, queued messages."""
    try:
        s3, dynamodb, sqs = (_emulator_client(name, moto_url, region) for name in ("s3", "dynamodb", "sqs"))
        objects = sum(
            page.get("KeyCount", 0)
            for bucket in s3.list_buckets()["Buckets"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
        )
        tables = dynamodb.list_tables()["TableNames"]
        items = sum(dynamodb.describe_table(TableName=name)["Table"].get("ItemCount", 0) for name in tables)
        messages = 0
        for url in sqs.list_queues().get("QueueUrls", []):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            messages += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    except Exception as error:  # best effort: the stack may already be half down
        return f"everything the emulator held (could not count it: {type(error).__name__})"
    return (
        f"{objects} S3 objects (photos, manifests, outputs), {items} table items, {messages} queued messages"
    )


def _emulator_client(service: str, url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=url,
        region_name=region,
        config=config,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def stop(args: argparse.Namespace) -> int:
    state_path: Path = args.state
    state = read_state(state_path)
    daemon = _daemon_of(state, state_path)
    if daemon is None:
        print("the local stack is not up (nothing to stop)")
        _forget(state_path)
        return 0
    if state is not None:
        held = held_in_memory(state.moto_url, state.region)
        print(f"losing (all in moto's memory, a new `make up` starts empty): {held}")
    stop_group(daemon.pid, grace_s=60)
    leftovers = [c for c in (state.children if state else []) if process_alive(c.pid, c.create_time)]
    for child in leftovers:
        stop_group(child.pid, grace_s=15)
    remaining = [c for c in [daemon, *leftovers] if process_alive(c.pid, c.create_time)]
    listening = open_ports(state.ports if state else [])
    _forget(state_path)
    stopped = [daemon.pid] + [c.pid for c in (state.children if state else [])]
    if remaining or listening:
        print(
            f"down: error: still running {[c.pid for c in remaining]}, ports open {listening}",
            file=sys.stderr,
        )
        return 1
    ports = ", ".join(str(p) for p in (state.ports if state else [])) or "none recorded"
    print(f"local stack stopped: processes {stopped} gone, ports {ports} closed")
    return 0


def _daemon_of(state: LocalStackState | None, state_path: Path) -> ChildProcess | None:
    if state is not None and process_alive(state.daemon_pid, state.daemon_create_time):
        return ChildProcess(state.daemon_pid, state.daemon_create_time, "local.daemon")
    try:  # still starting: no state file yet, but its pid file
        recorded = json.loads(pid_file(state_path).read_text())
    except (OSError, ValueError):
        return None
    if process_alive(int(recorded["pid"]), float(recorded["create_time"])):
        return ChildProcess(int(recorded["pid"]), float(recorded["create_time"]), "local.daemon")
    return None


def _forget(state_path: Path) -> None:
    state_path.unlink(missing_ok=True)
    pid_file(state_path).unlink(missing_ok=True)


def open_ports(ports: list[int]) -> list[int]:
    """Which of ``ports`` still have a listening socket on this machine."""
    wanted = set(ports)
    listening = {
        conn.laddr.port
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted
    }
    return sorted(listening)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("up", "down", "where"))
    parser.add_argument("--state", type=Path, default=None, help="state file (default: build/local-stack)")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "build/model/model.tar.gz")
    parser.add_argument("--server", choices=("auto", "python", "torchserve"), default="python")
    parser.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="serve this registry's served version and follow promotions",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the stack")
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="discrepancy false-alarm rate α of the stack (template parameter DiscrepancyFalseAlarmRate; "
        "the daemon checks it)",
    )
    args = parser.parse_args(argv)
    args.state = args.state or default_state_path()
    if args.action == "up":
        return start(args)
    if args.action == "down":
        return stop(args)
    state = running_state(args.state)
    print(describe(state, args.state) if state else "the local stack is not up: make up")
    return 0 if state else 1


if __name__ == "__main__":
    sys.exit(main())
