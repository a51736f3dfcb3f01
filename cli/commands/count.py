"""``bincount count PHOTO... [--endpoint NAME]``: count photos now, no upload, no pipeline.

Without ``--endpoint`` the shipped model runs in this process (no stack needed);
``--endpoint local`` sends each photo to the local stack's model server, ``--endpoint stack``
to the stack's real-time endpoint (output ``RealtimeEndpointName``), ``--endpoint NAME`` to a
SageMaker endpoint of that name and ``--endpoint http://HOST:PORT`` to any server with the
container's ``/invocations`` contract. A photo that cannot be counted gets its error record,
the others still print, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from cli.arguments import Subcommands
from cli.counting import (
    Counter,
    HttpEndpointCounter,
    InProcessCounter,
    Photo,
    Record,
    SageMakerEndpointCounter,
    error_record,
    read_photos,
)
from cli.errors import EXIT_OK, EXIT_REFUSED, Refused, UsageError
from cli.output import Column, count_text, emit_rows
from cli.photos import select_photos
from cli.stack import LOCAL, resolve_stack, stack_for
from local.stack_state import REPO_ROOT

DEFAULT_MODEL = REPO_ROOT / "build" / "model" / "model.tar.gz"
COLUMNS = [
    Column("photo", "photo"),
    Column("count", "count", right=True),
    Column("conf", "confidence", right=True),
    Column("probabilities", "probabilities_text"),
    Column("model version", "model_version"),
    Column("error", "error_text"),
]


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "count",
        run,
        help="count photos now (in process, or through a real-time endpoint)",
        doc=__doc__,
        examples=[
            "bincount count photo.jpg",
            "bincount count photos/ --json",
            "bincount count photo.jpg --endpoint local",
        ],
    )
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files or folders of photos")
    parser.add_argument(
        "--endpoint",
        help="'local', 'stack', a SageMaker endpoint name, or http://HOST:PORT (default: in process)",
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="model.tar.gz for in-process counting"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads in process (default: all CPUs)",
    )
    parser.add_argument("--batch", type=int, default=8, help="photos per forward pass in process")


def make_counter(args: argparse.Namespace) -> Counter:
    endpoint: str | None = args.endpoint
    if endpoint is None:
        if args.threads < 1 or args.batch < 1:
            raise UsageError("--threads and --batch must be at least 1")
        return InProcessCounter(args.model, args.threads, args.batch)
    if endpoint.startswith(("http://", "https://")):
        return HttpEndpointCounter(endpoint.rstrip("/"))
    if endpoint == LOCAL:
        return HttpEndpointCounter(resolve_stack(LOCAL, None).realtime_endpoint)
    if endpoint == "stack":
        stack = stack_for(args)
        if not stack.realtime_endpoint:
            raise Refused(f"stack {stack.stack} has no real-time endpoint (deploy it with RealtimeEndpoint)")
        if stack.realtime_endpoint.startswith("http"):
            return HttpEndpointCounter(stack.realtime_endpoint)
        return SageMakerEndpointCounter(stack.realtime_endpoint, stack.client("sagemaker-runtime"))
    import boto3

    client = boto3.client("sagemaker-runtime", region_name=getattr(args, "region", None))
    return SageMakerEndpointCounter(endpoint, client)


def count_all(arguments: list[str], counter_factory: Any) -> list[Record]:
    """One record per photo (files in order, then missing names): counted, rejected or unreadable."""
    selection = select_photos(arguments)
    if not selection.files and not selection.missing:
        raise UsageError(f"no photos in {' '.join(arguments)} (looked for .jpg, .jpeg, .png)")
    slots: list[tuple[str, Record | None]] = []
    photos: list[Photo] = []
    for path, photo in read_photos(selection.files):
        if isinstance(photo, Photo):
            photos.append(photo)
            slots.append((str(path), None))
        else:
            slots.append((str(path), photo))
    counted = iter(counter_factory().count(photos) if photos else [])
    records = [{"photo": label, **(record or next(counted))} for label, record in slots]
    records += [
        {"photo": name, **error_record("file_not_found", f"no such file: {name}")}
        for name in selection.missing
    ]
    return records


def display_row(record: Record) -> Record:
    row = dict(record)
    probabilities = record.get("probabilities") or []
    row["probabilities_text"] = " ".join(f"{k}:{p:.2f}" for k, p in enumerate(probabilities))
    row["count"] = count_text(record.get("count"), record.get("count_is_lower_bound"))
    if "error" in record:
        row["error_text"] = f"{record['error'].get('code')}: {record['error'].get('message')}"
    return row


def run(args: argparse.Namespace) -> int:
    records = count_all(args.photos, lambda: make_counter(args))
    emit_rows(records, COLUMNS, args.json, shown=[display_row(r) for r in records])
    return EXIT_REFUSED if any("error" in record for record in records) else EXIT_OK
