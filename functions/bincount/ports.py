"""The storage and service seams of the domain services; adapters/ implements them with boto3,
tests/functions/fakes.py in memory."""

from __future__ import annotations

from typing import Any, Protocol


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


class JobStore(Protocol):
    def get(self, job_name: str) -> dict[str, Any] | None: ...

    def record(self, job_name: str, attributes: dict[str, Any]) -> bool:
        """Create the job's record unless it exists; True when this call created it."""
        ...

    def update(self, job_name: str, attributes: dict[str, Any]) -> None: ...


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


class EventSender(Protocol):
    def send(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One PutEvents call; returns its ``Entries`` (one result per entry, in order)."""
        ...
