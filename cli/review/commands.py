"""What `bincount review`, `bincount correct` and `bincount export-labels` do, given a stack.

The command modules (cli/commands/) parse options and pick the stack; these functions check
their inputs first (one line, exit 2/1 through common/errors.py) and then act.
"""

from __future__ import annotations

import shlex
import socket
from pathlib import Path
from typing import Any

from bincount.corrections import (
    MORE_THAN_TOP,
    CorrectionRefused,
    LabelOutOfRange,
    PhotoGone,
    RecordVersion,
    StaleRecord,
    human_label_of,
)
from bincount.timefmt import canonical_time

from cli.review.export import MANIFEST, ExportReport, export_labels
from cli.review.identity import reviewer_for
from cli.review.service import PhotoMode, ReviewService
from cli.stack import StackResources
from common.errors import NotFound, Refused, UsageError

HOST = "127.0.0.1"  # the console never listens beyond this machine
DEFAULT_PORT = 8765


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise UsageError(f"--port must be within 1..65535, got {port}")
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            raise Refused(
                f"port {port} on {HOST} is in use ({error.strerror}): pass another --port"
            ) from error
    return port


def parse_since(value: str | None) -> str:
    """``--since 2026-11-26`` (or any ISO time) as the table's canonical time; "" for everything."""
    if not value:
        return ""
    try:
        return canonical_time(value)
    except ValueError as error:
        raise UsageError(f"--since {value!r} is not a date (e.g. 2026-11-26 or 2026-11-26T10:00Z)") from error


def check_out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is a file: OUT_DIR must be a folder (it is created if missing)")
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise UsageError(f"{path} holds other files: pick an empty folder or a previous export's folder")
    return path


def photo_key(resources: StackResources, given: str) -> str:
    """``incoming/BIN-1/x.jpg``, ``BIN-1/x.jpg`` (under the ingest prefix) or ``s3://bucket/key``."""
    key = given.strip()
    if key.startswith("s3://"):
        bucket, _, key = key[len("s3://") :].partition("/")
        if bucket != resources.ingest_bucket:
            raise UsageError(f"{given} is not in the ingest bucket {resources.ingest_bucket}")
    if not key:
        raise UsageError("KEY must name a photo, e.g. incoming/BIN-1/20261126T101500Z-cam1.jpg")
    prefix = resources.ingest_prefix
    return key if not prefix or key.startswith(prefix) else prefix + key


def correct_photo(
    resources: StackResources,
    key: str,
    count: str,
    reviewer: str | None,
    version: str | None = None,
    seen: str | None = None,
    bin_id: str = "",
) -> dict[str, Any]:
    """Save one human count through the console's code path; the answer as plain data.

    ``version`` picks the upload of ``key`` (required when the key has several: refused with
    the list); ``seen`` is the record version the reviewer saw (to replace another label).
    """
    service = ReviewService.for_stack(resources, reviewer_for(resources, reviewer))
    record_bin, sk = "", ""
    try:
        record_bin, sk = service.resolve(photo_key(resources, key), version, bin_id)
        result = service.correct(record_bin, sk, count, seen)
    except LabelOutOfRange as error:
        raise UsageError(f"COUNT {count}: {error}") from error
    except PhotoGone as error:
        raise NotFound(str(error)) from error
    except StaleRecord as error:  # another label, or a --seen that is not the record's version
        current = service.counts.get_image(record_bin, sk) if sk else None
        if current is None:
            raise Refused(str(error)) from error
        seen_now = f"--seen {shlex.quote(RecordVersion.of(current).token())}"
        label = human_label_of(current)
        if label is None:
            raise Refused(f"{error}; the record now: run again with {seen_now}") from error
        raise Refused(
            f"{current.get('reviewer')} already saved {label} for this photo at "
            f"{current.get('reviewed_at')}; your {count} was not saved: "
            f"to replace it, run again with {seen_now}"
        ) from error
    except CorrectionRefused as error:
        raise Refused(str(error)) from error
    return {
        "status": result.status.value,
        "message": result.message,
        "bin_id": result.event.bin_id,
        "key": result.event.image.key,
        "image_version": result.record.get("image_version"),
        "count": result.label.count,
        "count_is_lower_bound": result.label.is_lower_bound,
        "model_count": result.event.model_count,
        "reviewer": result.event.reviewer,
        "reviewed_at": result.event.reviewed_at,
        "latest_updated": result.latest_followed,
    }


def check_count(value: str) -> str:
    """The form of COUNT, before any stack is asked (its range depends on the photo's record)."""
    text = value.strip()
    if text != MORE_THAN_TOP and not text.isdigit():
        raise UsageError(f"COUNT {value!r} must be a number (0..the model's top class) or + for more")
    return text


def export(resources: StackResources, out_dir: Path, since_time: str) -> ExportReport:
    """Export reviewed photos (labelled at or after ``since_time``, canonical; "" all) into ``out_dir``."""
    service = ReviewService.for_stack(resources, reviewer="export")
    records = service.labels.labelled_images(since_time)
    return export_labels(records, service.photos, out_dir, resources.ingest_prefix)


def serve(
    resources: StackResources, port: int, reviewer: str | None, photo_mode: PhotoMode | None = None
) -> int:
    """Run the console until Ctrl-C (``port`` checked by :func:`check_port`; identity and stack here)."""
    import uvicorn

    from cli.review.app import create_app

    service = ReviewService.for_stack(resources, reviewer_for(resources, reviewer), photo_mode)
    waiting = len(service.queue())
    print(
        f"review console for stack {resources.stack}: http://{HOST}:{port}/  "
        f"(reviewer {service.reviewer}, {waiting} photo(s) to review; Ctrl-C stops it)",
        flush=True,
    )
    uvicorn.run(create_app(service), host=HOST, port=port, log_level="warning")
    return 0
