"""Why a transform job failed, and what its outputs show, decide what happens to its photos.

A photo is judged only on evidence about that photo. The serving handlers answer every photo
they can read at all with a record (a count, or an error record such as ``corrupt_image``), so a
photo without output is a verdict on nobody by itself. A job that failed for a passing reason (no
capacity, a quota, throttling, an AWS-side error, an interrupted instance, a stopped job) or
because the model server did not answer (connection refused, a timeout, a 5xx, a crashed or
restarting container: *container* reasons) says nothing about its photos: they are retried
whole, later, under :class:`RetryPolicy`'s backoff and parking. A job whose requests failed
without the reason naming the container (``ClientError: See job logs``, ``AlgorithmError``)
is judged by its outputs (:class:`Evidence`): when the server answered other requests of the
same job during the same run (its other photos, or the witness a re-driven job sends first), a
photo that fails alone is the photo's failure; several are split to find which; with no answer
at all the server may have been down, and the photos wait. Anything else is unknown: split a few
levels deep, then the photos wait.

The table below holds the texts AWS documents or sends (``FailureReason`` of DescribeTransformJob
and of the state-change event), and the local executor's (local/emulator/transform_executor.py); the
first matching row wins, so transient and container rows come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class FailureKind(Enum):
    TRANSIENT = "transient"  # AWS could not run the job: retry the same images whole, with backoff
    CONTAINER = "container"  # the model server did not answer: retry whole, like transient
    PER_RECORD = "per_record"  # requests failed, no cause named: the job's outputs decide (Evidence)
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
        # The model server did not answer, whatever the prefix (ClientError / AlgorithmError):
        # "AlgorithmError: Model container failed to respond to ping...", "Unable to get response
        # from algorithm", TorchServe's "worker died", a refused or reset connection, a timeout,
        # a 5xx (our handlers answer every readable photo with a 200 record), an exit code or OOM.
        (
            r"connection (was )?(refused|reset|aborted|closed)|ECONNREFUSED|ECONNRESET|broken pipe",
            FailureKind.CONTAINER,
        ),
        (r"remote ?(end|host) closed|RemoteDisconnected|Errno (104|111|32)\b", FailureKind.CONTAINER),
        (r"timed? ?out\b|\btimeout\b|deadline exceeded", FailureKind.CONTAINER),
        (
            r"did not answer|no (response|answer) from|unable to get (a )?response"
            r"|failed to respond|\bping\b",
            FailureKind.CONTAINER,
        ),
        (
            r"worker (process )?(died|crashed|exited|was killed|restart)"
            r"|container (crashed|exited|died|restart)",
            FailureKind.CONTAINER,
        ),
        (
            r"exit code|exited with|\bkilled\b|out of memory|\bOOM\b|\bsignal \d+|segmentation fault",
            FailureKind.CONTAINER,
        ),
        (
            r"answered 5\d\d|\bHTTP 5\d\d|status (code )?5\d\d|algorithm: 5\d\d|Bad Gateway|Gateway Time",
            FailureKind.CONTAINER,
        ),
        # The stack itself is broken (role, artifact, image): no photo is to blame, nothing splits it.
        (r"AccessDenied|not authori[sz]ed|ModelDataUrl|model data|pull (the )?image", FailureKind.UNKNOWN),
        # Requests failed inside the container, cause not named: the outputs decide (Evidence).
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
    RECORD_FAILED = "record_failed"  # the one photo that failed while the server answered: its error record
    SPLIT = "split"  # halve the photos left without output into new jobs (with a witness)
    RETRY_WHOLE = "retry_whole"  # the same photos again later (parked once the budget is spent)


@dataclass(frozen=True)
class Evidence:
    """What a failed job's outputs show about the model server during that job's own run.

    "Healthy in the same period" means: within the one run of this job (the same instances, the
    same minutes), the handlers answered at least one request — another photo of the job or the
    job's witness (a photo answered before, sent first). ``answered`` counts those outputs,
    ``missing`` the job's photos left without one. A lone photo's job is never judged on its own
    failure: without a witness's answer beside it, its failure may be the server's.
    """

    answered: int
    missing: int

    @property
    def server_answered(self) -> bool:
        return self.answered > 0


def next_step(
    kind: FailureKind, evidence: Evidence, unknown_splits: int, policy: RetryPolicy
) -> FailureAction:
    """What to do with the photos a failed or stopped job left without output.

    Only a per-record failure in which exactly one photo failed while the server answered others
    in the same run ends in an error record; several such photos are split (each half sent with a
    witness) to find which. Transient and container failures, and per-record failures without any
    answer, wait and are retried whole. An unknown reason splits while ``unknown_splits`` is under
    budget; a lone photo, or a spent budget, waits instead: waiting loses nothing.
    """
    if kind in (FailureKind.TRANSIENT, FailureKind.CONTAINER):
        return FailureAction.RETRY_WHOLE
    if kind is FailureKind.PER_RECORD:
        if not evidence.server_answered:
            return FailureAction.RETRY_WHOLE
        return FailureAction.RECORD_FAILED if evidence.missing == 1 else FailureAction.SPLIT
    if evidence.missing <= 1 or unknown_splits >= policy.max_unknown_splits:
        return FailureAction.RETRY_WHOLE
    return FailureAction.SPLIT
