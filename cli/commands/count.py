"""``bincount count PHOTO... [--endpoint NAME]``: count photos now, no upload, no pipeline.

Without ``--endpoint`` the model runs in this process (no stack needed): ``--model``, else the
model the local stack serves while `make up` runs, else the packed shipped model
(build/model/model.tar.gz from `make model`, or model-local.tar.gz from `make demo` / `make up`);
``--endpoint local`` sends each photo to the local stack's model server, ``--endpoint stack``
to the stack's real-time endpoint (output ``RealtimeEndpointName``), ``--endpoint NAME`` to a
SageMaker endpoint of that name and ``--endpoint http://HOST:PORT`` to any server with the
container's ``/invocations`` contract. Every path is checked first: a missing one or a file
that is not a JPEG/PNG (e.g. labels.csv) stops the command with one line before any model loads
(exit 2). A photo the model cannot count (a broken JPEG) gets its error record, the others
still print, and the exit status is 1.
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
    read_photos,
)
from cli.output import Column, count_text, emit_rows
from cli.photos import checked_photos
from cli.stack import LOCAL, resolve_stack, stack_for
from common.errors import EXIT_OK, EXIT_REFUSED, Refused, UsageError, did_you_mean
from common.stack_state import REPO_ROOT, default_state_path, read_state

# The packed shipped model: `make model` writes the first, `make demo` / `make up` the second.
PACKED_MODELS = (
    REPO_ROOT / "build" / "model" / "model.tar.gz",
    REPO_ROOT / "build" / "model" / "model-local.tar.gz",
)
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
        "--model",
        type=Path,
        help="model.tar.gz for in-process counting (default: the local stack's, else the packed one)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads in process (default: all CPUs)",
    )
    parser.add_argument("--batch", type=int, default=8, help="photos per forward pass in process")


def default_model() -> Path:
    """The model in-process counting uses without ``--model``: the one the local stack serves
    (its state file names it), else the packed shipped model."""
    state = read_state(default_state_path())
    if state is not None and state.model_artifact and Path(state.model_artifact).is_file():
        return Path(state.model_artifact)
    found = next((path for path in PACKED_MODELS if path.is_file()), None)
    if found is None:
        raise UsageError(
            f"no model to count with ({PACKED_MODELS[0]} is missing): run `make model` (or `make up`), "
            "pass --model PATH, or count through the stack with --endpoint local"
        )
    return found


def check_options(args: argparse.Namespace) -> None:
    for option in ("threads", "batch"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} {getattr(args, option)}: give a whole number of at least 1")


def make_counter(args: argparse.Namespace) -> Counter:
    endpoint: str | None = args.endpoint
    if endpoint is None:
        return InProcessCounter(args.model or default_model(), args.threads, args.batch)
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
    hint = did_you_mean(endpoint, [LOCAL, "stack"], "--endpoint {}")
    if hint and not getattr(args, "region", None):  # `--endpoint locl`: a typo, not an endpoint name
        raise UsageError(f"--endpoint {endpoint}: no such endpoint{hint}")
    import boto3

    client = boto3.client("sagemaker-runtime", region_name=getattr(args, "region", None))
    return SageMakerEndpointCounter(endpoint, client)


def count_all(arguments: list[str], counter_factory: Any) -> list[Record]:
    """One record per photo, in order: counted, rejected by the model, or unreadable. The paths are
    checked before ``counter_factory`` loads a model (:func:`cli.photos.checked_photos`)."""
    files = checked_photos(arguments, "PHOTO")
    slots: list[tuple[str, Record | None]] = []
    photos: list[Photo] = []
    for path, photo in read_photos(files):
        if isinstance(photo, Photo):
            photos.append(photo)
            slots.append((str(path), None))
        else:
            slots.append((str(path), photo))
    counted = iter(counter_factory().count(photos) if photos else [])
    return [{"photo": label, **(record or next(counted))} for label, record in slots]


def display_row(record: Record) -> Record:
    row = dict(record)
    probabilities = record.get("probabilities") or []
    row["probabilities_text"] = " ".join(f"{k}:{p:.2f}" for k, p in enumerate(probabilities))
    row["count"] = count_text(record.get("count"), record.get("count_is_lower_bound"), record)
    if "error" in record:
        row["error_text"] = f"{record['error'].get('code')}: {record['error'].get('message')}"
    return row


def run(args: argparse.Namespace) -> int:
    check_options(args)
    records = count_all(args.photos, lambda: make_counter(args))
    emit_rows(records, COLUMNS, args.json, shown=[display_row(r) for r in records])
    return EXIT_REFUSED if any("error" in record for record in records) else EXIT_OK
