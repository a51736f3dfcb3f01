"""checkov on template.yaml, offline: every failed check is a row of docs/pipeline.md's security
table (with why it is acceptable), and every row still fails.

checkov lives in its own virtualenv (``make checkov``); without it this module skips. It scans the
template as written: checkov's CloudFormation runner reads SAM's resource types itself (its checks
of ``AWS::Serverless::Function`` ran), and ``sam build``'s template is the same, untransformed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
TABLE_HEADING = "## Security checks (checkov)"
ROW = re.compile(r"^\| `(CKV_[A-Z0-9_]+)`[^|]*\| ([^|]+) \|")

pytestmark = [
    pytest.mark.slow,  # 30-55 s of CPU: make test and make validate run it, make test-fast does not
    pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is not installed (make checkov)"),
]


def documented() -> set[tuple[str, str]]:
    """(check id, resource logical id) of every row of the table."""
    text = (REPO / "docs" / "pipeline.md").read_text(encoding="utf-8")
    section = text.split(TABLE_HEADING, 1)[1].split("\n## ", 1)[0]
    found = set()
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            for resource in re.findall(r"`([A-Za-z0-9]+)`", match.group(2)):
                found.add((match.group(1), resource))
    return found


def failed_checks() -> set[tuple[str, str]]:
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}
    command = [str(CHECKOV), "-f", "template.yaml", "--framework", "cloudformation", "--skip-download"]
    answer = subprocess.run(
        [*command, "--quiet", "--compact", "-o", "json"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert answer.returncode in (0, 1), answer.stderr[-2000:]  # 1: some check failed
    report = json.loads(answer.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["cloudformation"]
    assert reports[0]["summary"]["parsing_errors"] == 0
    return {
        (check["check_id"], check["resource"].rsplit(".", 1)[-1])
        for check in reports[0]["results"]["failed_checks"]
    }


def test_the_table_parses() -> None:
    rows = documented()
    assert rows and all(check.startswith("CKV_") for check, _ in rows)


def test_every_failed_check_is_in_the_security_table_and_every_row_still_fails() -> None:
    failed, rows = failed_checks(), documented()
    assert not failed - rows, (
        f"failed checks not in docs/pipeline.md's security table: {sorted(failed - rows)}"
    )
    assert not rows - failed, f"rows of the security table checkov no longer reports: {sorted(rows - failed)}"
