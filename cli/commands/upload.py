"""``bincount upload DIR_OR_PHOTOS... --bin BIN_ID``: put photos into the stack's ingest bucket.

Keys follow the layout the pipeline parses: ``<IngestPrefix><BIN_ID>/<capture time>-<name>``,
the capture time (``--captured-at``, else the file's modification time) as a compact UTC
timestamp, so the bin's latest count follows capture order. Every path is checked before
anything is uploaded: a missing file or one that is not a JPEG/PNG stops the command with one
line. The stack counts what arrives; follow it with ``bincount bins`` / ``bincount status``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bincount.image_formats import content_type_for

from cli.arguments import Subcommands
from cli.errors import EXIT_OK, UsageError
from cli.output import Column, emit_rows
from cli.photos import check_bin_id, file_time, parse_capture_time, select_photos, sniff_image, upload_key
from cli.stack import stack_for

COLUMNS = [Column("photo", "photo"), Column("key", "key")]


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "upload",
        run,
        help="upload photos of a bin into the ingest bucket",
        doc=__doc__,
        examples=[
            "bincount upload ../shared/abid/images --bin BIN-1",
            "bincount upload shelf.jpg --bin A-07 --captured-at 2026-11-26T10:15:00Z",
        ],
    )
    parser.add_argument(
        "paths", nargs="+", metavar="DIR_OR_PHOTO", help="photos, or folders of .jpg/.jpeg/.png"
    )
    parser.add_argument(
        "--bin", dest="bin_id", required=True, metavar="BIN_ID", help="the bin the photos show"
    )
    parser.add_argument("--captured-at", help="capture time of every photo (default: each file's mtime)")


def checked_photos(arguments: list[str]) -> list[Path]:
    """The photos to upload, or a UsageError naming what is missing or not an image."""
    selection = select_photos(arguments)
    if selection.missing:
        raise UsageError(f"no such file or folder: {', '.join(selection.missing)}")
    if not selection.files:
        raise UsageError(f"no .jpg/.jpeg/.png photos in {', '.join(arguments)}")
    not_images = []
    for path in selection.files:
        with path.open("rb") as handle:
            if sniff_image(handle.read(16)) is None:
                not_images.append(str(path))
    if not_images:
        shown = ", ".join(not_images[:5]) + (
            f" and {len(not_images) - 5} more" if len(not_images) > 5 else ""
        )
        raise UsageError(f"not a JPEG or PNG image: {shown}")
    if selection.skipped:
        print(
            f"upload: skipping {len(selection.skipped)} non-photo file(s), e.g. {selection.skipped[0]}",
            file=sys.stderr,
        )
    return selection.files


def planned_keys(
    photos: list[Path], prefix: str, bin_id: str, captured_at: str | None
) -> list[tuple[Path, str]]:
    fixed = parse_capture_time(captured_at) if captured_at else None
    planned = [(path, upload_key(prefix, bin_id, fixed or file_time(path), path.name)) for path in photos]
    keys = [key for _, key in planned]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise UsageError(
            f"two photos would share the key {duplicates[0]}: rename one or upload them separately"
        )
    return planned


def run(args: argparse.Namespace) -> int:
    bin_id = check_bin_id(args.bin_id)
    photos = checked_photos(args.paths)
    if args.captured_at:
        parse_capture_time(args.captured_at)
    stack = stack_for(args)
    s3 = stack.client("s3")
    uploaded = []
    for path, key in planned_keys(photos, stack.ingest_prefix, bin_id, args.captured_at):
        s3.put_object(
            Bucket=stack.ingest_bucket, Key=key, Body=path.read_bytes(), ContentType=content_type_for(key)
        )
        uploaded.append({"photo": str(path), "bucket": stack.ingest_bucket, "key": key, "bin_id": bin_id})
    summary = f"uploaded {len(uploaded)} photo(s) of {bin_id} to s3://{stack.ingest_bucket}"
    emit_rows(uploaded, COLUMNS, args.json, summary)
    return EXIT_OK
