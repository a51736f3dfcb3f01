"""Reconciler Lambda (EventBridge schedule): collect jobs whose state change was never collected,
and start the jobs of photos waiting in the retry queue while ``MaxJobsInFlight`` leaves room.

Handler ``reconciler.app.handler``. The logic is bincount.reconciliation; the wiring is
bincount.wiring, the collector's, so both collect with the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from bincount.reconciliation import Reconciler, ReconcileReport
from bincount.settings import Settings, get_settings
from bincount.wiring import Clients, build_collector

logger = Logger()
metrics = Metrics()


def build_reconciler(
    settings: Settings, clients: Clients | None = None, *, sleep: Callable[[float], None] | None = None
) -> Reconciler:
    """Wire the reconciler as the collector is wired; tests pass stubbed clients (and ``sleep``)."""
    collector = build_collector(settings, clients or Clients.for_settings(settings), sleep=sleep)
    return Reconciler(
        jobs=collector.jobs,
        transforms=collector.submitter.transforms,
        collector=collector,
        submitter=collector.submitter,
        waiting=collector.waiting,
        max_in_flight=settings.max_jobs_in_flight,
        job_name_prefix=collector.job_name_prefix,
        settle_s=settings.reconcile_settle_s,
        job_timeout_s=settings.job_timeout_minutes * 60,
    )


@lru_cache(maxsize=1)
def get_reconciler() -> Reconciler:
    return build_reconciler(get_settings())


def summary_of(report: ReconcileReport) -> dict[str, Any]:
    resubmitted = report.resubmitted
    return {
        "in_flight": report.in_flight,
        "still_running": report.still_running,
        "settling": report.settling,
        "overdue": report.overdue,
        "collected": sorted(report.collected),
        "unknown_to_sagemaker": report.unknown_to_sagemaker,
        "resubmitted": resubmitted.started if resubmitted else [],
        "already_started": resubmitted.already_started if resubmitted else [],
        "still_waiting": resubmitted.left_waiting + resubmitted.not_due if resubmitted else 0,
        "problems": report.problems,
    }


def process(event: dict[str, Any], reconciler: Reconciler) -> dict[str, Any]:
    report = reconciler.run()
    summary = summary_of(report)
    metrics.add_metric(name="JobsReconciled", unit=MetricUnit.Count, value=len(report.collected))
    metrics.add_metric(name="JobsResubmitted", unit=MetricUnit.Count, value=len(summary["resubmitted"]))
    metrics.add_metric(name="ChunksStillWaiting", unit=MetricUnit.Count, value=summary["still_waiting"])
    metrics.add_metric(name="ReconcileProblems", unit=MetricUnit.Count, value=len(report.problems))
    # JobsOverdueAlarm: emitted on every run (0 included) so the alarm sees data, not silence.
    metrics.add_metric(name="JobsOverdue", unit=MetricUnit.Count, value=len(report.overdue))
    # Collections done here count for the same alarms as the collector's own.
    collected = report.collected.values()
    metrics.add_metric(
        name="ImagesCounted", unit=MetricUnit.Count, value=sum(len(r.counted) for r in collected)
    )
    metrics.add_metric(
        name="ImagesRejected", unit=MetricUnit.Count, value=sum(len(r.rejected) for r in collected)
    )
    metrics.add_metric(
        name="ImagesParked", unit=MetricUnit.Count, value=sum(r.parked_images for r in collected)
    )
    (logger.warning if report.problems else logger.info)("reconciled", **summary)
    return summary


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return process(event, get_reconciler())
