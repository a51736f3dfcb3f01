"""The counts table's records and the rules that keep them right under at-least-once delivery.

* One record per image (``sk=IMAGE#<key>``): written once per object version; a replay finds it
  and is "duplicate, safely ignored".
* ``sk=LATEST`` per bin moves forward only in (capture time, key, etag) order: an older photo
  arriving late never overwrites a newer count. The item may also hold ``expected_quantity``
  (written by inventory systems), which updates preserve.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from bincount.keys import ImageObject
from bincount.results import CountResult, ErrorResult, ResultRecord

LATEST_SK = "LATEST"


def bin_pk(bin_id: str) -> str:
    return f"BIN#{bin_id}"


def image_sk(key: str) -> str:
    return f"IMAGE#{key}"


def version_token(image: ImageObject) -> str:
    """Identifies which photo LATEST holds; the optimistic-lock value of conditional updates."""
    return f"{image.captured_at}|{image.key}|{image.etag}"


@dataclass(frozen=True)
class ImageOutcome:
    """The final word on one image: its count or its error, from one job."""

    image: ImageObject
    result: ResultRecord
    job_name: str
    needs_review: bool = False

    @property
    def is_count(self) -> bool:
        return isinstance(self.result, CountResult)


def outcome_for(image: ImageObject, result: ResultRecord, job_name: str, threshold: float) -> ImageOutcome:
    review = isinstance(result, CountResult) and result.confidence < threshold
    return ImageOutcome(image=image, result=result, job_name=job_name, needs_review=review)


@dataclass(frozen=True)
class LatestState:
    """What LATEST holds now (``version`` None: only inventory attributes such as the expected quantity)."""

    version: str | None
    captured_at: str | None = None
    image_key: str | None = None
    etag: str | None = None
    count: int | None = None
    previous_count: int | None = None
    expected_quantity: int | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> LatestState | None:
        if not item:
            return None

        def as_int(name: str) -> int | None:
            value = item.get(name)
            return None if value is None else int(value)

        return cls(
            version=item.get("latest_version"),
            captured_at=item.get("captured_at"),
            image_key=item.get("image_key"),
            etag=item.get("etag"),
            count=as_int("count"),
            previous_count=as_int("previous_count"),
            expected_quantity=as_int("expected_quantity"),
        )


class LatestDecision(Enum):
    APPLY = "apply"  # the candidate is newer: write it
    ALREADY_APPLIED = "already_applied"  # a retry after LATEST was written but before the image record
    STALE = "stale"  # an older photo: keep the newer count


def decide_latest(current: LatestState | None, image: ImageObject) -> LatestDecision:
    if current is None or current.version is None:
        return LatestDecision.APPLY
    if current.version == version_token(image):
        return LatestDecision.ALREADY_APPLIED
    held = (current.captured_at or "", current.image_key or "", current.etag or "")
    return LatestDecision.APPLY if (image.captured_at, image.key, image.etag) > held else LatestDecision.STALE


def is_discrepancy(expected: int | None, count: int, count_is_lower_bound: bool) -> bool:
    """A lower-bound count ("5 or more") contradicts the expectation only when it exceeds it."""
    if expected is None:
        return False
    return count > expected if count_is_lower_bound else count != expected


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


def image_item(outcome: ImageOutcome, recorded_at: str) -> dict[str, Any]:
    """The ``IMAGE#`` item (resource-level types: DynamoDB numbers as Decimal)."""
    image = outcome.image
    item: dict[str, Any] = {
        "pk": bin_pk(image.bin_id),
        "sk": image_sk(image.key),
        "bin_id": image.bin_id,
        "image_bucket": image.bucket,
        "image_key": image.key,
        "etag": image.etag,
        "captured_at": image.captured_at,
        "job_name": outcome.job_name,
        "recorded_at": recorded_at,
        "model_version": outcome.result.model_version,
    }
    if isinstance(outcome.result, CountResult):
        item.update(
            outcome="count",
            count=outcome.result.count,
            confidence=_decimal(outcome.result.confidence),
            probabilities=[_decimal(p) for p in outcome.result.probabilities],
            count_is_lower_bound=outcome.result.count_is_lower_bound,
            needs_review=outcome.needs_review,
        )
    else:
        assert isinstance(outcome.result, ErrorResult)
        item.update(outcome="error", error_code=outcome.result.code, error_message=outcome.result.message)
    return item


def latest_attributes(outcome: ImageOutcome, previous_count: int | None, updated_at: str) -> dict[str, Any]:
    """Attributes SET on LATEST (other attributes on the item, e.g. expected_quantity, are kept)."""
    assert isinstance(outcome.result, CountResult)
    image = outcome.image
    return {
        "bin_id": image.bin_id,
        "count": outcome.result.count,
        "confidence": _decimal(outcome.result.confidence),
        "count_is_lower_bound": outcome.result.count_is_lower_bound,
        "needs_review": outcome.needs_review,
        "image_bucket": image.bucket,
        "image_key": image.key,
        "etag": image.etag,
        "captured_at": image.captured_at,
        "job_name": outcome.job_name,
        "model_version": outcome.result.model_version,
        "previous_count": previous_count,
        "latest_version": version_token(image),
        "updated_at": updated_at,
        "human_label": None,  # a model count: clears the reviewer's mark of an older photo's label
    }
