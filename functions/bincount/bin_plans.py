"""What one job's photos of one bin do to that bin, worked out in memory before any write.

Only the newest photo of a bin in a job can be left holding LATEST, so the collector writes
LATEST once per bin (conditional on the version it read) instead of once per photo. The photos
still get the same decisions and events as if they had moved LATEST one after the other in
capture order: each newer photo's ``Bin Count Updated`` carries the count of the photo before it
as ``previous_count``, an older one is stale, and a retry that finds its own photo already in
LATEST sees ``ALREADY_APPLIED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bincount.count_decisions import DecisionRules
from bincount.count_records import (
    ImageOutcome,
    LatestDecision,
    LatestState,
    LatestWrite,
    decide_latest,
    decided,
    latest_attributes,
    upload_order,
)
from bincount.serving_records import CountResult


@dataclass(frozen=True)
class PhotoStep:
    """One photo's decision and what its events say (errors: no decision, LATEST untouched)."""

    outcome: ImageOutcome
    decision: LatestDecision | None
    previous_count: int | None
    expected_quantity: int | None


@dataclass(frozen=True)
class BinPlan:
    bin_id: str
    steps: tuple[PhotoStep, ...]
    write: LatestWrite | None  # None: LATEST stays as it was read


def plan_bin(
    bin_id: str,
    latest_item: Mapping[str, Any] | None,
    outcomes: Iterable[ImageOutcome],
    updated_at: str,
    rules: DecisionRules | None = None,
) -> BinPlan:
    """Walk the bin's new photos in LATEST's order against LATEST as read; one write for the newest.

    After each photo that moves it, LATEST is what the item would hold after that photo's write
    (the read item with the photo's attributes SET), read back the same way as from the table.
    Each count's review decision is taken here against the bin's expected quantity (``rules``;
    None keeps the decisions the outcomes carry).
    """
    read = LatestState.from_item(dict(latest_item) if latest_item else None)
    held: dict[str, Any] = dict(latest_item or {})
    state = read
    attributes: dict[str, Any] | None = None
    steps: list[PhotoStep] = []
    for outcome in sorted(outcomes, key=lambda o: upload_order(o.image)):
        if not isinstance(outcome.result, CountResult):
            steps.append(PhotoStep(outcome, None, None, None))
            continue
        decision = decide_latest(state, outcome.image)
        expected = state.expected_quantity if state else None
        if rules is not None:
            outcome = decided(outcome, expected, rules)
        if decision is LatestDecision.STALE:
            previous = state.count if state else None
        elif decision is LatestDecision.ALREADY_APPLIED:
            previous = state.previous_count if state else None
        else:
            previous = state.count if state else None
            attributes = latest_attributes(outcome, previous, updated_at)
            held = {**held, **attributes}
            state = LatestState.from_item(held)
        steps.append(PhotoStep(outcome, decision, previous, expected))
    write = None
    if attributes is not None:
        write = LatestWrite(bin_id, attributes, read.version if read else None)
    return BinPlan(bin_id, tuple(steps), write)
