"""Failed transform jobs, played end to end with in-memory fakes: what becomes of every photo.

The world below plays Batch Transform (outputs written, state changes handed to the collector),
the retry queue (delays and visibility against a test clock) and the scheduled reconciler.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from bincount.batching import output_key_for, plan_chunks
from bincount.collection import CollectionReport
from bincount.failures import RetryPolicy
from bincount.inventory_events import BinImageRejected
from bincount.job_events import TransformJobEvent
from bincount.ports import JobSubmissionError
from bincount.reconciliation import Reconciler
from bincount.timefmt import format_time
from bincount.uploads import ImageObject
from bincount.waiting import WaitingRoom
from pipeline_fakes import (
    LAYOUT,
    FakePipeline,
    MemoryQueue,
    photo,
)

CAPACITY = (
    "CapacityError: Unable to provision requested ML compute capacity. "
    "Please retry using a different ML instance type."
)
PER_RECORD = "ClientError: See job logs for more information"


class Clock:
    def __init__(self) -> None:
        self.moment = datetime(2026, 11, 26, 10, tzinfo=UTC)

    def __call__(self) -> str:
        return format_time(self.moment)

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class World(FakePipeline):
    def __init__(self, max_in_flight: int = 4, policy: RetryPolicy | None = None) -> None:
        self.clock = Clock()
        self.policy = policy or RetryPolicy()
        self.queue = MemoryQueue(self.clock)
        self.waiting = WaitingRoom(self.queue, clock=self.clock)
        super().__init__(
            clock=self.clock, waiting=self.waiting, retry_policy=self.policy, max_in_flight=max_in_flight
        )
        self.reconciler = Reconciler(
            self.jobs,
            self.transforms,
            self.collector,
            self.submitter,
            self.waiting,
            max_in_flight,
            "bincount",
            settle_s=0,
            clock=self.clock,
        )
        self.finished: set[str] = set()

    def start(self, images: list[ImageObject]) -> str:
        (chunk,) = plan_chunks(images, max_images=len(images))
        self.submitter.submit(chunk)
        return chunk.job_name

    def run_until_idle(self, play: Callable[[str, list[str]], None], hours: int = 30) -> None:
        """Hour by hour, the reconciler resubmits what waits and ``play`` finishes each running job
        (given its photos in manifest order), until no job runs."""
        for _ in range(hours):
            self.clock.advance(3600)
            self.reconciler.run()
            running = self.running()
            if not running:
                return
            for job in running:
                play(job, self.keys_of(job))

    def keys_of(self, name: str) -> list[str]:
        """The job's photos in manifest order (a witness is no photo of the job)."""
        document = self.objects.get_json("results", LAYOUT.images_key(name))
        key_of = {item["staged_key"]: item["key"] for item in document["images"]}
        manifest = self.objects.get_json("results", LAYOUT.manifest_key(name))[1:]
        return [key_of[entry] for entry in manifest if entry in key_of]

    def witness_of(self, name: str) -> str | None:
        witness = self.objects.get_json("results", LAYOUT.images_key(name)).get("witness")
        return witness["staged_key"] if witness else None

    def end(
        self, name: str, status: str, reason: str = "", done: set[str] | None = None, answered: bool = True
    ) -> None:
        """Batch Transform ends the job: outputs for ``done`` (default: all if Completed, else none),
        and for the witness sent first, if any, while the server ``answered``."""
        if done is None:
            done = set(self.keys_of(name)) if status == "Completed" else set()
        staged = {
            image["key"]: image["staged_key"]
            for image in self.objects.get_json("results", LAYOUT.images_key(name))["images"]
        }
        entries = {staged[key] for key in done}
        if answered and (witness := self.witness_of(name)):
            entries.add(witness)
        for entry in entries:
            record = {"count": 1, "confidence": 0.9, "probabilities": [], "model_version": "v"}
            self.objects.put_bytes(
                "results", output_key_for(LAYOUT, name, entry), json.dumps(record).encode()
            )
        self.transforms.descriptions[name] = {
            "TransformJobName": name,
            "TransformJobStatus": status,
            "FailureReason": reason,
            "TransformEndTime": self.clock(),
            "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": LAYOUT.manifest_uri(name)}}},
        }
        self.finished.add(name)

    def event(self, name: str) -> TransformJobEvent:
        description = self.transforms.descriptions[name]
        return TransformJobEvent(name, description["TransformJobStatus"], description["FailureReason"])

    def collect(
        self, name: str, status: str, reason: str = "", done: set[str] | None = None, answered: bool = True
    ) -> CollectionReport:
        self.end(name, status, reason, done, answered)
        return self.collector.collect(self.event(name))

    def running(self) -> list[str]:
        return [name for name in self.transforms.created if name not in self.finished]

    def records(self) -> dict[str, dict[str, object]]:
        return {str(item["image_key"]): item for item in self.counts.images()}

    def rejections(self) -> list[dict[str, object]]:
        return [
            entry for entry in self.sender.delivered if entry["DetailType"] == BinImageRejected.detail_type
        ]


