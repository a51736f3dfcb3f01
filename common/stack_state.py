"""The state file of the local stack that stays up (`make up`): where it listens and what it started.

The daemon (:mod:`local.daemon`) writes it once everything answers and removes it when it stops;
`make down` reads it to stop exactly the processes it names, and the operator tools
(``bincount --stack local``) read it to find the emulator and the model server. Nothing here
imports boto3 or torch: the CLI reads it before it decides what else to load.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.files import write_atomically

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / "build" / "local-stack"
STATE_ENV = "BINCOUNT_LOCAL_STATE"  # another state file (tests run their own stack)


def default_state_path() -> Path:
    """``$BINCOUNT_LOCAL_STATE`` or ``build/local-stack/state.json`` in this checkout."""
    override = os.environ.get(STATE_ENV, "").strip()
    return Path(override) if override else STATE_DIR / "state.json"


@dataclass(frozen=True)
class ChildProcess:
    """A process the daemon started (moto, model server and their children), for `make down`."""

    pid: int
    create_time: float  # with the pid, tells a reused pid from ours
    name: str


@dataclass(frozen=True)
class LocalStackState:
    """Everything a tool needs to reach the running local stack and `make down` needs to stop it."""

    daemon_pid: int
    daemon_create_time: float
    started_at: str
    region: str
    stack_name: str
    moto_url: str
    model_server_url: str
    model_server: str  # "python" or "torchserve"
    lambda_url: str  # Lambda's Invoke API for the local functions
    functions: dict[str, str]  # logical id -> function name the Invoke API answers to
    log_dir: str
    children: list[ChildProcess] = field(default_factory=list)
    listening: list[int] = field(default_factory=list)  # every port its processes listened on at start
    model_artifact: str = ""  # the model.tar.gz the model server serves (`bincount count` uses it too)
    # each time the model server died and was started again: {"at", "exit_code", "down_s"}
    model_server_restarts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        """The TCP ports the stack listens on: its URLs' and any other its processes opened."""
        named = {int(url.rsplit(":", 1)[1].split("/", 1)[0]) for url in self.urls.values()}
        return sorted(named | set(self.listening))

    @property
    def urls(self) -> dict[str, str]:
        return {"moto": self.moto_url, "model server": self.model_server_url, "lambda": self.lambda_url}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalStackState:
        children = [ChildProcess(**child) for child in data.get("children", [])]
        return cls(**{**data, "children": children})


def write_state(path: Path, state: LocalStackState) -> None:
    """Write atomically: a reader sees no file or a whole one, never half of it."""
    write_atomically(path, state.to_json())


def read_state(path: Path) -> LocalStackState | None:
    """The recorded state, or None when there is no (readable) state file."""
    try:
        return LocalStackState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """Is ``pid`` running and (when ``create_time`` is given) still the process we recorded?"""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < 1.0
    except psutil.Error:
        return False
