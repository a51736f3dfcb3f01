"""The collector's batched recording path with in-memory fakes: LATEST once per bin, events in
capture order, and a retry after a crash between steps that repairs without duplicates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bincount.batching import output_key_for, plan_chunks
from bincount.bin_plans import plan_bin
from bincount.collection import Collector
from bincount.count_decisions import DecisionRules
from bincount.count_records import LatestDecision, outcome_for
from bincount.job_events import TransformJobEvent
from bincount.serving_records import CountResult
from bincount.submission import Submitter
from bincount.uploads import ImageObject
from pipeline_fakes import (
    CONFIG,
    LAYOUT,
    FakeTransforms,
    MemoryCounts,
    MemoryJobs,
    MemoryObjects,
    RecordingSender,
)

RULES = DecisionRules(confidence_threshold=0.5)

T = [f"2026-01-01T0{hour}:00:00.000Z" for hour in range(6)]


class Crash(RuntimeError):
    """A Lambda that died between two steps."""


class CrashingCounts(MemoryCounts):
    """Dies once, before the named batched call does anything."""

    def __init__(self, crash_before: str) -> None:
        super().__init__()
        self.crash_before = crash_before

    def put_images(self, items: Any) -> list[bool]:
        self._maybe_crash("put_images")
        return super().put_images(items)

    def put_latests(self, writes: Any) -> set[str]:
        self._maybe_crash("put_latests")
        return super().put_latests(writes)

    def _maybe_crash(self, call: str) -> None:
        if self.crash_before == call:
            self.crash_before = ""
            raise Crash(call)


def photo(bin_id: str, name: str, hour: int) -> ImageObject:
    return ImageObject(
        "ingest", f"incoming/{bin_id}/{name}.jpg", f"e-{name}", 10, bin_id, T[hour], "image/jpeg"
    )


def make_collector(counts: MemoryCounts, sender: RecordingSender, objects: MemoryObjects) -> Collector:
    submitter = Submitter(objects, FakeTransforms(), MemoryJobs(), LAYOUT, CONFIG)
    return Collector(
        objects,
        counts,
        MemoryJobs(),
        sender,
        submitter,
        LAYOUT,
        "bus",
        DecisionRules(confidence_threshold=0.5),
        "bincount",
    )


def stage(objects: MemoryObjects, counts_by_photo: dict[ImageObject, int]) -> str:
    """Submit one job holding the photos and play Batch Transform: every photo gets its .out."""
    (chunk,) = plan_chunks(list(counts_by_photo), max_images=len(counts_by_photo))
    Submitter(objects, FakeTransforms(), MemoryJobs(), LAYOUT, CONFIG).submit(chunk)
    for image, count in counts_by_photo.items():
        record = {"count": count, "confidence": 0.9, "probabilities": [], "model_version": "v"}
        objects.put_bytes(
            "results", output_key_for(LAYOUT, chunk.job_name, image.key), json.dumps(record).encode()
        )
    return chunk.job_name


def updates(sender: RecordingSender) -> list[tuple[str, int, int | None]]:
    """(bin, count, previous_count) of every delivered ``Bin Count Updated``, in send order."""
    details = [json.loads(e["Detail"]) for e in sender.delivered if e["DetailType"] == "Bin Count Updated"]
    return [(d["bin_id"], d["count"], d["previous_count"]) for d in details]


def test_a_job_moves_each_bins_latest_once_to_its_newest_photo() -> None:
    objects, counts, sender = MemoryObjects(), MemoryCounts(), RecordingSender()
    photos = {
        photo("B1", "late", 3): 3,
        photo("B1", "early", 1): 1,
        photo("B1", "middle", 2): 2,
        photo("B2", "only", 4): 5,
        photo("B3", "a", 1): 0,
        photo("B3", "b", 2): 4,
    }
    name = stage(objects, photos)

    report = make_collector(counts, sender, objects).collect(TransformJobEvent(name, "Completed"))

    assert len(report.counted) == 6 and report.duplicates == 0
    assert sorted((w.bin_id, w.attributes["count"]) for w in counts.latest_writes) == [
        ("B1", 3),
        ("B2", 5),
        ("B3", 4),
    ]
    assert counts.batched_calls == ["read_state", "put_latests", "put_images"]
    assert {b: counts.get_latest(b)["image_key"] for b in ("B1", "B2", "B3")} == {
        "B1": "incoming/B1/late.jpg",
        "B2": "incoming/B2/only.jpg",
        "B3": "incoming/B3/b.jpg",
    }
    # the events still tell each bin's history in capture order
    assert [u for u in updates(sender) if u[0] == "B1"] == [("B1", 1, None), ("B1", 2, 1), ("B1", 3, 2)]
    assert [u for u in updates(sender) if u[0] == "B3"] == [("B3", 0, None), ("B3", 4, 0)]
    assert len(counts.images()) == 6


def test_a_later_job_with_an_older_photo_keeps_the_newer_count() -> None:
    objects, counts, sender = MemoryObjects(), MemoryCounts(), RecordingSender()
    collector = make_collector(counts, sender, objects)
    collector.collect(TransformJobEvent(stage(objects, {photo("B1", "new", 4): 4}), "Completed"))
    older = stage(objects, {photo("B1", "old", 1): 1, photo("B1", "newest", 5): 5})

    report = collector.collect(TransformJobEvent(older, "Completed"))

    assert report.stale == 1
    assert counts.get_latest("B1")["count"] == 5
    assert updates(sender) == [("B1", 4, None), ("B1", 5, 4)]


@pytest.mark.parametrize("crash_before", ["put_latests", "put_images"])
def test_a_retry_after_a_crash_between_steps_repairs_without_duplicates(crash_before: str) -> None:
    objects, counts, sender = MemoryObjects(), CrashingCounts(crash_before), RecordingSender()
    photos = {photo("B1", "a", 1): 1, photo("B1", "b", 2): 2, photo("B2", "c", 1): 3}
    name = stage(objects, photos)
    collector = make_collector(counts, sender, objects)
    with pytest.raises(Crash):
        collector.collect(TransformJobEvent(name, "Completed"))
    assert counts.images() == []  # nothing committed before the crash

    report = collector.collect(TransformJobEvent(name, "Completed"))  # the same event, retried

    assert len(report.counted) == 3 and report.duplicates == 0
    assert sorted(item["image_key"] for item in counts.images()) == sorted(p.key for p in photos)
    assert counts.get_latest("B1")["count"] == 2 and counts.get_latest("B2")["count"] == 3
    # the newest photo of each bin is announced after the retry (events are at least once)
    assert {("B1", 2, 1), ("B2", 3, None)} <= set(updates(sender))
    again = collector.collect(TransformJobEvent(name, "Completed"))
    assert (again.duplicates, len(again.counted), len(counts.images())) == (3, 0, 3)


def test_plan_keeps_the_expected_quantity_and_knows_its_own_photo() -> None:
    first, second = photo("B1", "a", 1), photo("B1", "b", 2)
    outcomes = [
        outcome_for(p, CountResult(n, 0.9, (), False, "v"), "job", 0.5) for p, n in ((first, 1), (second, 2))
    ]

    plan = plan_bin("B1", {"pk": "BIN#B1", "sk": "LATEST", "expected_quantity": 2}, outcomes, T[0])

    assert plan.write is not None and plan.write.expected_version is None
    assert [(s.decision, s.previous_count, s.expected_quantity) for s in plan.steps] == [
        (LatestDecision.APPLY, None, 2),
        (LatestDecision.APPLY, 1, 2),
    ]
    held = {"latest_version": plan.write.attributes["latest_version"], **plan.write.attributes}
    replayed = plan_bin("B1", held, outcomes, T[0])  # a retry after LATEST was written
    assert replayed.write is None
    assert [(s.decision, s.previous_count) for s in replayed.steps] == [
        (LatestDecision.STALE, 2),
        (LatestDecision.ALREADY_APPLIED, 1),
    ]
