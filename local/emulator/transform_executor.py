"""A local Batch Transform: plays SageMaker for the transform jobs the batcher creates.

moto stores ``CreateTransformJob`` and reports every job ``Completed`` at once without running
anything, so the executor keeps its own record of which jobs it has run. For each new job it
reads the manifest, sends every record to the model server over the container contract
(``POST /invocations`` with the job's ``ContentType`` and ``Accept``) with
``MaxConcurrentTransforms`` requests in flight and the job's client timeout and retries, writes
``<relative key>.out`` under ``S3OutputPath``, and emits ``SageMaker Transform Job State Change``
(InProgress, then Completed or Failed) on the default bus, where the template's rule picks it up.
As on SageMaker, one record that still fails after its retries fails the job, while the records
that succeeded keep their ``.out``. The job's ``FailureReason`` says which failure it was, as the
collector needs to know (bincount.failures): a request the model server did not answer (refused
or reset connection, timeout) or answered with a 5xx fails the job with a *container* reason
(``... model server did not answer: ... Connection refused``), named first whenever one occurred;
only when every failed request was answered with a 4xx (or refused before sending, over
``MaxPayloadInMB``) does the reason name records alone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bincount.job_events import DETAIL_TYPE as EVENT_DETAIL_TYPE

from common.invocations import Invoker
from local.emulator.moto_server import AwsEndpoint

log = logging.getLogger(__name__)

EVENT_SOURCE = "aws.sagemaker"
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT_S = 600


def _log_failure(future: Future[JobOutcome]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("transform job runner failed", exc_info=future.exception())


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def manifest_entries(manifest: list[Any]) -> tuple[str, list[str]]:
    """``[{"prefix": "s3://b/p/"}, "rel/a.jpg", ...]`` -> (prefix URI, relative keys)."""
    if not manifest or not isinstance(manifest[0], dict) or "prefix" not in manifest[0]:
        raise ValueError("a ManifestFile starts with {'prefix': 's3://...'}")
    return str(manifest[0]["prefix"]), [str(entry) for entry in manifest[1:]]


def output_key(output_path: str, relative_key: str) -> tuple[str, str]:
    """Where Batch Transform writes one record's result: ``<S3OutputPath>/<relative key>.out``."""
    bucket, prefix = split_s3_uri(output_path)
    prefix = prefix.rstrip("/")
    return bucket, f"{prefix}/{relative_key}.out" if prefix else f"{relative_key}.out"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def tags_as_dict(tags: Iterable[dict[str, str]]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags}


def state_change_detail(
    job: dict[str, Any],
    status: str,
    tags: dict[str, str],
    times: dict[str, datetime],
    failure_reason: str = "",
) -> dict[str, Any]:
    """The detail SageMaker sends: the job's description, times in epoch milliseconds, tags as a dict."""
    keys = (
        "TransformJobName",
        "TransformJobArn",
        "ModelName",
        "MaxConcurrentTransforms",
        "ModelClientConfig",
        "MaxPayloadInMB",
        "BatchStrategy",
        "Environment",
        "TransformInput",
        "TransformOutput",
        "TransformResources",
        "DataProcessing",
    )
    detail: dict[str, Any] = {key: job[key] for key in keys if key in job}
    detail["TransformJobStatus"] = status
    if failure_reason:
        detail["FailureReason"] = failure_reason
    for name, moment in times.items():
        detail[name] = epoch_ms(moment)
    detail["Tags"] = tags
    return detail


@dataclass
class RecordFailure:
    key: str
    reason: str
    container: bool = False  # no answer, or a 5xx: the server failed, not the record


def failure_reason(failures: list[RecordFailure], records: int) -> str:
    """The job's ``FailureReason``: a container failure is named first if there was one, so the
    collector never reads a server outage as a verdict on the records."""
    first = next((f for f in failures if f.container), failures[0])
    counted = f"{len(failures)} of {max(records, 1)} records failed"
    return f"ClientError: {counted}; first: {first.key}: {first.reason}"[:1024]


@dataclass
class JobOutcome:
    """What one job did; the demo's per-stage timing and the tests read it."""

    name: str
    status: str
    records: int
    written: int
    failures: list[RecordFailure] = field(default_factory=list)
    seconds: float = 0.0
    started: float = 0.0  # time.monotonic() when the executor took the job


def busy_seconds(outcomes: Iterable[JobOutcome]) -> float:
    """Time during which at least one job ran (jobs may overlap)."""
    total, reached = 0.0, float("-inf")
    for start, end in sorted((o.started, o.started + o.seconds) for o in outcomes):
        if end > reached:
            total += end - max(start, reached)
            reached = end
    return total


def requests_in_flight(job: dict[str, Any], max_in_flight: int | None) -> int:
    """The job's ``MaxConcurrentTransforms`` (sized for its transform instance), at most
    ``max_in_flight`` (what the local model server's plan takes), at least 1."""
    wanted = max(1, int(job.get("MaxConcurrentTransforms") or 1))
    return wanted if max_in_flight is None else min(wanted, max(1, max_in_flight))