@pytest.mark.parametrize("photos", [4, 16])
def test_three_capacity_failures_in_a_row_keep_every_photo_on_its_way(photos: int) -> None:
    world = World()
    images = [photo(i) for i in range(photos)]
    name = world.start(images)
    for failure in range(1, 4):
        jobs_before = len(world.transforms.created)
        report = world.collect(name, "Failed", CAPACITY)
        assert report.failure_kind and report.failure_kind.value == "transient"
        assert len(world.transforms.created) == jobs_before  # the collector itself starts nothing

        world.clock.advance(world.policy.delay_s(failure) - 1)
        world.reconciler.run()
        assert len(world.transforms.created) == jobs_before  # the backoff is kept

        world.clock.advance(1)
        world.reconciler.run()
        assert len(world.transforms.created) == jobs_before + 1  # exactly one new job per failure
        (name,) = world.running()
        assert name.endswith(f"-r{failure}") and sorted(world.keys_of(name)) == sorted(i.key for i in images)
        assert world.records() == {} and world.rejections() == []

    world.collect(name, "Completed")
    records = world.records()
    assert set(records) == {image.key for image in images}
    assert all(record["outcome"] == "count" for record in records.values())
    assert len(world.transforms.created) == 4 and world.rejections() == [] and world.queue.messages == {}


def test_spent_retry_budget_parks_the_photos_instead_of_rejecting_them() -> None:
    world = World(policy=RetryPolicy(max_transient_retries=1, base_delay_s=60, parked_delay_s=3600))
    images = [photo(i) for i in range(4)]
    name = world.start(images)
    assert world.collect(name, "Failed", CAPACITY).parked_images == 0
    world.clock.advance(60)
    world.reconciler.run()
    (retry,) = world.running()

    report = world.collect(retry, "Failed", "ResourceLimitExceeded: The account-level service limit ...")
    assert report.parked_images == 4 and report.problems == []
    (waiting,) = world.queue.bodies()
    assert waiting["parked"] is True and len(waiting["chunk"]["images"]) == 4
    assert world.records() == {} and world.rejections() == []

    world.clock.advance(3599)
    assert world.reconciler.run().resubmitted.started == []  # type: ignore[union-attr]
    world.clock.advance(1)
    (parked_retry,) = world.reconciler.run().resubmitted.started  # type: ignore[union-attr]
    assert parked_retry.endswith("-r2")
    world.collect(parked_retry, "Completed")
    assert len(world.records()) == 4 and world.rejections() == []


def test_poison_photo_is_still_isolated_after_a_transient_failure() -> None:
    world = World(max_in_flight=2)
    images = [photo(i) for i in range(8)]
    poison = images[5].key
    name = world.start(images)
    world.collect(name, "Failed", "InternalServerError: We encountered an internal error. Please try again.")

    def play(job: str, keys: list[str]) -> None:
        if poison in keys:  # Batch Transform stops at the poison photo
            world.collect(job, "Failed", PER_RECORD, done=set(keys[: keys.index(poison)]))
        else:
            world.collect(job, "Completed")

    world.run_until_idle(play)
    records = world.records()
    assert set(records) == {image.key for image in images}  # exactly one record each
    assert records[poison]["error_code"] == "transform_failed"
    assert sum(1 for r in records.values() if r["outcome"] == "count") == 7
    assert len(world.rejections()) == 1 and world.queue.messages == {}


def test_unknown_reasons_split_within_the_budget_then_wait() -> None:
    world = World(max_in_flight=100, policy=RetryPolicy(max_unknown_splits=2))
    name = world.start([photo(i) for i in range(16)])
    world.collect(name, "Failed", "")  # no reason given
    for _ in range(2):
        for job in world.running():
            world.collect(job, "Failed", "Something nobody documented")
    assert len(world.transforms.created) == 1 + 2 + 4  # two levels of splits, then no more jobs
    assert world.running() == []
    waiting = world.queue.bodies()
    assert len(waiting) == 4 and all(len(body["chunk"]["images"]) == 4 for body in waiting)
    assert world.records() == {} and world.rejections() == []


