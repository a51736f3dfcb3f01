"""What a finished transform job means for the counts: record, publish, re-drive.

Per job, in this order, so a crash at any point is repaired by a retry of the same event:
1. one consistent batched read of the job's image records and its bins' LATEST; an image
   record that already exists → "duplicate, safely ignored" (nothing else happens);
2. per bin, the photos are walked in LATEST's order in memory (``bin_plans``) and LATEST is
   written once, to the newest photo, conditional on the version read (all bins of the job
   batched); a bin whose LATEST moved meanwhile is read and planned again;
3. publish the images' events (PutEvents, ≤ 10 entries a call, only failed entries resent);
4. write the image records — the commit point (conditional, batched), only for images whose
   events all went out. Events are at-least-once; records exactly-once.
Images a failed or stopped job left without output follow the failure's kind and the job's own
outputs (bincount.failures): a transient or container failure (capacity, quota, throttling, a
stopped job, a model server that did not answer) queues them whole for a retry with backoff,
parked once the chunk's retry budget is spent; a per-record failure records ``transform_failed``
only for a photo that failed alone while the server answered in the same run (other photos of the
job, or its witness), splits several such photos into new deterministic jobs (each led by a
witness), and without any answer waits like a transient one; an unknown one splits within a
budget, then waits. Re-drives start only while ``MaxJobsInFlight`` leaves room, else they wait in
the retry queue too. No photo is rejected because of AWS's capacity or a model server outage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from bincount.batching import (
    Chunk,
    JobLayout,
    chunk_from_images_document,
    image_key_for_output,
    retry_chunk,
    split_for_redrive,
)
from bincount.bin_plans import BinPlan, PhotoStep, plan_bin
from bincount.count_decisions import DecisionRules
from bincount.count_records import (
    CountSnapshot,
    ImageOutcome,
    LatestDecision,
    LatestState,
    LatestWrite,
    decided,
    image_item,
    image_record_sk,
    outcome_for,
)
from bincount.failures import (
    Evidence,
    FailureAction,
    FailureKind,
    RetryPolicy,
    classify_failure,
    next_step,
)
from bincount.inventory_events import InventoryDiscrepancyDetected
from bincount.job_events import TransformJobEvent
from bincount.ports import CountStore, EventSender, JobStore, JobSubmissionError, ObjectStore
from bincount.publishing import events_for, put_all
from bincount.recounts import (
    RecountWrite,
    chunk_prefix,
    history_entry,
    is_duplicate_recount,
    is_recount,
    recount_attributes,
    recount_latest,
)
from bincount.serving_records import (
    TRANSFORM_FAILED,
    CountResult,
    ErrorResult,
    ResultRecord,
    parse_result_body,
)
from bincount.submission import IN_FLIGHT_ATTRIBUTE, Submitted, Submitter, available_slots
from bincount.timefmt import now
from bincount.uploads import ImageObject
from bincount.waiting import WaitingRoom

K = TypeVar("K")  # what one LATEST planner plans by: a bin, or one re-counted photo
log = logging.getLogger(__name__)

MAX_LATEST_ATTEMPTS = 8


def choose_witness(chunk: Chunk, results: Mapping[str, ResultRecord]) -> ImageObject | None:
    """The photo a split sends first in each half: one the server counted in this job (the first by
    key, so a repeated collection makes the same jobs), else the job's own witness (counted once,
    it stays a photo the server can answer), else any photo of the job that got an answer (an
    error record is an answer too). None when there is no such photo yet."""
    answered = sorted(
        (image for image in chunk.images if image.manifest_entry in results),
        key=lambda image: (image.key, image.version),
    )
    counted = [image for image in answered if isinstance(results[image.manifest_entry], CountResult)]
    if counted:
        return counted[0]
    if chunk.witness is not None:
        return chunk.witness
    return answered[0] if answered else None


class CollectionIncomplete(Exception):
    """Some images could not be finished (events not published, re-drive refused): retry the event."""


@dataclass
class CollectionReport:
    job_name: str
    status: str
    ignored: bool = False
    counted: list[ImageOutcome] = field(default_factory=list)
    rejected: list[ImageOutcome] = field(default_factory=list)
    duplicates: int = 0
    stale: int = 0
    recounted: int = 0  # re-count results written onto existing records (also in ``counted``)
    recount_errors: int = 0  # re-counts that failed: the record keeps its count
    events_published: int = 0
    discrepancies: int = 0  # ``Inventory Discrepancy Detected`` events published
    redriven_jobs: dict[str, Submitted] = field(default_factory=dict)
    redriven_images: int = 0
    failure_kind: FailureKind | None = None
    waiting_jobs: dict[str, int] = field(default_factory=dict)  # queued chunk's job name → images
    parked_images: int = 0  # of those, waiting beyond their retry budget
    problems: list[str] = field(default_factory=list)


@dataclass
class Collector:
    objects: ObjectStore
    counts: CountStore
    jobs: JobStore
    sender: EventSender
    submitter: Submitter
    layout: JobLayout
    bus_name: str
    rules: DecisionRules  # discrepancy and review (bincount.count_decisions)
    job_name_prefix: str
    read_workers: int = 8
    publish_max_attempts: int = 4
    clock: Callable[[], str] = now
    sleep: Callable[[float], None] | None = None
    waiting: WaitingRoom | None = None  # the retry queue; without it, waiting photos fail the event
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_in_flight: int = 4

    # -- entry point ------------------------------------------------------------------------------

    def collect(self, job: TransformJobEvent) -> CollectionReport:
        report = CollectionReport(job_name=job.job_name, status=job.status)
        if not job.job_name.startswith(f"{self.job_name_prefix}-"):
            report.ignored = True
            return report
        if not job.is_terminal:
            self.jobs.update(job.job_name, {"status": job.status, "updated_at": self.clock()})
            report.ignored = True
            return report
        chunk = self._load_chunk(job)
        results = self._read_results(job, chunk)  # the witness's answer included
        outcomes = [
            outcome_for(image, results[image.manifest_entry], job.job_name, self.rules)
            for image in chunk.images
            if image.manifest_entry in results
        ]
        missing = [image for image in chunk.images if image.manifest_entry not in results]
        action = None
        if missing:
            report.failure_kind = classify_failure(job.status, job.failure_reason)
            kind = report.failure_kind
            evidence = Evidence(answered=len(results), missing=len(missing))
            action = next_step(kind, evidence, chunk.unknown_splits, self.retry_policy)
            log.warning(
                "job left photos without output",
                extra={
                    "job": job.job_name,
                    "kind": kind.value,
                    "answered": evidence.answered,
                    "missing": evidence.missing,
                    "action": action.value,
                    "reason": job.failure_reason,
                },
            )
        if action is FailureAction.RECORD_FAILED:
            reason = job.failure_reason or f"transform job {job.status} without output for this image"
            failed = ErrorResult(TRANSFORM_FAILED, reason[:1000])
            outcomes.append(outcome_for(missing[0], failed, job.job_name, self.rules))
            missing = []
        if is_recount(chunk):
            self._record_recounts(outcomes, report)
        else:
            self._record(outcomes, report)
        if missing and action is FailureAction.SPLIT:
            witness = choose_witness(chunk, results)
            self._redrive(job, self._split(chunk, missing, report.failure_kind, witness), report)
        elif missing:
            self._retry_whole(job, chunk, missing, report)
        self.jobs.update(
            job.job_name,
            {
                "status": job.status,
                "failure_reason": job.failure_reason or None,
                "ended_at": job.ended_at,
                "counted": len(report.counted),
                "rejected": len(report.rejected),
                "redriven_images": report.redriven_images,
                "redriven_jobs": sorted(report.redriven_jobs),
                "waiting_jobs": sorted(report.waiting_jobs),
                "updated_at": self.clock(),
            },
            # Collected: off the reconciler's index. Left on it while something is unfinished.
            remove=() if report.problems else (IN_FLIGHT_ATTRIBUTE,),
        )
        if report.problems:
            raise CollectionIncomplete("; ".join(report.problems))
        return report

    def record_rejections(self, rejected: Sequence[tuple[ImageObject, ErrorResult]]) -> CollectionReport:
        """Error records (and ``Bin Image Rejected`` events) for uploads no job will see.

        The batcher's entry into the same steps 1-4 as a job's results, so "exactly one count or
        error record per upload" has one implementation. ``job_name`` is empty: no job ran.
        """
        report = CollectionReport(job_name="", status="Rejected")
        outcomes = [outcome_for(image, error, "", self.rules) for image, error in rejected]
        if outcomes:
            self._record(outcomes, report)
        return report

    # -- reading ----------------------------------------------------------------------------------

    def _load_chunk(self, job: TransformJobEvent) -> Chunk:
        """The job's image list: next to the manifest named by the tag, else by the layout."""
        manifest_uri = job.tags.get("bincount:manifest") or job.manifest_uri or ""
        if manifest_uri.startswith("s3://") and manifest_uri.endswith("/manifest.json"):
            bucket, _, key = manifest_uri[len("s3://") :].partition("/")
            images_key = key[: -len("manifest.json")] + "images.json"
        else:
            bucket, images_key = self.layout.results_bucket, self.layout.images_key(job.job_name)
        return chunk_from_images_document(self.objects.get_json(bucket, images_key))

    def _read_results(self, job: TransformJobEvent, chunk: Chunk) -> dict[str, ResultRecord]:
        """Every ``.out`` of the job (listed with a paginator, read concurrently), by manifest entry
        (the staged copy's path: one per upload, even for two uploads of one key in one job)."""
        bucket = self.layout.results_bucket
        wanted = {image.manifest_entry for image in chunk.images}
        if chunk.witness is not None:
            wanted.add(chunk.witness.manifest_entry)
        outputs: dict[str, str] = {}
        for output_key in self.objects.list_keys(bucket, self.layout.output_prefix_for(job.job_name)):
            image_key = image_key_for_output(self.layout, job.job_name, output_key)
            if image_key in wanted:
                outputs[image_key] = output_key

        def read(item: tuple[str, str]) -> tuple[str, ResultRecord]:
            image_key, output_key = item
            return image_key, parse_result_body(self.objects.get_bytes(bucket, output_key))

        if not outputs:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.read_workers, len(outputs)))) as pool:
            return dict(pool.map(read, sorted(outputs.items())))

    # -- recording --------------------------------------------------------------------------------

    def _read(self, outcomes: list[ImageOutcome]) -> tuple[list[ImageOutcome], CountSnapshot]:
        """The outcomes once per upload, with their records and their bins' LATEST: one read."""
        unique = list({image_record_sk(outcome.image): outcome for outcome in outcomes}.values())
        snapshot = self.counts.read_state(
            {o.image.bin_id for o in unique}, [(o.image.bin_id, image_record_sk(o.image)) for o in unique]
        )
        return unique, snapshot

    def _record(
        self,
        outcomes: list[ImageOutcome],
        report: CollectionReport,
        read: tuple[list[ImageOutcome], CountSnapshot] | None = None,
    ) -> None:
        """Steps 1-4 for the job's images, a few round trips for the whole job (``read``: what
        :meth:`_read` already answered for them)."""
        unique, snapshot = read or self._read(outcomes)
        fresh: list[ImageOutcome] = []
        for outcome in unique:
            if image_record_sk(outcome.image) in snapshot.images:
                log.info("duplicate, safely ignored", extra={"image_key": outcome.image.key})
                report.duplicates += 1
            else:
                fresh.append(outcome)
        steps = [step for plan in self._move_latest(fresh, snapshot) for step in plan.steps]
        for step in steps:
            if step.decision is LatestDecision.STALE:
                log.info("older photo, newer count kept", extra={"image_key": step.outcome.image.key})
                report.stale += 1
        publishable = self._publish(steps, report)
        recorded_at = self.clock()
        written = self.counts.put_images([image_item(step.outcome, recorded_at) for step in publishable])
        for step, was_written in zip(publishable, written, strict=True):
            if not was_written:
                report.duplicates += 1
                continue
            (report.counted if step.outcome.is_count else report.rejected).append(step.outcome)

    def _record_recounts(self, outcomes: list[ImageOutcome], report: CollectionReport) -> None:
        """A re-count job's results (bincount.recounts): onto the existing records, history kept;
        LATEST only for the photo it holds; photos without a record are recorded as usual."""
        unique, snapshot = self._read(outcomes)
        fresh, pending = [], []
        for outcome in unique:
            item = snapshot.images.get(image_record_sk(outcome.image))
            if item is None:
                fresh.append(outcome)
            elif not outcome.is_count:
                log.warning("re-count failed, count kept", extra={"image_key": outcome.image.key})
                report.recount_errors += 1
            elif is_duplicate_recount(item, outcome):
                report.duplicates += 1
            else:
                pending.append((outcome, item))
        if fresh:  # the read above covers them: no second read
            self._record(fresh, report, (fresh, snapshot))
        labelled = {id(outcome) for outcome, item in pending if item.get("human_count") is not None}
        steps = self._recount_latest([outcome for outcome, _ in pending], snapshot, labelled)
        # the outcomes as decided against their bin's expected quantity
        pending = [(step.outcome, item) for step, (_, item) in zip(steps, pending, strict=True)]
        publishable = {id(step.outcome) for step in self._publish(steps, report)}
        recorded_at = self.clock()
        done = [(outcome, item) for outcome, item in pending if id(outcome) in publishable]
        writes = [
            RecountWrite(
                outcome.image.bin_id,
                image_record_sk(outcome.image),
                recount_attributes(outcome, recorded_at),
                history_entry(item),
                item.get("model_version"),
            )
            for outcome, item in done
        ]
        for (outcome, _), written in zip(
            done, self.counts.put_recounts(writes) if writes else [], strict=True
        ):
            if written:
                report.recounted += 1
                report.counted.append(outcome)
            else:
                report.duplicates += 1

    def _recount_latest(
        self, outcomes: list[ImageOutcome], snapshot: CountSnapshot, labelled: set[int]
    ) -> list[PhotoStep]:
        """LATEST of each bin whose photo is re-counted (once per bin: one photo holds it); each
        outcome decided against its bin's expected quantity (a human label is the truth: its
        photo, ``labelled`` by id, needs no second review)."""
        steps: dict[int, PhotoStep] = {}
        by_key = {id(outcome): outcome for outcome in outcomes}

        def plan(key: int, latest: Mapping[str, Any], updated_at: str) -> LatestWrite | None:
            held = latest.get(by_key[key].image.bin_id)
            state = LatestState.from_item(held)
            expected = state.expected_quantity if state else None
            outcome = decided(by_key[key], expected, self.rules)
            if key in labelled:
                outcome = replace(outcome, needs_review=False, review_reason=None)
            write, decision, previous = recount_latest(held, outcome, updated_at)
            steps[key] = PhotoStep(outcome, decision, previous, expected)
            return write

        self._settle_latest(list(by_key), plan, snapshot.latest)
        return [steps[id(outcome)] for outcome in outcomes]

    def _move_latest(self, outcomes: list[ImageOutcome], snapshot: CountSnapshot) -> list[BinPlan]:
        """Step 2: plan every bin, write LATEST once per bin; bins that lost a race are planned again."""
        by_bin: dict[str, list[ImageOutcome]] = {}
        for outcome in outcomes:
            by_bin.setdefault(outcome.image.bin_id, []).append(outcome)
        plans: dict[str, BinPlan] = {}

        def plan(bin_id: str, latest: Mapping[str, Any], updated_at: str) -> LatestWrite | None:
            plans[bin_id] = plan_bin(bin_id, latest.get(bin_id), by_bin[bin_id], updated_at, self.rules)
            return plans[bin_id].write

        self._settle_latest(sorted(by_bin), plan, snapshot.latest)
        return [plans[bin_id] for bin_id in by_bin]

    def _settle_latest(
        self,
        keys: list[K],
        plan: Callable[[K, Mapping[str, Any], str], LatestWrite | None],
        latest: Mapping[str, Any],
    ) -> None:
        """Write what ``plan`` decides for each key against LATEST as read; the keys whose bin moved
        on meanwhile (optimistic lock) are planned again against a fresh read, a bounded number of times."""
        todo = keys
        for _ in range(MAX_LATEST_ATTEMPTS):
            updated_at = self.clock()
            writes = {key: write for key in todo if (write := plan(key, latest, updated_at)) is not None}
            contended = self.counts.put_latests(list(writes.values())) if writes else set()
            todo = [key for key, write in writes.items() if write.bin_id in contended]
            if not todo:
                return
            latest = self.counts.read_state(contended, []).latest
        raise CollectionIncomplete(f"LATEST of bins {sorted(contended)} kept changing under us")

    def _publish(self, steps: list[PhotoStep], report: CollectionReport) -> list[PhotoStep]:
        """Step 3: every step's events, batched; returns the steps whose events all went out."""
        pending = [
            (
                step,
                [
                    event.to_eventbridge_entry(self.bus_name)
                    for event in events_for(
                        step.outcome,
                        step.decision,
                        step.previous_count,
                        step.expected_quantity,
                        self.rules,
                    )
                ],
            )
            for step in steps
        ]
        entries = [entry for _, step_entries in pending for entry in step_entries]
        kwargs: dict[str, Any] = {"max_attempts": self.publish_max_attempts}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        failures = put_all(entries, self.sender.send, **kwargs) if entries else []
        failed_ids = {id(failure.entry) for failure in failures}
        report.events_published += len(entries) - len(failures)
        report.discrepancies += sum(
            1
            for entry in entries
            if entry["DetailType"] == InventoryDiscrepancyDetected.detail_type and id(entry) not in failed_ids
        )
        for failure in failures:
            extra = {"code": failure.code, "entry": failure.entry["DetailType"]}
            log.warning("event not published", extra=extra)
        publishable = []
        for step, step_entries in pending:
            if any(id(entry) in failed_ids for entry in step_entries):
                report.problems.append(f"events for {step.outcome.image.key} not published")
            else:  # no image record otherwise: the retried event redoes this image
                publishable.append(step)
        return publishable

    # -- re-drive ---------------------------------------------------------------------------------

    def _split(
        self, chunk: Chunk, missing: list[ImageObject], kind: FailureKind | None, witness: ImageObject | None
    ) -> list[Chunk]:
        """Halves of the photos left without output, each with the witness sent first;
        unknown-reason splits count against their budget."""
        splits = chunk.unknown_splits + (1 if kind is FailureKind.UNKNOWN else 0)
        halves = split_for_redrive(missing, prefix=chunk_prefix(chunk, self.job_name_prefix), witness=witness)
        return [
            replace(
                half,
                unknown_splits=splits,
                purpose=chunk.purpose,
                target_model_version=chunk.target_model_version,
            )
            for half in halves
        ]

    def _retry_whole(
        self, job: TransformJobEvent, chunk: Chunk, missing: list[ImageObject], report: CollectionReport
    ) -> None:
        """The same photos under the next attempt's job name, after the attempt's backoff."""
        attempt = chunk.attempt + 1
        retry = retry_chunk(
            missing, chunk_prefix(chunk, self.job_name_prefix), attempt, chunk.unknown_splits, chunk.witness
        )
        retry = replace(retry, purpose=chunk.purpose, target_model_version=chunk.target_model_version)
        reason = job.failure_reason or f"transform job {job.status}"
        policy = self.retry_policy
        self._wait(retry, job, reason, policy.delay_s(attempt), policy.is_parked(attempt), report)

    def _wait(
        self,
        chunk: Chunk,
        job: TransformJobEvent,
        reason: str,
        delay_s: int,
        parked: bool,
        report: CollectionReport,
    ) -> None:
        if self.waiting is None:
            report.problems.append(f"{chunk.job_name} must wait but no retry queue is configured")
            return
        self.waiting.wait(chunk, job.job_name, reason, delay_s, parked)
        report.redriven_jobs[chunk.job_name] = Submitted.DEFERRED
        report.waiting_jobs[chunk.job_name] = len(chunk.images)
        report.parked_images += len(chunk.images) if parked else 0

    def _redrive(self, job: TransformJobEvent, chunks: list[Chunk], report: CollectionReport) -> None:
        """Start the halves while the in-flight cap leaves room; the others wait in the retry queue."""
        available = available_slots(self.submitter.transforms, self.max_in_flight, f"{self.job_name_prefix}-")
        for chunk in chunks:
            if available <= 0:
                self._wait(chunk, job, "MaxJobsInFlight reached", 0, False, report)
                continue
            try:
                outcome = self.submitter.submit(chunk, parent_job=job.job_name)
            except JobSubmissionError as error:
                if error.retryable:  # throttled or over quota: this and the next halves wait
                    available = 0
                    self._wait(chunk, job, str(error), self.retry_policy.base_delay_s, False, report)
                else:
                    report.redriven_jobs[chunk.job_name] = Submitted.FAILED
                    report.problems.append(f"re-drive {chunk.job_name} refused: {error}")
                continue
            report.redriven_jobs[chunk.job_name] = outcome
            report.redriven_images += len(chunk.images)
            available -= 1 if outcome is Submitted.STARTED else 0
