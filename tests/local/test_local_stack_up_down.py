"""End to end: `make up`'s stack in the background, `bincount upload`, records, then `make down`.

Starts the daemon as `make up` does (detached, own session), uploads generated photos with the
CLI as a separate process, waits for their records, reads them back with `bins` / `history`,
counts one photo through the local real-time endpoint, and stops the stack: no process it
started and no port it opened may remain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imaging import jpeg_photo
from processes import REPO, python_env

from common.stack_state import LocalStackState, process_alive, read_state
from local.updown import open_ports

pytestmark = pytest.mark.e2e


def bincount(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = python_env(BINCOUNT_LOCAL_STATE=str(state))
    command = [sys.executable, "-m", "cli.main", *argv]
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False
    )


def updown(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "local.updown", *argv, "--state", str(state)]
    return subprocess.run(
        command, capture_output=True, text=True, env=python_env(), cwd=REPO, timeout=400, check=False
    )


@pytest.fixture
def local_stack(tmp_path: Path, shipped_artifact: Path) -> Iterator[tuple[Path, LocalStackState]]:
    state_path = tmp_path / "local-stack" / "state.json"
    started = updown(
        state_path, "up", "--model", str(shipped_artifact), "--server", "python", "--timeout", "300"
    )
    assert started.returncode == 0, started.stdout + started.stderr
    state = read_state(state_path)
    assert state is not None
    try:
        yield state_path, state
    finally:
        updown(state_path, "down")


def wait_for_history(state: Path, bin_id: str, photos: int, limit_s: float = 180) -> list[dict[str, Any]]:
    """Poll `bincount history` until every photo has its record (a deadline, not a speed check)."""
    deadline = time.monotonic() + limit_s
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = bincount(state, "history", bin_id, "--json")
        rows = json.loads(result.stdout) if result.returncode == 0 else []
        if len(rows) >= photos:
            return rows
        time.sleep(1)
    pytest.fail(f"{len(rows)} of {photos} photos recorded; {bincount(state, 'status').stdout}")


def test_upload_is_counted_and_down_leaves_nothing_behind(
    local_stack: tuple[Path, LocalStackState], tmp_path: Path
) -> None:
    state_path, state = local_stack
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        (photos / f"photo-{index}.jpg").write_bytes(jpeg_photo(index + 1, seed=5))
    uploaded = bincount(state_path, "upload", str(photos), "--bin", "BIN-E2E")
    assert uploaded.returncode == 0, uploaded.stderr
    rows = wait_for_history(state_path, "BIN-E2E", 3)
    assert len(rows) == 3 and all(row["outcome"] == "count" for row in rows)
    bins = json.loads(bincount(state_path, "bins", "--json").stdout)
    assert [row["bin_id"] for row in bins] == ["BIN-E2E"] and bins[0]["count"] is not None
    realtime = bincount(state_path, "count", str(next(photos.iterdir())), "--endpoint", "local", "--json")
    assert realtime.returncode == 0, realtime.stderr
    assert json.loads(realtime.stdout)[0]["model_version"] == rows[0]["model_version"]

    stopped = updown(state_path, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert "losing" in stopped.stdout and "stopped" in stopped.stdout
    started = [(state.daemon_pid, state.daemon_create_time)] + [
        (c.pid, c.create_time) for c in state.children
    ]
    assert [pid for pid, created in started if process_alive(pid, created)] == []
    assert open_ports(state.ports) == []
    assert not state_path.exists()
    after = bincount(state_path, "bins")
    assert after.returncode == 2 and "make up" in after.stderr
