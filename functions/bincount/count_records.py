"""The counts table's records and the rules that keep them right under at-least-once delivery.

* One record per upload (``sk=IMAGE#<key>#<version digest>``): written once per object version; a
  replay finds it and is "duplicate, safely ignored"; a re-upload of the key is a new version and
  gets its own record.
* ``sk=LATEST`` per bin moves forward only in (capture time, key, upload time, sequencer, version)
  order: an older photo arriving late never overwrites a newer count. The item may also hold
  ``expected_quantity`` (written by inventory systems), which updates preserve.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from typing import Any

from bincount.count_decisions import DecisionRules, count_differs, review_reason
from bincount.serving_records import CountRange, CountResult, ErrorResult, ResultRecord
from bincount.uploads import ImageObject

LATEST_SK = "LATEST"


def bin_pk(bin_id: str) -> str:
    return f"BIN#{bin_id}"


# DynamoDB's limit on a sort key; ``IMAGE#`` + key + ``#`` + VERSION_DIGEST_HEX must fit.
MAX_SORT_KEY_BYTES = 1024
VERSION_DIGEST_HEX = 16


def _digest(text: str, hex_chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:hex_chars]


def image_sk(key: str, version: str) -> str:
    """``IMAGE#<key>#<16 hex of sha256(version)>``: one item per upload, all of a key's uploads
    under ``begins_with(sk, "IMAGE#<key>#")``; the digest bounds the length whatever the version.

    A key too long for that form (only ever an error record, see :func:`sort_key_fits`) is named
    by its digest instead, so even its error record has a valid, deterministic sort key.
    """
    version_part = _digest(version, VERSION_DIGEST_HEX)
    full = f"IMAGE#{key}#{version_part}"
    if len(full.encode()) <= MAX_SORT_KEY_BYTES:
        return full
    return f"IMAGE#~sha256:{_digest(key, 64)}#{version_part}"


def sort_key_fits(key: str) -> bool:
    """Whether the key itself is readable in its image record's sort key (≤ 1001 UTF-8 bytes)."""
    return len(f"IMAGE#{key}#{'0' * VERSION_DIGEST_HEX}".encode()) <= MAX_SORT_KEY_BYTES


def image_record_sk(image: ImageObject) -> str:
    return image_sk(image.key, image.version)


def _sequencer_order(sequencer: str) -> str:
    # Hex strings of one key compare as numbers: left-pad so shorter ones sort first.
    return sequencer.upper().rjust(32, "0") if sequencer else ""


def upload_order(image: ImageObject) -> tuple[str, str, str, str, str]:
    """The order LATEST moves in: capture time, then key, then which upload of the key came last."""
    return (image.captured_at, image.key, image.uploaded_at, _sequencer_order(image.sequencer), image.version)


def version_token(image: ImageObject) -> str:
    """Identifies which upload LATEST holds; the optimistic-lock value of conditional updates."""
    return "|".join(upload_order(image))


@dataclass(frozen=True)
class ImageOutcome:
    """The final word on one image: its count or its error, from one job."""

    image: ImageObject
    result: ResultRecord
    job_name: str
    needs_review: bool = False
    #: why (bincount.count_decisions.REVIEW_REASONS); None when no review is needed
    review_reason: str | None = None
    #: the false-alarm rate the review decision used (kept on the record for the review queue)
    false_alarm_rate: float | None = None

    @property
    def is_count(self) -> bool:
        return isinstance(self.result, CountResult)


def as_rules(rules: DecisionRules | float) -> DecisionRules:
    """A bare number is the confidence threshold of the rules for artifacts without a range."""
    return rules if isinstance(rules, DecisionRules) else DecisionRules(confidence_threshold=float(rules))


def outcome_for(
    image: ImageObject, result: ResultRecord, job_name: str, rules: DecisionRules | float
) -> ImageOutcome:
    """The outcome as far as the photo alone decides it (no expected quantity yet: see :func:`decided`)."""
    return decided(ImageOutcome(image=image, result=result, job_name=job_name), None, as_rules(rules))


def decided(outcome: ImageOutcome, expected: int | None, rules: DecisionRules) -> ImageOutcome:
    """The outcome with its review decision against the bin's expected quantity (errors: none)."""
    if not isinstance(outcome.result, CountResult):
        return replace(outcome, needs_review=False, review_reason=None, false_alarm_rate=None)
    reason = review_reason(outcome.result, expected, rules)
    return replace(
        outcome,
        needs_review=reason is not None,
        review_reason=reason,
        false_alarm_rate=rules.false_alarm_rate,
    )


@dataclass(frozen=True)
class LatestState:
    """What LATEST holds now (``version`` None: only inventory attributes such as the expected quantity)."""

    version: str | None
    captured_at: str | None = None
    image_key: str | None = None
    etag: str | None = None
    uploaded_at: str | None = None
    sequencer: str | None = None
    version_id: str | None = None
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
            uploaded_at=item.get("uploaded_at"),
            sequencer=item.get("sequencer"),
            version_id=item.get("image_version"),
            count=as_int("count"),
            previous_count=as_int("previous_count"),
            expected_quantity=as_int("expected_quantity"),
        )


