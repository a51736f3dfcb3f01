"""Events for inventory systems on the custom bus (source ``bincount``): the one schema definition.

Publisher and consumers share these classes: ``to_eventbridge_entry`` builds a PutEvents entry,
``from_eventbridge_event`` reads a delivered event back into the same class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

SOURCE = "bincount"


@dataclass(frozen=True)
class ImageRef:
    """Which upload: ``version_id`` is the S3 version (empty in events from before versioning)."""

    bucket: str
    key: str
    etag: str
    version_id: str = ""


@dataclass(frozen=True)
class InventoryEvent:
    """Common fields; ``detail_type`` names the EventBridge ``detail-type``."""

    detail_type: ClassVar[str] = ""

    bin_id: str
    image: ImageRef
    captured_at: str
    model_version: str
    job_name: str

    def detail(self) -> dict[str, Any]:
        return asdict(self)

    def to_eventbridge_entry(self, bus_name: str) -> dict[str, Any]:
        return {
            "Source": SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail(), sort_keys=True),
            "EventBusName": bus_name,
            "Resources": [f"arn:aws:s3:::{self.image.bucket}/{self.image.key}"],
        }


@dataclass(frozen=True)
class BinCountUpdated(InventoryEvent):
    """``count_low``..``count_high``: the calibrated range at ``range_level`` as the model served it
    (``range_open``: "count_high or more"); all None for a model without a calibration."""

    detail_type: ClassVar[str] = "Bin Count Updated"

    count: int
    confidence: float
    previous_count: int | None
    count_is_lower_bound: bool
    needs_review: bool
    count_low: int | None = None
    count_high: int | None = None
    range_level: float | None = None
    range_open: bool | None = None
    range_contiguous: bool | None = None
    review_reason: str | None = None


@dataclass(frozen=True)
class BinCountNeedsReview(InventoryEvent):
    """``review_reason``: ``borderline_discrepancy`` (the expected quantity's p-value lies within
    ``review_budget`` above ``false_alarm_rate``), ``wide_range``, or ``low_confidence`` (a model
    without a calibration: confidence below ``threshold``)."""

    detail_type: ClassVar[str] = "Bin Count Needs Review"

    count: int
    confidence: float
    threshold: float
    count_is_lower_bound: bool
    review_reason: str | None = None
    expected_quantity: int | None = None
    expected_p_value: float | None = None
    false_alarm_rate: float | None = None
    review_budget: float | None = None
    count_low: int | None = None
    count_high: int | None = None
    range_level: float | None = None
    range_open: bool | None = None


@dataclass(frozen=True)
class BinImageRejected(InventoryEvent):
    detail_type: ClassVar[str] = "Bin Image Rejected"

    error_code: str
    error_message: str


@dataclass(frozen=True)
class InventoryDiscrepancyDetected(InventoryEvent):
    """The expected quantity lies outside the range at ``range_level`` = 1 - ``false_alarm_rate``
    (``range_low``..``range_high``, ``range_open``: "or more"): its ``expected_p_value`` is at most
    α, so a bin whose record is right raises this with probability at most α. ``calibrated``
    false: the model has no calibration, the rule was ``expected_probability`` ≤ α (no range, no
    stated rate). ``difference``: count - expected quantity."""

    detail_type: ClassVar[str] = "Inventory Discrepancy Detected"

    expected_quantity: int
    count: int
    count_is_lower_bound: bool
    difference: int
    range_low: int | None = None
    range_high: int | None = None
    range_open: bool | None = None
    range_level: float | None = None
    expected_probability: float | None = None
    expected_p_value: float | None = None
    false_alarm_rate: float | None = None
    calibrated: bool | None = None


@dataclass(frozen=True)
class BinCountCorrected(InventoryEvent):
    """A person saved the count of a photo (functions/bincount/corrections.py): the record of truth.

    ``count`` is the human count (``count_is_lower_bound``: "more than the model's top class");
    ``model_count`` the count it replaces (None for a rejected photo); ``latest_updated`` whether
    the bin's latest count now holds it. Repeated saves of the same count repeat the event with the
    same ``reviewed_at``: dedupe on (image, reviewed_at).
    """

    detail_type: ClassVar[str] = "Bin Count Corrected"

    count: int
    count_is_lower_bound: bool
    model_count: int | None
    reviewer: str
    reviewed_at: str
    latest_updated: bool
    expected_quantity: int | None


EVENT_TYPES: dict[str, type[InventoryEvent]] = {
    cls.detail_type: cls
    for cls in (
        BinCountUpdated,
        BinCountNeedsReview,
        BinImageRejected,
        InventoryDiscrepancyDetected,
        BinCountCorrected,
    )
}


def from_detail(detail_type: str, detail: Mapping[str, Any]) -> InventoryEvent:
    cls = EVENT_TYPES.get(detail_type)
    if cls is None:
        raise ValueError(f"not a Bin Count event: {detail_type!r}")
    values = {f.name: detail[f.name] for f in fields(cls) if f.name in detail}
    values["image"] = ImageRef(**detail["image"])
    return cls(**values)


def from_eventbridge_event(event: Mapping[str, Any]) -> InventoryEvent:
    """A delivered event (``detail`` already decoded, as EventBridge targets receive it)."""
    if event.get("source") != SOURCE:
        raise ValueError(f"not from {SOURCE}: {event.get('source')!r}")
    detail = event["detail"]
    if isinstance(detail, str):
        detail = json.loads(detail)
    return from_detail(str(event["detail-type"]), detail)


def from_eventbridge_entry(entry: Mapping[str, Any]) -> InventoryEvent:
    """A PutEvents entry back into its event (tests and replays)."""
    return from_detail(str(entry["DetailType"]), json.loads(entry["Detail"]))
