"""The malloc settings have one Python home (common/malloc.py); the Makefile and template.yaml,
which cannot import it, must carry the same values."""

from __future__ import annotations

import re
from pathlib import Path

from common.malloc import MALLOC_ENV, with_malloc_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_makefile_exports_the_same_malloc_settings() -> None:
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    exported = dict(re.findall(r"^export (MALLOC_\w+) := (\S+)$", text, flags=re.MULTILINE))
    assert exported == dict(MALLOC_ENV)


def test_sagemaker_model_gets_the_same_malloc_settings() -> None:
    text = (REPO_ROOT / "template.yaml").read_text(encoding="utf-8")
    declared = dict(re.findall(r'^\s+(MALLOC_\w+): "(\d+)"$', text, flags=re.MULTILINE))
    assert declared == dict(MALLOC_ENV)


def test_child_environment_keeps_its_own_variables_and_gets_the_settings() -> None:
    env = with_malloc_env({"PATH": "/bin", "MALLOC_TOP_PAD_": "1"})
    assert env["PATH"] == "/bin"
    assert {k: env[k] for k in MALLOC_ENV} == dict(MALLOC_ENV)
