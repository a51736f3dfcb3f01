"""The environment the tests' subprocesses run in: this one, with the repository importable."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_env(**extra: str) -> dict[str, str]:
    """This environment with the repository importable (for the subprocesses tests start)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "functions")]), **extra}
