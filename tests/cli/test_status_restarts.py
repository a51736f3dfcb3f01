"""``bincount status`` on the local stack shows the model server's restarts from the state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import stack_state

from cli.commands import status
from common.stack_state import STATE_ENV, LocalStackState, write_state

BASE = {
    "stack": "local",
    "ingest_queue": {"waiting": 0, "in_flight": 0},
    "jobs_in_flight": [],
    "dead_letters": {"ingest": 0, "collector": 0},
    "last_errors": [],
}


def state(restarts: list[dict[str, object]]) -> LocalStackState:
    return stack_state(model_server_restarts=restarts)


def test_restarts_come_from_the_state_file_and_show_in_the_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    monkeypatch.setenv(STATE_ENV, str(path))
    assert status.local_restarts() == []  # no stack up: nothing to show
    restart = {"at": "2026-12-07T01:02:03+00:00", "exit_code": -9, "down_s": 20.6}
    write_state(path, state([restart]))
    assert status.local_restarts() == [restart]
    text = status.render({**BASE, "model_server_restarts": [restart]})
    assert "model server restarts: 1 (last at 2026-12-07T01:02:03+00:00, exit status -9, down 20.6 s)" in text
    assert "model server restarts: 0" in status.render({**BASE, "model_server_restarts": []})
    assert "model server" not in status.render(BASE)  # a deployed stack: SageMaker's business


def test_a_state_file_written_before_restarts_were_kept_still_reads(tmp_path: Path) -> None:
    data = json.loads(state([]).to_json())
    del data["model_server_restarts"]
    assert LocalStackState.from_dict(data).model_server_restarts == []
