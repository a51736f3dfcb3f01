"""A handler that records what it was invoked with and fails the keys it is told to."""

from __future__ import annotations

import json
from typing import Any

EVENTS: list[dict[str, Any]] = []
FAIL_BODIES_CONTAINING: list[str] = []


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    EVENTS.append(json.loads(json.dumps(event)))
    failures = [
        {"itemIdentifier": record["messageId"]}
        for record in event.get("Records", [])
        if any(marker in record["body"] for marker in FAIL_BODIES_CONTAINING)
    ]
    return {"batchItemFailures": failures}
