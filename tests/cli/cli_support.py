"""Names shared by the CLI tests and their fixtures (a module, so tests can import it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.stack_state import LocalStackState

REGION = "us-east-1"
STACK = "bincount-cli-test"


@dataclass
class Result:
    """What one `bincount` invocation did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


def stack_state(**fields: Any) -> LocalStackState:
    """A local stack's state as `make up` writes it (ports 1, 2, 3); ``fields`` override any field."""
    base: dict[str, Any] = {
        "daemon_pid": 1,
        "daemon_create_time": 0.0,
        "started_at": "2026-12-07T00:00:00.000Z",
        "region": "us-east-1",
        "stack_name": "bincount-local",
        "moto_url": "http://127.0.0.1:1",
        "model_server_url": "http://127.0.0.1:2",
        "model_server": "python",
        "lambda_url": "http://127.0.0.1:3",
        "functions": {},
        "log_dir": "/tmp",
    }
    return LocalStackState(**(base | fields))
