"""What a finished transform job means for the counts: record, publish, re-drive.

Per job, in this order, so a crash at any point is repaired by a retry of the same event:
1. one consistent batched read of the job's image records and its bins' LATEST; an image
   record that already exists → "duplicate, safely ignored" (nothing else happens);
2. per bin, the photos are walked oldest first in memory (``bin_plans``) and LATEST is written
   once, to the newest photo, conditional on the version read (all bins of the job batched);
   a bin whose LATEST moved meanwhile is read and planned again;
3. publish the images' events (PutEvents, ≤ 10 entries a call, only failed entries resent);
4. write the image records — the commit point (conditional, batched), only for images whose
   events all went out. Events are at-least-once; records exactly-once.
Images a failed or stopped job left without output are split and resubmitted (new deterministic
jobs) until a lone failing image is recorded as ``transform_failed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bincount.batching import (
    Chunk,
    JobLayout,
    chunk_from_images_document,
    image_key_for_output,
    split_for_redrive,
)
from bincount.bin_plans import BinPlan, PhotoStep, plan_bin
from bincount.job_events import TransformJobEvent
from bincount.keys import ImageObject
from bincount.ports import CountStore, EventSender, JobStore, JobSubmissionError, ObjectStore
from bincount.publishing import events_for, put_all
from bincount.records import CountSnapshot, ImageOutcome, LatestDecision, image_item, is_recorded, outcome_for
from bincount.results import TRANSFORM_FAILED, ErrorResult, ResultRecord, parse_result_body
from bincount.submission import Submitted, Submitter
from bincount.timefmt import now

log = logging.getLogger(__name__)

MAX_LATEST_ATTEMPTS = 8


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
    events_published: int = 0
    redriven_jobs: dict[str, Submitted] = field(default_factory=dict)
    redriven_images: int = 0
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
    confidence_threshold: float
    job_name_prefix: str
    read_workers: int = 8
    publish_max_attempts: int = 4
    clock: Callable[[], str] = now
    sleep: Callable[[float], None] | None = None

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
        results = self._read_results(job, chunk)
        outcomes = [
            outcome_for(image, results[image.key], job.job_name, self.confidence_threshold)
            for image in chunk.images
            if image.key in results
        ]
        missing = [image for image in chunk.images if image.key not in results]
        if missing and len(chunk.images) == 1:
            reason = job.failure_reason or f"transform job {job.status} without output for this image"
            failed = ErrorResult(TRANSFORM_FAILED, reason[:1000])
            outcomes.append(outcome_for(missing[0], failed, job.job_name, self.confidence_threshold))
            missing = []
        self._record(outcomes, report)
        if missing:
            self._redrive(job, missing, report)
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
                "updated_at": self.clock(),
            },
        )
        if report.problems:
            raise CollectionIncomplete("; ".join(report.problems))
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
        """Every ``.out`` of the job (listed with a paginator, read concurrently), by image key."""
        bucket = self.layout.results_bucket
        wanted = {image.key for image in chunk.images}
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

    def _record(self, outcomes: list[ImageOutcome], report: CollectionReport) -> None:
        """Steps 1-4 for the job's images, a few round trips for the whole job."""
        unique = list({outcome.image.key: outcome for outcome in outcomes}.values())
        snapshot = self.counts.read_state(
            {o.image.bin_id for o in unique}, [(o.image.bin_id, o.image.key) for o in unique]
        )
        fresh: list[ImageOutcome] = []
        for outcome in unique:
            if is_recorded(snapshot.images.get(outcome.image.key), outcome.image):
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

    def _move_latest(self, outcomes: list[ImageOutcome], snapshot: CountSnapshot) -> list[BinPlan]:
        """Step 2: plan every bin, write LATEST once per bin; bins that lost a race are planned again."""
        by_bin: dict[str, list[ImageOutcome]] = {}
        for outcome in outcomes:
            by_bin.setdefault(outcome.image.bin_id, []).append(outcome)
        latest = snapshot.latest
        plans: dict[str, BinPlan] = {}
        contended = set(by_bin)
        for _ in range(MAX_LATEST_ATTEMPTS):
            updated_at = self.clock()
            for bin_id in contended:
                plans[bin_id] = plan_bin(bin_id, latest.get(bin_id), by_bin[bin_id], updated_at)
            writes = [write for b in sorted(contended) if (write := plans[b].write) is not None]
            contended = self.counts.put_latests(writes) if writes else set()
            if not contended:
                return [plans[bin_id] for bin_id in by_bin]
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
                        self.confidence_threshold,
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

    def _redrive(self, job: TransformJobEvent, missing: list[ImageObject], report: CollectionReport) -> None:
        for chunk in split_for_redrive(missing, prefix=self.job_name_prefix):
            try:
                outcome = self.submitter.submit(chunk, parent_job=job.job_name)
            except JobSubmissionError as error:
                refused = Submitted.DEFERRED if error.retryable else Submitted.FAILED
                report.redriven_jobs[chunk.job_name] = refused
                report.problems.append(f"re-drive {chunk.job_name} refused: {error}")
                continue
            report.redriven_jobs[chunk.job_name] = outcome
            report.redriven_images += len(chunk.images)
