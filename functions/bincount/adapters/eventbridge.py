"""EventBridge PutEvents behind EventSender."""

from __future__ import annotations

from typing import Any


class EventBridgeSender:
    def __init__(self, client: Any) -> None:
        self.client = client

    def send(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.client.put_events(Entries=entries)
        return list(response["Entries"])
