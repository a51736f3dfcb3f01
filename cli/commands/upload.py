"""``bincount upload DIR_OR_PHOTO... [--bin BIN_ID] [--expected labels.csv]``: put photos into the
stack's ingest bucket.

Which bin a photo shows: with ``--bin`` every photo is of that bin; without it the photos' layout
says, as for ``make demo IMAGES=``: a photo is its own bin (named after the file), so is each
photo of a flat folder (as in ABID), and ``<bin>/<photo>`` subfolders name the bin.

Keys follow the layout the pipeline parses: ``<IngestPrefix><BIN_ID>/<capture time>-<name>``,
so the bin's latest count follows capture order. The capture time is ``--captured-at``, else the
time a file's name starts with (``20261126T101500Z-cam1.jpg``), else the file's modification time.

``--expected labels.csv`` (``image,count``, ``image`` relative to the CSV's folder, the form ABID
and `bincount export-labels` write) sets each bin's expected quantity before its photos arrive,
as an inventory system would (the count of the bin's newest photo in the file): the stack then
flags counts that contradict it (``bincount bins --discrepancy``, the review console's queue).

Every path is checked before anything is uploaded: a missing file or one that is not a JPEG/PNG
stops the command with one line. The stack counts what arrives; follow it with ``bincount bins``
/ ``bincount status``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bincount.image_formats import content_type_for
from bincount.timefmt import format_time

from cli.arguments import Subcommands
from cli.inventory import expected_quantities, write_expected_quantities
from cli.output import Column, emit_rows
from cli.photos import (
    LAYOUTS,
    BinPhoto,
    check_bin_id,
    checked_photos,
    expected_of,
    file_time,
    find_bin_photos,
    is_image_file,
    name_time,
    parse_capture_time,
    read_labels,
    select_photos,
    upload_key,
)
from cli.stack import stack_for
from common.errors import EXIT_OK, UsageError

METAVAR = "DIR_OR_PHOTO"
COLUMNS = [
    Column("photo", "photo"),
    Column("bin", "bin_id"),
    Column("expected", "expected", right=True),
    Column("key", "key"),
]


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "upload",
        run,
        help="upload photos into the ingest bucket (one bin, or each photo's own)",
        doc=__doc__,
        examples=[
            "bincount upload abid/images --expected abid/labels.csv   # each photo its own bin",
            "bincount upload shelf/ --bin A-07                          # every photo of bin A-07",
            "bincount upload bins/                                      # bins/<bin>/<photo>",
            "bincount upload shelf.jpg --bin A-07 --captured-at 2026-11-26T10:15:00Z",
        ],
    )
    parser.add_argument(
        "paths", nargs="+", metavar=METAVAR, help="photos, folders of .jpg/.jpeg/.png, or of <bin>/ folders"
    )
    parser.add_argument(
        "--bin",
        dest="bin_id",
        metavar="BIN_ID",
        help="the bin every photo shows (default: each photo its own bin, or its <bin>/ folder)",
    )
    parser.add_argument(
        "--expected",
        type=Path,
        metavar="LABELS_CSV",
        help="expected quantities: a CSV image,count (image relative to the CSV), e.g. labels.csv",
    )
    parser.add_argument(
        "--captured-at", help="capture time of every photo (default: from the file name, else its mtime)"
    )


@dataclass(frozen=True)
class Planned:
    photo: BinPhoto
    captured_at: datetime
    key: str


def bin_photos(arguments: list[str], bin_id: str | None, labels: dict[Path, int]) -> list[BinPhoto]:
    """Every photo named, with its bin (``--bin``, else the layout's) and expected count."""
    if bin_id is not None:
        check_bin_id(bin_id)
        paths = checked_photos(arguments, METAVAR)
        return [BinPhoto(path, bin_id, expected_of(labels, path)) for path in paths]
    works = f"give {LAYOUTS}, or pass --bin BIN_ID for one bin"
    photos = [
        photo
        for argument in arguments
        for photo in find_bin_photos(Path(argument), f"{METAVAR} {argument}", works, labels=labels)
    ]
    not_images = [str(photo.path) for photo in photos if not is_image_file(photo.path)]
    if not_images:
        raise UsageError(f"{METAVAR} {not_images[0]}: not a JPEG or PNG photo (give photos or folders)")
    for photo in photos:
        try:
            check_bin_id(photo.bin_id)
        except UsageError as error:
            raise UsageError(
                f"{photo.path} would be bin {photo.bin_id!r}, not a bin id: rename it or pass --bin BIN_ID"
            ) from error
    return photos


def plan(photos: list[BinPhoto], prefix: str, captured_at: str | None) -> list[Planned]:
    """Keys and capture times, oldest first per bin (the expected quantity is the newest photo's)."""
    fixed = parse_capture_time(captured_at) if captured_at else None
    planned = []
    for photo in photos:
        when = fixed or name_time(photo.path.name) or file_time(photo.path)
        planned.append(Planned(photo, when, upload_key(prefix, photo.bin_id, when, photo.path.name)))
    keys = Counter(entry.key for entry in planned)
    duplicates = sorted(key for key, n in keys.items() if n > 1)
    if duplicates:
        raise UsageError(
            f"two photos would share the key {duplicates[0]}: rename one or upload them separately"
        )
    return sorted(planned, key=lambda entry: (entry.photo.bin_id, entry.captured_at, entry.key))


def warn_about_ties(planned: list[Planned]) -> None:
    """Photos of one bin with one capture time: which is the latest is then only the file name."""
    ties = Counter((entry.photo.bin_id, entry.captured_at) for entry in planned)
    tied = [(bin_id, when, n) for (bin_id, when), n in ties.items() if n > 1]
    if tied:
        bin_id, when, n = tied[0]
        print(
            f"upload: {n} photos of {bin_id} share the capture time {format_time(when)}: "
            "its latest count is then the last file name's; name files <time>-<name>.jpg "
            "(e.g. 20261126T101500Z-cam1.jpg) or upload them with --captured-at one by one",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    if args.expected and not args.expected.is_file():
        raise UsageError(f"--expected {args.expected}: no such file (a CSV image,count, e.g. labels.csv)")
    labels = read_labels(args.expected) if args.expected else {}
    photos = bin_photos(args.paths, args.bin_id, labels)
    if args.expected and not any(photo.expected is not None for photo in photos):
        raise UsageError(f"--expected {args.expected} names none of these photos (columns image,count)")
    stack = stack_for(args)
    planned = plan(photos, stack.ingest_prefix, args.captured_at)
    warn_about_ties(planned)
    skipped = [] if args.bin_id is None else select_photos(args.paths).skipped
    if skipped:
        print(f"upload: skipping {len(skipped)} non-photo file(s), e.g. {skipped[0]}", file=sys.stderr)
    quantities = expected_quantities(entry.photo for entry in planned)
    write_expected_quantities(stack.client("dynamodb"), stack.counts_table, quantities)
    s3 = stack.client("s3")
    uploaded = []
    for entry in planned:
        body = entry.photo.path.read_bytes()
        content_type = content_type_for(entry.key)
        s3.put_object(Bucket=stack.ingest_bucket, Key=entry.key, Body=body, ContentType=content_type)
        uploaded.append(
            {
                "photo": str(entry.photo.path),
                "bucket": stack.ingest_bucket,
                "key": entry.key,
                "bin_id": entry.photo.bin_id,
                "captured_at": format_time(entry.captured_at),
                "expected": entry.photo.expected,
            }
        )
    bins = len({row["bin_id"] for row in uploaded})
    summary = f"uploaded {len(uploaded)} photo(s) of {bins} bin(s) to s3://{stack.ingest_bucket}"
    if quantities:
        summary += f"; expected quantities set for {len(quantities)} bin(s)"
    emit_rows(uploaded, COLUMNS, args.json, summary)
    return EXIT_OK
