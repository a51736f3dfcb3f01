"""Counting photos now: in this process with the shipped artifact, or through a real-time endpoint.

All three paths use the same serving code (``code/inference.py`` of ``model.tar.gz``): in
process its ``model_fn / input_fn / predict_fn / output_fn`` are called directly; the local
endpoint (``make up``'s model server) and a SageMaker endpoint run them behind
``POST /invocations``, fed the image bytes with the photo's content type, never a URL.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bincount.image_formats import content_type_for

from common.errors import NotFound, Refused, UsageError

Record = dict[str, Any]


@dataclass(frozen=True)
class Photo:
    label: str  # what the output calls it (the path as given)
    body: bytes
    content_type: str

    @classmethod
    def read(cls, path: Path) -> Photo:
        return cls(str(path), path.read_bytes(), content_type_for(path.name))


class Counter(Protocol):
    """Counts photos; one record (count or error) per photo, in order."""

    def count(self, photos: list[Photo]) -> list[Record]: ...


def error_record(code: str, message: str) -> Record:
    return {"error": {"code": code, "message": message}}


class InProcessCounter:
    """``model_fn`` once, then ``input_fn -> predict_fn -> output_fn`` over batches of photos."""

    def __init__(self, artifact: Path, threads: int, batch: int = 8) -> None:
        if not artifact.is_file():
            raise UsageError(f"model artifact {artifact} is missing: run `make model` (or pass --model)")
        # torch.set_num_threads is process-wide and the handlers choose it from BINCOUNT_THREADS when
        # the module loads: ours, not whatever an earlier import left (ENGINEERING.md).
        os.environ["BINCOUNT_THREADS"] = str(threads)
        self._tmp = tempfile.TemporaryDirectory(prefix="bincount-model-")
        model_dir = Path(self._tmp.name)
        from training.promotion.artifact import load_inference_module, unpack_artifact

        try:
            unpack_artifact(artifact, model_dir)
        except (tarfile.TarError, OSError) as error:
            raise UsageError(f"{artifact} is not a model.tar.gz: {error}") from error
        self.module = load_inference_module(model_dir)
        logging.getLogger("bincount.inference").setLevel(logging.ERROR)  # rejections are in the records
        self.model = self.module.model_fn(str(model_dir))
        self.batch = max(1, batch)

    def count(self, photos: list[Photo]) -> list[Record]:
        records: list[Record] = []
        for start in range(0, len(photos), self.batch):
            chunk = photos[start : start + self.batch]
            inputs = [self.module.input_fn(photo.body, photo.content_type) for photo in chunk]
            body, _ = self.module.output_fn(self.module.predict_fn(inputs, self.model), "application/json")
            records.extend(json.loads(body))
        return records


class HttpEndpointCounter:
    """The container contract at ``url`` (the local stack's model server): one photo per request."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        from common.invocations import http_invoker

        self.url = url
        self.invoke = http_invoker(url)
        self.timeout_s = timeout_s

    def count(self, photos: list[Photo]) -> list[Record]:
        return [self._one(photo) for photo in photos]

    def _one(self, photo: Photo) -> Record:
        try:
            status, body = self.invoke(photo.body, photo.content_type, "application/json", self.timeout_s)
        except OSError as error:
            raise Refused(
                f"the endpoint at {self.url} does not answer ({error}): is the stack up?"
            ) from error
        if status != 200:
            return error_record("endpoint_error", f"HTTP {status}: {body.decode(errors='replace')[:300]}")
        record: Record = json.loads(body)
        return record


class SageMakerEndpointCounter:
    """``sagemaker-runtime`` ``InvokeEndpoint`` with the image bytes, one photo per request."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    def count(self, photos: list[Photo]) -> list[Record]:
        return [self._one(photo) for photo in photos]

    def _one(self, photo: Photo) -> Record:
        from botocore.exceptions import ClientError

        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.name,
                ContentType=photo.content_type,
                Accept="application/json",
                Body=photo.body,
            )
        except ClientError as error:
            details = error.response.get("Error", {})
            message = str(details.get("Message", error))
            if details.get("Code") == "ModelError":  # the container answered 4xx/5xx for this photo
                return error_record("endpoint_error", message[:300])
            if "not found" in message.lower():
                raise NotFound(f"endpoint {self.name} not found: {message}") from error
            raise
        record: Record = json.loads(response["Body"].read())
        return record


def read_photos(paths: list[Path]) -> Iterator[tuple[Path, Photo | Record]]:
    """Each path with its bytes, or the error record saying why it could not be read."""
    for path in paths:
        try:
            yield path, Photo.read(path)
        except OSError as error:
            yield path, error_record("unreadable_file", f"{path}: {error.strerror or error}")
