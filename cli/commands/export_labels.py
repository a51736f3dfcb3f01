"""``bincount export-labels OUT_DIR``: the photos people reviewed, as a training set.

Writes OUT_DIR/images/<count>/<key-derived-name>.jpg, OUT_DIR/labels.csv (image,count,... as in
../shared/abid-train, so `make train DATA=OUT_DIR` reads it) and OUT_DIR/sources.json (bucket,
key, etag, version id, reviewer, when). Re-running adds only what is new; a re-labelled photo
moves to its new count folder. OUT_DIR is replaced whole once everything is written (a failure
leaves it as it was). Exit 1 when a labelled photo is gone from S3 or a record is malformed (one
line each; the rest is exported).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from cli.arguments import Subcommands
from cli.output import emit
from cli.review.commands import check_out_dir, export, parse_since
from cli.stack import stack_for
from common.errors import EXIT_OK, EXIT_REFUSED


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "export-labels",
        run,
        help="write reviewed photos + labels.csv for training",
        doc=__doc__,
        examples=[
            "bincount export-labels build/labels",
            "bincount export-labels build/labels --since 2026-11-26",
            "make train DATA=build/labels",
        ],
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    parser.add_argument("--since", help="only labels saved at or after this date/time (UTC)")


def run(args: argparse.Namespace) -> int:
    since = parse_since(args.since)
    out_dir = check_out_dir(args.out_dir)
    report = export(stack_for(args), out_dir, since)
    emit(asdict(report), report.summary(args.out_dir), args.json)
    return EXIT_REFUSED if report.missing or report.malformed else EXIT_OK
