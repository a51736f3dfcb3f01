"""``SageMaker Transform Job State Change`` events, parsed defensively.

Real deliveries type the time fields as ISO strings, millisecond strings or millisecond numbers,
and ``Tags`` as ``{}``, a dict or a list of ``{Key, Value}``; the same state may arrive twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bincount.timefmt import canonical_time, parse_time

#: The one home of the detail-type (the local Batch Transform emits it too:
#: local/emulator/transform_executor.py).
DETAIL_TYPE = "SageMaker Transform Job State Change"
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


class NotATransformJobEvent(ValueError):
    """The event is not a transform job state change (wrong rule or a hand-made test event)."""


def parse_tags(tags: Any) -> dict[str, str]:
    """``{}``, ``{"k": "v"}`` or ``[{"Key": "k", "Value": "v"}]`` → ``{"k": "v"}``."""
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):
        parsed = {}
        for tag in tags:
            if isinstance(tag, Mapping) and "Key" in tag:
                parsed[str(tag["Key"])] = str(tag.get("Value", ""))
        return parsed
    return {}


def _optional_time(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return canonical_time(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class TransformJobEvent:
    job_name: str
    status: str
    failure_reason: str = ""
    created_at: str | None = None
    ended_at: str | None = None
    manifest_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def latency_s(self) -> float | None:
        """Creation to end, the job latency metric (None when either time is missing)."""
        if not self.created_at or not self.ended_at:
            return None
        return (parse_time(self.ended_at) - parse_time(self.created_at)).total_seconds()


def parse_job_event(event: Mapping[str, Any]) -> TransformJobEvent:
    if event.get("detail-type") != DETAIL_TYPE or not isinstance(event.get("detail"), Mapping):
        raise NotATransformJobEvent(f"unexpected detail-type {event.get('detail-type')!r}")
    detail = event["detail"]
    name = detail.get("TransformJobName")
    status = detail.get("TransformJobStatus")
    if not name or not status:
        raise NotATransformJobEvent("detail lacks TransformJobName or TransformJobStatus")
    source = ((detail.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    return TransformJobEvent(
        job_name=str(name),
        status=str(status),
        failure_reason=str(detail.get("FailureReason") or ""),
        created_at=_optional_time(detail.get("CreationTime")),
        ended_at=_optional_time(detail.get("TransformEndTime")) or _optional_time(event.get("time")),
        manifest_uri=source.get("S3Uri"),
        tags=parse_tags(detail.get("Tags")),
    )


def job_from_description(description: Mapping[str, Any]) -> TransformJobEvent:
    """DescribeTransformJob's answer in the shape of a state-change event (boto3 gives datetimes).

    It lacks the tags; the collector then finds the images next to ``TransformInput``'s manifest.
    """
    source = ((description.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    return TransformJobEvent(
        job_name=str(description["TransformJobName"]),
        status=str(description["TransformJobStatus"]),
        failure_reason=str(description.get("FailureReason") or ""),
        created_at=_optional_time(description.get("CreationTime")),
        ended_at=_optional_time(description.get("TransformEndTime"))
        or _optional_time(description.get("LastModifiedTime")),
        manifest_uri=source.get("S3Uri"),
    )