def test_a_lone_photo_failing_for_an_unknown_reason_waits() -> None:
    world = World()
    name = world.start([photo(1)])
    report = world.collect(name, "Failed", "AccessDeniedException: not authorized to perform s3:GetObject")
    assert report.failure_kind and report.failure_kind.value == "unknown"
    assert world.records() == {} and len(world.queue.bodies()) == 1


def test_stopped_job_is_retried_whole_with_its_unfinished_photos() -> None:
    world = World()
    images = [photo(i) for i in range(4)]
    name = world.start(images)
    world.collect(name, "Stopped", done={images[0].key})
    (waiting,) = world.queue.bodies()
    assert sorted(i["key"] for i in waiting["chunk"]["images"]) == sorted(i.key for i in images[1:])
    assert list(world.records()) == [images[0].key]


def test_redrives_respect_max_jobs_in_flight() -> None:
    world = World(max_in_flight=3)
    name = world.start([photo(i) for i in range(5)])
    world.transforms.in_progress = 2  # one slot left for two halves
    report = world.collect(name, "Failed", PER_RECORD, done={photo(0).key})  # 4 failed, 1 answered
    assert len(world.running()) == 1 and len(report.waiting_jobs) == 1
    assert report.parked_images == 0

    world.transforms.in_progress = 3
    world.reconciler.run()
    assert len(world.running()) == 1  # still no room
    world.transforms.in_progress = 1
    world.reconciler.run()
    assert len(world.running()) == 2 and world.queue.messages == {}


def test_throttled_redrive_waits_instead_of_failing_the_event() -> None:
    world = World()
    name = world.start([photo(i) for i in range(5)])
    world.transforms.errors = [JobSubmissionError("ThrottlingException", "Rate exceeded", retryable=True)]
    report = world.collect(name, "Failed", PER_RECORD, done={photo(0).key})
    assert report.problems == [] and len(report.waiting_jobs) == 2
    assert world.jobs.get(name) is not None and "in_flight" not in world.jobs.items[name]


def test_reconciler_collects_a_job_whose_event_never_came() -> None:
    world = World()
    world.reconciler.settle_s = 300
    images = [photo(i) for i in range(3)]
    name = world.start(images)
    world.transforms.descriptions[name] = {"TransformJobName": name, "TransformJobStatus": "InProgress"}
    assert world.reconciler.run().still_running == 1

    world.end(name, "Completed")  # the state-change event is lost
    assert world.reconciler.run().settling == 1  # just ended: the event may still come
    world.clock.advance(300)
    report = world.reconciler.run()
    assert list(report.collected) == [name]
    assert set(world.records()) == {image.key for image in images}
    assert world.jobs.in_flight() == []
    assert world.reconciler.run().collected == {}  # done: off the index


def test_reconciler_counts_jobs_running_longer_than_the_job_timeout() -> None:
    world = World()
    world.reconciler.job_timeout_s = 3600
    name = world.start([photo(i) for i in range(2)])
    world.transforms.descriptions[name] = {"TransformJobName": name, "TransformJobStatus": "InProgress"}
    assert world.reconciler.run().overdue == []
    world.clock.advance(3601)
    report = world.reconciler.run()
    assert (report.still_running, report.overdue) == (1, [name])  # JobsOverdue metric, not collected


def test_collector_and_reconciler_on_the_same_failed_job_start_one_retry() -> None:
    world = World()
    name = world.start([photo(i) for i in range(4)])
    world.collect(name, "Failed", CAPACITY)
    world.jobs.update(name, {"in_flight": "1"})  # as if the collector crashed before finishing
    world.reconciler.run()  # collects again: a second message for the same retry
    assert len(world.queue.messages) == 2
    world.clock.advance(3600)
    report = world.reconciler.run()
    assert report.resubmitted is not None
    assert len(report.resubmitted.started) == 1 and len(report.resubmitted.already_started) == 1
    assert len(world.transforms.created) == 2 and world.queue.messages == {}


def test_one_broken_job_does_not_stop_the_reconciler() -> None:
    world = World()
    broken, fine = world.start([photo(1)]), world.start([photo(2)])
    world.end(broken, "Completed")
    world.end(fine, "Completed")
    del world.objects.objects[("results", LAYOUT.images_key(broken))]  # its image list is gone
    report = world.reconciler.run()
    assert list(report.collected) == [fine] and report.problems and broken in report.problems[0]
    assert [item["pk"] for item in world.jobs.in_flight()] == [broken]  # tried again next run