@dataclass(frozen=True)
class LatestWrite:
    """SET ``attributes`` on a bin's LATEST if it still holds ``expected_version`` (None: no photo yet)."""

    bin_id: str
    attributes: dict[str, Any]
    expected_version: str | None


@dataclass(frozen=True)
class CountSnapshot:
    """What one consistent batched read found: LATEST by bin, image records by their sort key."""

    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)


class LatestDecision(Enum):
    APPLY = "apply"  # the candidate is newer: write it
    ALREADY_APPLIED = "already_applied"  # a retry after LATEST was written but before the image record
    STALE = "stale"  # an older photo: keep the newer count


def decide_latest(current: LatestState | None, image: ImageObject) -> LatestDecision:
    if current is None or current.version is None:
        return LatestDecision.APPLY
    if current.version == version_token(image):
        return LatestDecision.ALREADY_APPLIED
    held = (
        current.captured_at or "",
        current.image_key or "",
        current.uploaded_at or "",
        _sequencer_order(current.sequencer or ""),
        current.version_id or "",
    )
    return LatestDecision.APPLY if upload_order(image) > held else LatestDecision.STALE


def is_discrepancy(expected: int | None, count: int, count_is_lower_bound: bool) -> bool:
    """:func:`count_differs`, and no expectation contradicts nothing."""
    return expected is not None and count_differs(expected, count, count_is_lower_bound)


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


def upload_attributes(image: ImageObject) -> dict[str, str]:
    """Which upload a record is about (``image_version``: the identity, see ImageObject.version)."""
    return {
        "image_version": image.version,
        "uploaded_at": image.uploaded_at,
        "sequencer": image.sequencer,
    }


def image_item(outcome: ImageOutcome, recorded_at: str) -> dict[str, Any]:
    """The ``IMAGE#`` item (resource-level types: DynamoDB numbers as Decimal)."""
    image = outcome.image
    item: dict[str, Any] = {
        "pk": bin_pk(image.bin_id),
        "sk": image_record_sk(image),
        "bin_id": image.bin_id,
        "image_bucket": image.bucket,
        "image_key": image.key,
        "etag": image.etag,
        **upload_attributes(image),
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
            **range_attributes(outcome),
        )
    else:
        assert isinstance(outcome.result, ErrorResult)
        item.update(outcome="error", error_code=outcome.result.code, error_message=outcome.result.message)
    return item


#: The range and review attributes of a count record (None when the artifact served no range).
RANGE_ATTRIBUTES = ("count_low", "count_high", "range_level", "range_open", "range_contiguous")
REVIEW_ATTRIBUTES = ("review_reason",)
#: What the review queue and `bincount bins` need to decide again (any expected quantity).
DECISION_ATTRIBUTES = ("count_p_values", "false_alarm_rate")


def range_attributes(outcome: ImageOutcome) -> dict[str, Any]:
    """The range as served and why the photo needs review; every name present, None when absent,
    so an update from an artifact without a range clears a previous model's range."""
    result = outcome.result
    assert isinstance(result, CountResult)
    served = result.range
    attributes: dict[str, Any] = {
        "count_low": None if served is None else served.low,
        "count_high": None if served is None else served.high,
        "range_level": None if served is None else _decimal(served.level),
        "range_open": None if served is None else served.open,
        "range_contiguous": None if served is None else served.contiguous,
        "review_reason": outcome.review_reason,
        "count_p_values": None if served is None else [_decimal(p) for p in served.p_values],
        "false_alarm_rate": None if outcome.false_alarm_rate is None else _decimal(outcome.false_alarm_rate),
    }
    return attributes


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
        # the evidence, so `bincount bins` decides a discrepancy as the collector did
        "probabilities": [_decimal(p) for p in outcome.result.probabilities],
        **range_attributes(outcome),
        "image_bucket": image.bucket,
        "image_key": image.key,
        "etag": image.etag,
        **upload_attributes(image),
        "captured_at": image.captured_at,
        "job_name": outcome.job_name,
        "model_version": outcome.result.model_version,
        "previous_count": previous_count,
        "latest_version": version_token(image),
        "updated_at": updated_at,
        "human_label": None,  # a model count: clears the reviewer's mark of an older photo's label
    }


def stored_result(image: Mapping[str, Any]) -> CountResult | None:
    """A stored count (an IMAGE# record or LATEST) read back as the collector saw the model's answer,
    range included, so the CLI and the console decide as the collector did."""
    if image.get("outcome") == "error" or image.get("count") is None:
        return None
    probabilities = tuple(float(p) for p in image.get("probabilities") or [])
    p_values = image.get("count_p_values")
    served = None
    if p_values and image.get("count_low") is not None and image.get("count_high") is not None:
        served = CountRange(
            p_values=tuple(float(p) for p in p_values),
            low=int(image["count_low"]),
            high=int(image["count_high"]),
            level=float(image.get("range_level") or 0.9),
            open=bool(image.get("range_open")),
            contiguous=image.get("range_contiguous") is not False,
        )
    return CountResult(
        count=int(image["count"]),
        confidence=float(image.get("confidence") or 0.0),
        probabilities=probabilities,
        count_is_lower_bound=bool(image.get("count_is_lower_bound", False)),
        model_version=str(image.get("model_version", "")),
        range=served,
    )
