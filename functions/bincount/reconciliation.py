"""The scheduled safety net: collect jobs whose state-change event never came, restart waiting photos.

EventBridge delivers at least once but may still not deliver (a target failing beyond its retry
window), and a collector can fail after its retries. Every job record carries ``in_flight`` from
its start until a collection finished it, so the jobs still on that index are compared with
DescribeTransformJob: a job that ended is collected with the collector's own code (idempotent, so
a run racing the event is harmless). Then the waiting chunks (bincount.waiting) get jobs while
``MaxJobsInFlight`` leaves room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bincount.collection import CollectionIncomplete, CollectionReport, Collector
from bincount.job_events import job_from_description
from bincount.ports import JobStore, TransformJobs
from bincount.submission import Submitter
from bincount.timefmt import now, parse_time
from bincount.waiting import ResubmitReport, WaitingRoom

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    in_flight: int = 0
    still_running: int = 0
    settling: int = 0  # ended moments ago: the state-change event is probably on its way
    overdue: list[str] = field(default_factory=list)  # running longer than the job timeout (JobsOverdue)
    unknown_to_sagemaker: list[str] = field(default_factory=list)
    collected: dict[str, CollectionReport] = field(default_factory=dict)
    resubmitted: ResubmitReport | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Reconciler:
    jobs: JobStore
    transforms: TransformJobs
    collector: Collector
    submitter: Submitter
    waiting: WaitingRoom | None
    max_in_flight: int
    job_name_prefix: str
    settle_s: int = 300
    job_timeout_s: int = 7200
    clock: Callable[[], str] = now

    def run(self) -> ReconcileReport:
        """Collect first (that frees room under the cap and queues retries), then resubmit."""
        report = ReconcileReport()
        for record in self.jobs.in_flight():
            report.in_flight += 1
            self._reconcile(str(record["pk"]), report, record.get("created_at"))
        if self.waiting is not None:
            report.resubmitted = self.waiting.resubmit(
                self.submitter, self.max_in_flight, f"{self.job_name_prefix}-"
            )
            report.problems.extend(report.resubmitted.problems)
        return report

    def _reconcile(self, job_name: str, report: ReconcileReport, created_at: object = None) -> None:
        description = self.transforms.describe(job_name)
        if description is None:
            report.unknown_to_sagemaker.append(job_name)
            return
        job = job_from_description(description)
        if not job.is_terminal:
            report.still_running += 1
            if isinstance(created_at, str) and self._seconds_since(created_at) > self.job_timeout_s:
                report.overdue.append(job_name)
            return
        if job.ended_at and self._seconds_since(job.ended_at) < self.settle_s:
            report.settling += 1
            return
        log.warning("collecting a job whose state change was not collected", extra={"job": job_name})
        try:
            report.collected[job_name] = self.collector.collect(job)
        except CollectionIncomplete as error:  # stays on the index: the next run tries again
            report.problems.append(f"{job_name}: {error}")
        except Exception as error:  # one broken job must not keep the others (and waiting photos) stuck
            log.exception("reconciling a job failed", extra={"job": job_name})
            report.problems.append(f"{job_name}: {type(error).__name__}: {error}")

    def _seconds_since(self, moment: str) -> float:
        return (parse_time(self.clock()) - parse_time(moment)).total_seconds()
