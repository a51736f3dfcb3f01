"""Names shared by the CLI tests and their fixtures (a module, so tests can import it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REGION = "us-east-1"
STACK = "bincount-cli-test"


@dataclass
class Result:
    """What one `bincount` invocation did: exit code, stdout, stderr."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]
