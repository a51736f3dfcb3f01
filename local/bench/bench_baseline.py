"""The collector's previous recording path, kept only so ``make bench-pipeline`` can measure it.

Until the batched path (``bincount.collection``/``bincount.bin_plans``), the collector made four
DynamoDB calls per photo: GetItem of the image record, GetItem of LATEST, a conditional
UpdateItem of LATEST for every newer photo, a conditional PutItem of the record (bins in
parallel threads, photos of a bin in capture order). :class:`PerPhotoCollector` is that path
over the same adapters and the same events, so the benchmark compares designs, not code
versions. It is not used anywhere else.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bincount.bin_plans import PhotoStep
from bincount.collection import MAX_LATEST_ATTEMPTS, CollectionIncomplete, CollectionReport, Collector
from bincount.count_records import (
    CountSnapshot,
    ImageOutcome,
    LatestDecision,
    LatestState,
    decide_latest,
    image_item,
    image_record_sk,
    latest_attributes,
    upload_order,
)
from bincount.serving_records import CountResult

WRITE_WORKERS = 8


class PerPhotoCollector(Collector):
    """Steps 1-4 photo by photo: one read pair and one conditional write pair per photo."""

    def _record(
        self,
        outcomes: list[ImageOutcome],
        report: CollectionReport,
        read: tuple[list[ImageOutcome], CountSnapshot] | None = None,
    ) -> None:
        """``read`` is the batched design's: the per-photo design reads each photo itself."""
        by_bin: dict[str, list[ImageOutcome]] = {}
        for outcome in sorted(outcomes, key=lambda o: upload_order(o.image)):
            by_bin.setdefault(outcome.image.bin_id, []).append(outcome)
        with ThreadPoolExecutor(max_workers=max(1, min(WRITE_WORKERS, len(by_bin)))) as pool:
            per_bin = list(pool.map(lambda group: [self._step(o) for o in group], by_bin.values()))
            steps = [step for group in per_bin for step in group if step is not None]
            report.duplicates += sum(1 for group in per_bin for step in group if step is None)
            report.stale += sum(1 for step in steps if step.decision is LatestDecision.STALE)
            publishable = self._publish(steps, report)
            recorded_at = self.clock()
            written = list(
                pool.map(lambda s: self.counts.put_image(image_item(s.outcome, recorded_at)), publishable)
            )
        for step, was_written in zip(publishable, written, strict=True):
            if not was_written:
                report.duplicates += 1
                continue
            (report.counted if step.outcome.is_count else report.rejected).append(step.outcome)

    def _step(self, outcome: ImageOutcome) -> PhotoStep | None:
        """None: already recorded; else the photo's decision after moving LATEST if newer."""
        image = outcome.image
        if self.counts.get_image(image.bin_id, image_record_sk(image)) is not None:
            return None
        if not isinstance(outcome.result, CountResult):
            return PhotoStep(outcome, None, None, None)
        for _ in range(MAX_LATEST_ATTEMPTS):
            state = LatestState.from_item(self.counts.get_latest(image.bin_id))
            decision = decide_latest(state, image)
            expected = state.expected_quantity if state else None
            if decision is LatestDecision.STALE:
                return PhotoStep(outcome, decision, state.count if state else None, expected)
            if decision is LatestDecision.ALREADY_APPLIED:
                return PhotoStep(outcome, decision, state.previous_count if state else None, expected)
            previous = state.count if state else None
            attributes = latest_attributes(outcome, previous, self.clock())
            if self.counts.put_latest(image.bin_id, attributes, state.version if state else None):
                return PhotoStep(outcome, decision, previous, expected)
        raise CollectionIncomplete(f"LATEST of bin {image.bin_id} kept changing under us")


def install_per_photo_collector() -> None:
    """Swap the collector handler's runtime to the per-photo path (call with its environment set)."""
    app: Any = sys.modules.get("collector.app")
    if app is None:
        import collector.app as app  # the handler module, as the local Lambda service imports it
    runtime = app.get_runtime()
    runtime.collector = PerPhotoCollector(**vars(runtime.collector))
