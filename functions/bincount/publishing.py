"""Which inventory events an outcome produces, and PutEvents with partial-failure handling.

PutEvents takes ≤ 10 entries, answers one result per entry in order, and marks failures with
``ErrorCode`` (no ``EventId``): only those are resent, and only for retryable codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bincount.count_decisions import DecisionRules, check_expected
from bincount.count_records import ImageOutcome, LatestDecision, as_rules
from bincount.inventory_events import (
    BinCountNeedsReview,
    BinCountUpdated,
    BinImageRejected,
    ImageRef,
    InventoryDiscrepancyDetected,
    InventoryEvent,
)
from bincount.serving_records import CountResult, ErrorResult

MAX_ENTRIES_PER_CALL = 10
RETRYABLE_CODES = frozenset({"ThrottlingException", "InternalFailure", "InternalException"})

Entry = dict[str, Any]
SendBatch = Callable[[list[Entry]], list[dict[str, Any]]]


def _range_fields(result: CountResult) -> dict[str, Any]:
    served = result.range
    if served is None:
        return {}
    return {
        "count_low": served.low,
        "count_high": served.high,
        "range_level": served.level,
        "range_open": served.open,
    }


def events_for(
    outcome: ImageOutcome,
    decision: LatestDecision | None,
    previous_count: int | None,
    expected_quantity: int | None,
    rules: DecisionRules | float,
) -> list[InventoryEvent]:
    """``Bin Count Updated`` only when LATEST moved (or a retry finds it moved); an older photo
    still gets its review flag, an error its rejection. ``Inventory Discrepancy Detected`` only
    when the expected quantity lies outside the range at 1 - α (bincount.count_decisions)."""
    rules = as_rules(rules)
    image = outcome.image
    common: dict[str, Any] = {
        "bin_id": image.bin_id,
        "image": ImageRef(bucket=image.bucket, key=image.key, etag=image.etag, version_id=image.version_id),
        "captured_at": image.captured_at,
        "model_version": outcome.result.model_version,
        "job_name": outcome.job_name,
    }
    result = outcome.result
    if isinstance(result, ErrorResult):
        return [BinImageRejected(**common, error_code=result.code, error_message=result.message)]
    assert isinstance(result, CountResult)
    events: list[InventoryEvent] = []
    moved = decision in (LatestDecision.APPLY, LatestDecision.ALREADY_APPLIED)
    ranged = _range_fields(result)
    if moved:
        events.append(
            BinCountUpdated(
                **common,
                count=result.count,
                confidence=result.confidence,
                previous_count=previous_count,
                count_is_lower_bound=result.count_is_lower_bound,
                needs_review=outcome.needs_review,
                **ranged,
                range_contiguous=None if result.range is None else result.range.contiguous,
                review_reason=outcome.review_reason,
            )
        )
    check = check_expected(result, expected_quantity, rules)
    if outcome.needs_review:
        events.append(
            BinCountNeedsReview(
                **common,
                count=result.count,
                confidence=result.confidence,
                threshold=rules.confidence_threshold,
                count_is_lower_bound=result.count_is_lower_bound,
                review_reason=outcome.review_reason,
                expected_quantity=expected_quantity,
                expected_p_value=None if check is None else check.expected_p_value,
                false_alarm_rate=rules.false_alarm_rate,
                review_budget=rules.review_budget,
                **ranged,
            )
        )
    if moved and check is not None and check.outside:
        events.append(
            InventoryDiscrepancyDetected(
                **common,
                expected_quantity=check.expected_quantity,
                count=result.count,
                count_is_lower_bound=result.count_is_lower_bound,
                difference=result.count - check.expected_quantity,
                range_low=check.range_low,
                range_high=check.range_high,
                range_open=check.range_open,
                range_level=check.range_level,
                expected_probability=check.expected_probability,
                expected_p_value=check.expected_p_value,
                false_alarm_rate=check.false_alarm_rate,
                calibrated=check.calibrated,
            )
        )
    return events


@dataclass(frozen=True)
class FailedEntry:
    entry: Entry
    code: str
    message: str


def put_all(
    entries: Sequence[Entry],
    send: SendBatch,
    max_attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    base_delay_s: float = 0.2,
) -> list[FailedEntry]:
    """Send every entry in calls of ≤ 10; resend failed retryable entries with backoff.

    Returns the entries that still failed (non-retryable, or retryable after ``max_attempts``).
    """
    pending = list(entries)
    final_failures: list[FailedEntry] = []
    for attempt in range(1, max_attempts + 1):
        retry: list[FailedEntry] = []
        for start in range(0, len(pending), MAX_ENTRIES_PER_CALL):
            batch = pending[start : start + MAX_ENTRIES_PER_CALL]
            results = send(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"PutEvents answered {len(results)} results for {len(batch)} entries")
            for entry, result in zip(batch, results, strict=True):
                code = result.get("ErrorCode")
                if not code:
                    continue
                failure = FailedEntry(entry, str(code), str(result.get("ErrorMessage", "")))
                (retry if code in RETRYABLE_CODES else final_failures).append(failure)
        if not retry:
            return final_failures
        if attempt == max_attempts:
            return final_failures + retry
        pending = [failure.entry for failure in retry]
        sleep(base_delay_s * 2 ** (attempt - 1))
    return final_failures
