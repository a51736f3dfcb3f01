"""In-memory implementations of bincount.ports for fast unit tests (same rules as the adapters)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from bincount.batching import JobLayout, TransformConfig
from bincount.collection import Collector
from bincount.count_decisions import DecisionRules
from bincount.count_records import LATEST_SK, CountSnapshot, LatestWrite, bin_pk
from bincount.ports import JobSubmissionError, QueuedMessage
from bincount.recounts import RecountWrite
from bincount.submission import Submitter
from bincount.timefmt import parse_time
from bincount.uploads import ImageObject


def photo(i: int) -> ImageObject:
    """Upload ``i``: the only photo of bin ``B<i>``, already staged for its job."""
    return ImageObject(
        "ingest",
        f"incoming/B{i}/x.jpg",
        f"e{i}",
        10,
        f"B{i}",
        "2026-01-01T00:00:00.000Z",
        "image/jpeg",
        staged_key=f"{i:032x}.jpg",
    )


class MemoryObjects:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_json_if_absent(self, bucket: str, key: str, document: Any) -> bool:
        if (bucket, key) in self.objects:
            return False
        self.objects[(bucket, key)] = json.dumps(document).encode()
        return True

    def put_bytes(self, bucket: str, key: str, body: bytes) -> None:
        self.objects[(bucket, key)] = body

    def get_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.objects[(bucket, key)])

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)]

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))


class FakeTransforms:
    """Remembers created jobs like SageMaker (a name stays taken); can refuse with scripted errors."""

    def __init__(self, errors: Iterable[JobSubmissionError] = (), in_progress: int = 0) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.errors = list(errors)
        self.in_progress = in_progress
        self.descriptions: dict[str, dict[str, Any]] = {}  # what DescribeTransformJob answers

    def create(self, request: dict[str, Any]) -> bool:
        self.calls.append(request["TransformJobName"])
        if self.errors:
            raise self.errors.pop(0)
        if request["TransformJobName"] in self.created:
            return False
        self.created[request["TransformJobName"]] = request
        return True

    def count_in_progress(self, name_prefix: str, limit: int) -> int:
        return min(self.in_progress, limit)

    def describe(self, job_name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.descriptions.get(job_name))


class MemoryJobs:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def get(self, job_name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.items.get(job_name))

    def record(self, job_name: str, attributes: dict[str, Any]) -> bool:
        if job_name in self.items:
            return False
        self.items[job_name] = {"pk": job_name, **attributes}
        return True

    def update(self, job_name: str, attributes: dict[str, Any], remove: Sequence[str] = ()) -> None:
        item = self.items.setdefault(job_name, {"pk": job_name})
        item.update(attributes)
        for name in remove:
            item.pop(name, None)

    def in_flight(self) -> list[dict[str, Any]]:
        listed = [item for item in self.items.values() if item.get("in_flight")]
        return copy.deepcopy(sorted(listed, key=lambda item: str(item.get("created_at", ""))))


class MemoryCounts:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.batched_calls: list[str] = []  # which batched calls the collector made, in order
        self.latest_writes: list[LatestWrite] = []

    def get_image(self, bin_id: str, sort_key: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.items.get((bin_pk(bin_id), sort_key)))

    def put_image(self, item: dict[str, Any]) -> bool:
        if (item["pk"], item["sk"]) in self.items:  # once per upload, as IMAGE_CONDITION
            return False
        self.items[(item["pk"], item["sk"])] = copy.deepcopy(item)
        return True

    def get_latest(self, bin_id: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.items.get((bin_pk(bin_id), LATEST_SK)))

    def put_latest(self, bin_id: str, attributes: dict[str, Any], expected_version: str | None) -> bool:
        key = (bin_pk(bin_id), LATEST_SK)
        current = self.items.get(key, {})
        if current.get("latest_version") != expected_version:
            return False
        self.items[key] = {"pk": key[0], "sk": key[1], **current, **copy.deepcopy(attributes)}
        return True

    def read_state(self, bin_ids: Collection[str], images: Collection[tuple[str, str]]) -> CountSnapshot:
        self.batched_calls.append("read_state")
        snapshot = CountSnapshot()
        for bin_id in bin_ids:
            if (latest := self.get_latest(bin_id)) is not None:
                snapshot.latest[bin_id] = latest
        for bin_id, sort_key in images:
            if (image := self.get_image(bin_id, sort_key)) is not None:
                snapshot.images[sort_key] = image
        return snapshot

    def put_latests(self, writes: Sequence[LatestWrite]) -> set[str]:
        self.batched_calls.append("put_latests")
        self.latest_writes.extend(writes)
        return {w.bin_id for w in writes if not self.put_latest(w.bin_id, w.attributes, w.expected_version)}

    def put_images(self, items: Sequence[dict[str, Any]]) -> list[bool]:
        self.batched_calls.append("put_images")
        return [self.put_image(item) for item in items]

    def put_recounts(self, writes: Sequence[RecountWrite]) -> list[bool]:
        """As ``recount_update``: conditional on the model version read, history appended."""
        self.batched_calls.append("put_recounts")
        done = []
        for write in writes:
            item = self.items.get((bin_pk(write.bin_id), write.sort_key))
            if item is None or item.get("model_version") != write.expected_version:
                done.append(False)
                continue
            item.update(copy.deepcopy(write.attributes))
            item["model_history"] = [*item.get("model_history", []), copy.deepcopy(write.history)]
            done.append(True)
        return done

    def images(self) -> list[dict[str, Any]]:
        return [item for (_, sk), item in self.items.items() if sk.startswith("IMAGE#")]


class RecordingSender:
    """PutEvents that succeeds, or fails the entries whose (call, index) is scripted."""

    def __init__(self, failures: dict[tuple[int, int], str] | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.failures = failures or {}

    def send(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        call = len(self.calls)
        self.calls.append(list(entries))
        results = []
        for index in range(len(entries)):
            code = self.failures.get((call, index))
            failed = {"ErrorCode": code, "ErrorMessage": "scripted"}
            results.append(failed if code else {"EventId": f"{call}-{index}"})
        return results

    @property
    def delivered(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for call, entries in enumerate(self.calls):
            out.extend(e for i, e in enumerate(entries) if (call, i) not in self.failures)
        return out


class MemoryQueue:
    """SQS as the retry queue uses it: delays and visibility against a test clock (ISO strings)."""

    def __init__(self, clock: Callable[[], str]) -> None:
        self.clock = clock
        self.messages: dict[str, tuple[str, float]] = {}  # id → (body, visible from, epoch s)
        self.sent = 0

    def _now(self) -> float:
        return parse_time(self.clock()).timestamp()

    def send(self, body: str, delay_s: int) -> None:
        self.sent += 1
        self.messages[f"m{self.sent}"] = (body, self._now() + min(delay_s, 900))

    def receive(self, max_messages: int) -> list[QueuedMessage]:
        now = self._now()
        visible = [(mid, body) for mid, (body, since) in self.messages.items() if since <= now][:max_messages]
        for mid, body in visible:
            self.messages[mid] = (body, now + 900)
        return [QueuedMessage(receipt=mid, body=body, message_id=mid) for mid, body in visible]

    def delete(self, receipt: str) -> None:
        self.messages.pop(receipt, None)

    def postpone(self, receipt: str, delay_s: int) -> None:
        body, _ = self.messages[receipt]
        self.messages[receipt] = (body, self._now() + delay_s)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, _ in self.messages.values()]


#: Where the fakes keep a job's files, and the transform settings the tests' submitter uses.
LAYOUT = JobLayout("results")
CONFIG = TransformConfig("model", "ml.g4dn.xlarge", 1, 4, 20, 600, 1, "dev")


class FakePipeline:
    """The submitter and the collector over in-memory ports, wired as the Lambdas wire the real
    ones; ``collector_options`` (clock, waiting room, retry policy, ...) go to the collector, and a
    ``clock`` to the submitter too."""

    def __init__(self, **collector_options: Any) -> None:
        self.objects, self.transforms, self.jobs = MemoryObjects(), FakeTransforms(), MemoryJobs()
        self.counts, self.sender = MemoryCounts(), RecordingSender()
        clock = {"clock": collector_options["clock"]} if "clock" in collector_options else {}
        self.submitter = Submitter(self.objects, self.transforms, self.jobs, LAYOUT, CONFIG, **clock)
        self.collector = Collector(
            self.objects,
            self.counts,
            self.jobs,
            self.sender,
            self.submitter,
            LAYOUT,
            "bus",
            DecisionRules(confidence_threshold=0.5),
            "bincount",
            **collector_options,
        )
