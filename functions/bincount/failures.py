"""Why a transform job failed decides what happens to its photos.

A job that failed for a passing reason (no capacity, a quota, throttling, an AWS-side error, an
interrupted instance, a stopped job) says nothing about its photos: they are retried whole, later.
A job that failed because requests failed (``ClientError: See job logs``, an algorithm error) has
a photo the model cannot take: the images are split until the poison photo is alone. Anything
else is unknown: split like a per-record failure, but only a few levels deep, then the photos wait.

The table below holds the texts AWS documents or sends (``FailureReason`` of DescribeTransformJob
and of the state-change event); the first matching row wins, so transient rows come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class FailureKind(Enum):
    TRANSIENT = "transient"  # retry the same images whole, with backoff
    PER_RECORD = "per_record"  # some photos fail the model: split to isolate them
    UNKNOWN = "unknown"  # split like per-record, within a budget, then park


FAILURE_TABLE: tuple[tuple[re.Pattern[str], FailureKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        # "CapacityError: Unable to provision requested ML compute capacity. Please retry using a
        # different ML instance type." and "InsufficientInstanceCapacity"
        (r"\bCapacityError\b|InsufficientInstanceCapacity|insufficient capacity", FailureKind.TRANSIENT),
        (r"unable to provision requested ML compute capacity", FailureKind.TRANSIENT),
        (r"\bResourceLimitExceeded\b|account-level service limit|\bquota\b", FailureKind.TRANSIENT),
        (r"\bInternalServerError\b|\bInternalFailure\b|\bInternalError\b", FailureKind.TRANSIENT),
        (r"\bServiceUnavailable\b|\bService ?Unavailable\b", FailureKind.TRANSIENT),
        (r"\bThrottlingException\b|\bThrottl(ed|ing)\b|Rate exceeded|\bSlowDown\b", FailureKind.TRANSIENT),
        (r"\bspot\b|\binterrupt(ed|ion)?\b|instance (was )?(terminated|retired)", FailureKind.TRANSIENT),
        # The stack itself is broken (role, artifact, image): no photo is to blame, nothing splits it.
        (r"AccessDenied|not authori[sz]ed|ModelDataUrl|model data|pull (the )?image", FailureKind.UNKNOWN),
        # Requests failed inside the container: some records are bad.
        (r"^\s*ClientError\b", FailureKind.PER_RECORD),
        (r"^\s*AlgorithmError\b|\bModelError\b", FailureKind.PER_RECORD),
        (r"See job logs", FailureKind.PER_RECORD),
    )
)


def classify_failure(status: str, reason: str) -> FailureKind:
    """The kind of a terminal job that left photos without output.

    ``Stopped`` is somebody's (or a timeout's) decision about the job, never about a photo, so its
    photos are retried whole. A ``Completed`` job missing outputs is not something AWS documents:
    unknown.
    """
    if status == "Stopped":
        return FailureKind.TRANSIENT
    for pattern, kind in FAILURE_TABLE:
        if pattern.search(reason or ""):
            return kind
    return FailureKind.UNKNOWN


@dataclass(frozen=True)
class RetryPolicy:
    """How long photos of a transiently failed job wait, and how far unknown failures split.

    ``max_transient_retries`` whole retries follow each other after ``base_delay_s`` doubling;
    after that the chunk is *parked*: it keeps waiting in the retry queue, tried again every
    ``parked_delay_s`` when the in-flight cap allows, and the parked alarm pages a person.
    """

    max_transient_retries: int = 3
    base_delay_s: int = 60
    parked_delay_s: int = 3600
    max_unknown_splits: int = 3

    def delay_s(self, attempt: int) -> int:
        """Wait before retry ``attempt`` (1-based): 60 s, 120 s, 240 s ..., parked ones ``parked_delay_s``."""
        if self.is_parked(attempt):
            return self.parked_delay_s
        return min(self.parked_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))

    def is_parked(self, attempt: int) -> bool:
        """Beyond the budget: the retry is no longer routine, a person should look."""
        return attempt > self.max_transient_retries


class FailureAction(Enum):
    RECORD_FAILED = "record_failed"  # the lone photo of a per-record failure: its error record
    SPLIT = "split"  # halve the photos left without output into new jobs
    RETRY_WHOLE = "retry_whole"  # the same photos again later (parked once the budget is spent)


def next_step(kind: FailureKind, job_images: int, unknown_splits: int, policy: RetryPolicy) -> FailureAction:
    """What to do with the photos a failed or stopped job left without output.

    Only a per-record failure of a one-photo job ends in an error record. An unknown reason splits
    like a per-record one while ``unknown_splits`` is under budget; a lone photo, or a spent
    budget, waits instead: an unknown reason may well be AWS's, and waiting loses nothing.
    """
    if kind is FailureKind.TRANSIENT:
        return FailureAction.RETRY_WHOLE
    if kind is FailureKind.PER_RECORD:
        return FailureAction.RECORD_FAILED if job_images == 1 else FailureAction.SPLIT
    if job_images == 1 or unknown_splits >= policy.max_unknown_splits:
        return FailureAction.RETRY_WHOLE
    return FailureAction.SPLIT
