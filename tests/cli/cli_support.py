"""Names shared by the CLI tests and their fixtures (a module, so tests can import it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"
STACK = "bincount-cli-test"
REPO = Path(__file__).resolve().parents[2]


def python_env(**extra: str) -> dict[str, str]:
    """This environment with the repository importable (for the subprocesses tests start)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "functions")]), **extra}


@dataclass
class Result:
    """What one `bincount` invocation did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]
