"""Failure classification on the texts AWS sends, the next step per kind, retry job names."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from bincount.batching import JOB_NAME_PATTERN, MAX_JOB_NAME_LENGTH, job_name, plan_chunks, retry_chunk
from bincount.failures import Evidence, FailureAction, FailureKind, RetryPolicy, classify_failure, next_step
from bincount.job_events import parse_job_event
from bincount.uploads import ImageObject

TRANSIENT, PER_RECORD, UNKNOWN = FailureKind.TRANSIENT, FailureKind.PER_RECORD, FailureKind.UNKNOWN
CONTAINER = FailureKind.CONTAINER


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (
            "Failed",
            "CapacityError: Unable to provision requested ML compute capacity. "
            "Please retry using a different ML instance type.",
            TRANSIENT,
        ),
        (
            "Failed",
            "ResourceLimitExceeded: The account-level service limit 'ml.g4dn.xlarge for transform job "
            "usage' is 0 Instances, with current utilization of 0 Instances and a request delta of 1 "
            "Instances. Please use AWS Service Quotas to request an increase for this quota.",
            TRANSIENT,
        ),
        ("Failed", "InternalServerError: We encountered an internal error. Please try again.", TRANSIENT),
        ("Failed", "ThrottlingException: Rate exceeded", TRANSIENT),
        ("Failed", "Rate exceeded", TRANSIENT),
        ("Failed", "InsufficientInstanceCapacity: We currently do not have sufficient capacity", TRANSIENT),
        ("Failed", "The Spot instance was interrupted", TRANSIENT),
        ("Failed", "Instance was terminated due to an interruption", TRANSIENT),
        ("Stopped", "", TRANSIENT),
        ("Stopped", "ClientError: See job logs for more information", TRANSIENT),
        ("Failed", "ClientError: See job logs for more information", PER_RECORD),
        ("Failed", "AlgorithmError: See job logs for more information", PER_RECORD),
        ("Failed", "ClientError: 500 from model", PER_RECORD),
        (
            "Failed",
            "ClientError: 2 of 40 records failed; first: a.jpg: model server answered 413: too big",
            PER_RECORD,
        ),
        # The model server did not answer: container-level, never a verdict on a photo.
        (
            "Failed",
            "ClientError: 33 of 40 records failed; first: x.jpg: model server did not answer: "
            "<urlopen error [Errno 111] Connection refused>",
            CONTAINER,
        ),
        (
            "Failed",
            "AlgorithmError: Model container failed to respond to ping. Please ensure /ping endpoint "
            "is implemented and responds with an HTTP 200 status code",
            CONTAINER,
        ),
        ("Failed", "AlgorithmError: Unable to get response from algorithm", CONTAINER),
        ("Failed", "ClientError: Worker died.", CONTAINER),
        ("Failed", "AlgorithmError: Exit Code: 139", CONTAINER),
        ("Failed", "ClientError: model server answered 503: worker busy", CONTAINER),
        ("Failed", "ClientError: Bad HTTP status received from algorithm: 500", CONTAINER),
        ("Failed", "ClientError: request timed out after 600 s", CONTAINER),
        ("Failed", "ClientError: Connection reset by peer", CONTAINER),
        (
            "Failed",
            "ClientError: 503 of 1000 records failed; first: a.jpg: model server answered 415: x",
            PER_RECORD,
        ),
        ("Failed", "", UNKNOWN),
        ("Failed", "Something nobody documented", UNKNOWN),
        (
            "Failed",
            "ClientError: AccessDenied (403): Access denied when reading s3://bucket/model.tar.gz",
            UNKNOWN,
        ),
        ("Completed", "", UNKNOWN),
    ],
)
def test_classify_failure(status: str, reason: str, kind: FailureKind) -> None:
    assert classify_failure(status, reason) is kind


def test_next_step_per_kind() -> None:
    policy = RetryPolicy(max_unknown_splits=2)
    answered, silent = Evidence(answered=3, missing=5), Evidence(answered=0, missing=8)
    lone_beside_answers, lone_alone = Evidence(answered=1, missing=1), Evidence(answered=0, missing=1)
    assert next_step(TRANSIENT, answered, 0, policy) is FailureAction.RETRY_WHOLE
    assert next_step(TRANSIENT, lone_beside_answers, 0, policy) is FailureAction.RETRY_WHOLE
    # the server did not answer: whatever the job's outputs say, no verdict on a photo
    assert next_step(CONTAINER, lone_beside_answers, 0, policy) is FailureAction.RETRY_WHOLE
    assert next_step(CONTAINER, answered, 0, policy) is FailureAction.RETRY_WHOLE
    # requests failed, no cause named: the outputs of the same run decide
    assert next_step(PER_RECORD, answered, 5, policy) is FailureAction.SPLIT
    assert next_step(PER_RECORD, lone_beside_answers, 0, policy) is FailureAction.RECORD_FAILED
    assert next_step(PER_RECORD, lone_alone, 0, policy) is FailureAction.RETRY_WHOLE  # no evidence
    assert next_step(PER_RECORD, silent, 0, policy) is FailureAction.RETRY_WHOLE
    assert next_step(UNKNOWN, Evidence(0, 8), 1, policy) is FailureAction.SPLIT
    assert next_step(UNKNOWN, Evidence(0, 8), 2, policy) is FailureAction.RETRY_WHOLE  # budget spent
    assert next_step(UNKNOWN, lone_beside_answers, 0, policy) is FailureAction.RETRY_WHOLE  # never rejected


def test_retry_policy_backoff_and_parking() -> None:
    policy = RetryPolicy(max_transient_retries=3, base_delay_s=60, parked_delay_s=3600)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 9)] == [60, 120, 240, 3600, 3600]
    assert [policy.is_parked(n) for n in (1, 3, 4)] == [False, False, True]


def image(i: int) -> ImageObject:
    return ImageObject(
        "b", f"incoming/B{i}/x.jpg", f"e{i}", 1, f"B{i}", "2026-01-01T00:00:00.000Z", "image/jpeg"
    )


def test_retry_names_are_new_deterministic_and_valid() -> None:
    images = [image(i) for i in range(3)]
    (first,) = plan_chunks(images, max_images=3, prefix="p" * 60)
    names = {first.job_name}
    for attempt in (1, 2, 12):
        retry = retry_chunk(list(reversed(images)), "p" * 60, attempt)
        assert retry.job_name == job_name(images, "p" * 60, attempt)  # order does not matter
        assert retry.job_name.endswith(f"-r{attempt}") and retry.attempt == attempt
        assert len(retry.job_name) <= MAX_JOB_NAME_LENGTH and JOB_NAME_PATTERN.match(retry.job_name)
        names.add(retry.job_name)
    assert len(names) == 4


def test_sample_capacity_event_is_transient(event_file: Any) -> None:
    job = parse_job_event(event_file("transform_job_failed_capacity.json"))
    assert classify_failure(job.status, job.failure_reason) is TRANSIENT
    sample = parse_job_event(event_file("transform_job_failed.json"))
    assert classify_failure(sample.status, sample.failure_reason) is PER_RECORD


def test_the_witness_is_a_counted_photo_first_then_the_jobs_own_then_any_answered() -> None:
    from bincount.batching import Chunk
    from bincount.collection import choose_witness
    from bincount.serving_records import CountResult, ErrorResult

    def staged(i: int) -> ImageObject:
        return replace(image(i), staged_key=f"{i:032x}.jpg")

    a, b, c, old = staged(1), staged(2), staged(3), staged(9)
    chunk = Chunk("j", "b", "image/jpeg", (c, b, a), witness=old)
    count = CountResult(1, 0.9, (0.1, 0.9), count_is_lower_bound=False, model_version="v")
    error = ErrorResult("corrupt_image", "cannot identify image file")
    results: dict[str, Any] = {c.manifest_entry: count, b.manifest_entry: count}
    assert choose_witness(chunk, results) == b  # counted, first by key
    assert choose_witness(chunk, {a.manifest_entry: error}) == old  # the job's own stays
    assert choose_witness(replace(chunk, witness=None), {a.manifest_entry: error}) == a  # an answer
    assert choose_witness(replace(chunk, witness=None), {}) is None