class TransformExecutor:
    """Runs each transform job moto has stored exactly once, oldest first.

    ``parallel_jobs`` > 1 runs that many jobs at once, as SageMaker does (each job on its own
    instances; here all share the one model server), and :meth:`poll_once` only hands new jobs
    over; 1 runs them one after the other inside :meth:`poll_once`. ``max_in_flight``: requests in
    flight per job at most, whatever the job's ``MaxConcurrentTransforms`` (sized for its transform
    instance): the plan :func:`model.instances.local_plan` gives the model server of this machine.
    """

    def __init__(
        self,
        endpoint: AwsEndpoint,
        invoker: Invoker,
        on_record: Callable[[], None] | None = None,
        bus_name: str = "default",
        parallel_jobs: int = 1,
        max_in_flight: int | None = None,
    ) -> None:
        self.s3 = endpoint.client("s3")
        self.max_in_flight = max_in_flight
        self.sagemaker = endpoint.client("sagemaker")
        self.events = endpoint.client("events")
        self.invoker = invoker
        self.on_record = on_record
        self.bus_name = bus_name
        self.processed: set[str] = set()
        self.outcomes: list[JobOutcome] = []
        self._lock = threading.Lock()
        self._jobs = (
            ThreadPoolExecutor(max_workers=parallel_jobs, thread_name_prefix="transform-job")
            if parallel_jobs > 1
            else None
        )

    def pending_jobs(self) -> list[str]:
        summaries = []
        for page in self.sagemaker.get_paginator("list_transform_jobs").paginate():
            summaries.extend(page["TransformJobSummaries"])
        summaries.sort(key=lambda summary: summary["CreationTime"])
        return [s["TransformJobName"] for s in summaries if s["TransformJobName"] not in self.processed]

    def poll_once(self) -> int:
        names = self.pending_jobs()
        for name in names:
            if self._jobs is None:
                self.run_job(name)
            else:
                self.processed.add(name)
                self._jobs.submit(self.run_job, name).add_done_callback(_log_failure)
        return len(names)

    def close(self) -> None:
        """Let running jobs finish; jobs not started yet are dropped."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=True, cancel_futures=True)

    def run_job(self, name: str) -> JobOutcome:
        self.processed.add(name)
        started = time.monotonic()
        job = self.sagemaker.describe_transform_job(TransformJobName=name)
        tags = tags_as_dict(self.sagemaker.list_tags(ResourceArn=job["TransformJobArn"]).get("Tags", []))
        created = datetime.now(UTC)
        times = {"CreationTime": created, "TransformStartTime": created}
        self._emit(job, "InProgress", tags, times)

        try:
            keys, prefix = self._inputs(job)
            failures = self._transform_all(job, prefix, keys)
            written = len(keys) - len(failures)
        except Exception as error:  # unreadable manifest or input: the whole job fails, as on SageMaker
            log.exception("transform job %s failed before its records ran", name)
            keys, written, failures = [], 0, [RecordFailure("", f"{type(error).__name__}: {error}")]

        status = "Failed" if failures else "Completed"
        reason = failure_reason(failures, len(keys)) if failures else ""
        times["TransformEndTime"] = datetime.now(UTC)
        self._emit(job, status, tags, times, reason)
        outcome = JobOutcome(name, status, len(keys), written, failures, time.monotonic() - started, started)
        with self._lock:
            self.outcomes.append(outcome)
        log.info("transform job %s %s: %d/%d records written", name, status, written, len(keys))
        return outcome

    def _inputs(self, job: dict[str, Any]) -> tuple[list[str], str]:
        source = job["TransformInput"]["DataSource"]["S3DataSource"]
        bucket, key = split_s3_uri(source["S3Uri"])
        if source["S3DataType"] == "ManifestFile":
            manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            prefix, keys = manifest_entries(manifest)
            return keys, prefix
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            keys.extend(obj["Key"][len(key) :] for obj in page.get("Contents", []))
        return keys, source["S3Uri"]

    def _transform_all(self, job: dict[str, Any], prefix: str, keys: list[str]) -> list[RecordFailure]:
        workers = requests_in_flight(job, self.max_in_flight)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transform") as pool:
            results = list(pool.map(lambda key: self._transform_one(job, prefix, key), keys))
        return [failure for failure in results if failure is not None]

    def _transform_one(self, job: dict[str, Any], prefix: str, relative_key: str) -> RecordFailure | None:
        try:
            bucket, key_prefix = split_s3_uri(prefix)
            body = self.s3.get_object(Bucket=bucket, Key=f"{key_prefix}{relative_key}")["Body"].read()
            max_bytes = int(job.get("MaxPayloadInMB") or 6) * 1024 * 1024
            if len(body) > max_bytes:
                return RecordFailure(relative_key, f"payload of {len(body)} bytes exceeds MaxPayloadInMB")
            client = job.get("ModelClientConfig") or {}
            attempts = 1 + int(client.get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES))
            timeout_s = float(client.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_S))
            content_type = job["TransformInput"].get("ContentType") or "application/x-image"
            accept = job["TransformOutput"].get("Accept") or "application/json"
            reason, container = "", False
            for _ in range(attempts):
                try:
                    status, payload = self.invoker(body, content_type, accept, timeout_s)
                except (TimeoutError, OSError) as error:
                    reason, container = f"model server did not answer: {error}", True
                    continue
                if 200 <= status < 300:
                    out_bucket, out_key = output_key(job["TransformOutput"]["S3OutputPath"], relative_key)
                    self.s3.put_object(Bucket=out_bucket, Key=out_key, Body=payload, ContentType=accept)
                    return None
                reason = f"model server answered {status}: {payload[:200].decode('utf-8', 'replace')}"
                container = status >= 500
                if status < 500:
                    break  # a client error does not get better by retrying
            return RecordFailure(relative_key, reason, container)
        finally:
            if self.on_record is not None:
                self.on_record()

    def _emit(
        self,
        job: dict[str, Any],
        status: str,
        tags: dict[str, str],
        times: dict[str, datetime],
        reason: str = "",
    ) -> None:
        detail = state_change_detail(job, status, tags, times, reason)
        response = self.events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(detail, default=str),
                    "Resources": [job["TransformJobArn"]],
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the state change of {job['TransformJobName']}: {response}")