OUTAGE_REASONS = [
    # the local executor's, when the model server was killed mid-job
    "ClientError: 33 of 40 records failed; first: x.jpg: model server did not answer: "
    "<urlopen error [Errno 111] Connection refused>",
    # SageMaker's for a container that stopped answering or crashed
    "AlgorithmError: Model container failed to respond to ping. Please ensure /ping endpoint is "
    "implemented and responds with an HTTP 200 status code",
    "AlgorithmError: Unable to get response from algorithm",
    "ClientError: Worker died.",
    "AlgorithmError: Exit Code: 137",
    "ClientError: model server answered 502: Bad Gateway",
    "ClientError: 1 of 40 records failed; first: y.jpg: model server did not answer: timed out",
]


@pytest.mark.parametrize("reason", OUTAGE_REASONS)
def test_a_model_server_outage_mid_job_rejects_no_photo(reason: str) -> None:
    world = World()
    images = [photo(i) for i in range(40)]
    name = world.start(images)
    counted_before = {image.key for image in images[:7]}  # answered before the server died
    report = world.collect(name, "Failed", reason, done=counted_before)
    assert report.failure_kind and report.failure_kind.value == "container"
    assert report.rejected == [] and report.redriven_images == 0  # retried whole, not split
    (waiting,) = world.queue.bodies()
    assert len(waiting["chunk"]["images"]) == 33 and waiting["parked"] is False

    world.clock.advance(world.policy.delay_s(1))
    world.reconciler.run()
    (retry,) = world.running()
    world.collect(retry, "Completed")  # the server is back
    records = world.records()
    assert set(records) == {image.key for image in images}
    assert all(record["outcome"] == "count" for record in records.values())
    assert world.rejections() == [] and world.queue.messages == {}


def test_requests_failing_without_any_answer_wait_whole_instead_of_splitting_down_to_one() -> None:
    world = World()
    images = [photo(i) for i in range(8)]
    name = world.start(images)
    report = world.collect(name, "Failed", PER_RECORD)  # "See job logs", nothing answered at all
    assert report.failure_kind and report.failure_kind.value == "per_record"
    assert report.redriven_images == 0 and list(report.waiting_jobs.values()) == [8]
    assert world.records() == {} and world.rejections() == []


def test_a_lone_photo_is_rejected_only_beside_its_witness_answer() -> None:
    world = World(max_in_flight=100)
    images = [photo(i) for i in range(3)]
    name = world.start(images)
    # one photo counted, two failed without a cause named: split, each half led by the counted one
    world.collect(name, "Failed", PER_RECORD, done={images[0].key})
    halves = world.running()
    assert len(halves) == 2
    assert {world.witness_of(half) for half in halves} == {images[0].staged_key}

    first, second = sorted(halves, key=world.keys_of)
    # the first lone photo fails while its witness is answered in the same run: its verdict
    assert world.collect(first, "Failed", PER_RECORD, done=set()).rejected
    # the second fails with its witness unanswered too: the server's failure, it waits
    report = world.collect(second, "Failed", PER_RECORD, done=set(), answered=False)
    assert report.rejected == [] and len(report.waiting_jobs) == 1
    (waiting,) = world.queue.bodies()
    assert waiting["chunk"]["witness"]["key"] == images[0].key  # the retry keeps its witness

    world.clock.advance(world.policy.delay_s(1))
    world.reconciler.run()
    (retry,) = world.running()
    world.collect(retry, "Completed")
    records = world.records()
    assert records[images[1].key]["error_code"] == "transform_failed"
    assert records[images[2].key]["outcome"] == "count" and records[images[0].key]["outcome"] == "count"
    assert len(world.rejections()) == 1 and len(world.counts.images()) == 3  # the witness recorded once


def test_a_poison_photo_is_isolated_through_an_outage_during_its_search() -> None:
    world = World(max_in_flight=2)
    images = [photo(i) for i in range(8)]
    poison = images[5].key
    name = world.start(images)
    outage_left = 2  # the next two jobs meet a dead model server
    world.collect(name, "Failed", PER_RECORD, done={i.key for i in images[:5]})  # stopped at the poison

    def play(job: str, keys: list[str]) -> None:
        nonlocal outage_left
        if outage_left:
            outage_left -= 1
            world.collect(job, "Failed", OUTAGE_REASONS[0], done=set(), answered=False)
        elif poison in keys:
            world.collect(job, "Failed", PER_RECORD, done=set(keys) - {poison})
        else:
            world.collect(job, "Completed")

    world.run_until_idle(play)
    records = world.records()
    assert outage_left == 0 and set(records) == {image.key for image in images}
    assert records[poison]["error_code"] == "transform_failed"
    assert sum(1 for r in records.values() if r["outcome"] == "count") == 7
    assert len(world.rejections()) == 1 and world.queue.messages == {}
