"""`make up` / `make down` building blocks that need no stack: stopping, ports, TorchServe's pid file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.stack_state import process_alive
from local.emulator import torchserve_server
from local.updown import main, open_ports, stop_group


def test_down_without_a_stack_says_so_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["down", "--state", str(tmp_path / "state.json")]) == 0
    assert capsys.readouterr().out == "the local stack is not up (nothing to stop)\n"


def test_where_without_a_stack_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["where", "--state", str(tmp_path / "state.json")]) == 1
    assert "make up" in capsys.readouterr().out


def test_stop_group_ends_a_session_and_its_children() -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    import psutil

    for _ in range(200):  # until the leader has started its child (a deadline, not a speed check)
        if psutil.Process(leader.pid).children():
            break
        time.sleep(0.05)
    child = psutil.Process(leader.pid).children()[0]
    stop_group(leader.pid, grace_s=10)
    leader.wait(timeout=10)
    child.wait(timeout=10)
    assert not process_alive(child.pid) and leader.returncode is not None


def test_open_ports_sees_a_listening_socket_until_it_closes() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert open_ports([port]) == [port]
    assert open_ports([port]) == []


def test_torchserve_running_reads_its_pid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchserve_server.tempfile, "gettempdir", lambda: str(tmp_path))
    assert not torchserve_server.torchserve_running()  # no pid file
    (tmp_path / ".model_server.pid").write_text(str(os.getpid()))
    assert not torchserve_server.torchserve_running()  # a live pid, but not TorchServe
    (tmp_path / ".model_server.pid").write_text("garbage")
    assert not torchserve_server.torchserve_running()
