"""The storage and service seams of the domain services; adapters/ implements them with boto3,
tests/functions/pipeline_fakes.py in memory."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bincount.count_records import CountSnapshot, LatestWrite
from bincount.recounts import RecountWrite


class JobSubmissionError(Exception):
    """CreateTransformJob refused. ``retryable``: throttling or quota, try again later."""

    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retryable = retryable


class ObjectStore(Protocol):
    def put_json_if_absent(self, bucket: str, key: str, document: Any) -> bool:
        """Write unless the key exists; True when this call wrote it."""
        ...

    def get_json(self, bucket: str, key: str) -> Any: ...

    def get_bytes(self, bucket: str, key: str) -> bytes: ...

    def list_keys(self, bucket: str, prefix: str) -> list[str]: ...


class TransformJobs(Protocol):
    def create(self, request: dict[str, Any]) -> bool:
        """Start a job; False when a job of that name already exists. Raises JobSubmissionError."""
        ...

    def count_in_progress(self, name_prefix: str, limit: int) -> int:
        """In-progress jobs whose name starts with ``name_prefix``, counting stops at ``limit``."""
        ...

    def describe(self, job_name: str) -> dict[str, Any] | None:
        """DescribeTransformJob's answer; None when SageMaker knows no such job."""
        ...


class JobStore(Protocol):
    def get(self, job_name: str) -> dict[str, Any] | None: ...

    def record(self, job_name: str, attributes: dict[str, Any]) -> bool:
        """Create the job's record unless it exists; True when this call created it."""
        ...

    def update(self, job_name: str, attributes: dict[str, Any], remove: Sequence[str] = ()) -> None:
        """SET ``attributes`` (creating the record if needed) and REMOVE the ``remove`` attributes."""
        ...

    def in_flight(self) -> list[dict[str, Any]]:
        """Records of jobs not yet collected (the sparse ``in_flight`` index), oldest first."""
        ...


class CountStore(Protocol):
    def get_image(self, bin_id: str, sort_key: str) -> dict[str, Any] | None:
        """The image record of one upload (``records.image_record_sk``), or None."""
        ...

    def put_image(self, item: dict[str, Any]) -> bool:
        """Write an image record unless one for the same upload (same sort key) exists."""
        ...

    def get_latest(self, bin_id: str) -> dict[str, Any] | None: ...

    def put_latest(self, bin_id: str, attributes: dict[str, Any], expected_version: str | None) -> bool:
        """SET ``attributes`` on LATEST if it still holds ``expected_version`` (None: no photo yet)."""
        ...

    # The collector's batched path: a few round trips per job instead of four per photo.
    def read_state(self, bin_ids: Collection[str], images: Collection[tuple[str, str]]) -> CountSnapshot:
        """LATEST of ``bin_ids`` and the records of ``(bin_id, record sort key)``, read consistently."""
        ...

    def put_latests(self, writes: Sequence[LatestWrite]) -> set[str]:
        """Apply each write whose expected version still holds; returns the bins that moved on."""
        ...

    def put_images(self, items: Sequence[dict[str, Any]]) -> list[bool]:
        """``put_image`` for many records; one flag per item (False: duplicate)."""
        ...

    def put_recounts(self, writes: Sequence[RecountWrite]) -> list[bool]:
        """Re-count results onto existing records (history kept); False: the version moved, a duplicate."""
        ...


@dataclass(frozen=True)
class QueuedMessage:
    receipt: str
    body: str
    message_id: str = ""


class MessageQueue(Protocol):
    """An SQS queue as the retry queue uses it: delayed sends, visibility as a timer."""

    def send(self, body: str, delay_s: int) -> None: ...

    def receive(self, max_messages: int) -> list[QueuedMessage]: ...

    def delete(self, receipt: str) -> None: ...

    def postpone(self, receipt: str, delay_s: int) -> None:
        """Hide a received message for ``delay_s`` more seconds (0: visible again now)."""
        ...


class EventSender(Protocol):
    def send(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One PutEvents call; returns its ``Entries`` (one result per entry, in order)."""
        ...
