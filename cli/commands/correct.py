"""``bincount correct KEY COUNT``: save a person's count for one photo, as the review console does
(same code path): the photo's record gets the human label; from that stored change the stack's
corrections function moves the bin's latest count when it is the newest photo and publishes
`Bin Count Corrected` (seconds later: the command itself puts no event). COUNT is 0..top class or + (more
than the top class). A photo is one upload: when KEY was uploaded more than once, --version names
which (the S3 version id, or the record's image_version that `bincount history BIN --json` shows); without it
the command refuses and lists the uploads. A photo that already has a different human label is
refused unless --seen names the record version you saw: the refusal prints the record's version
as a ready --seen, and `bincount history BIN --json` shows each photo's record_version.
"""

from __future__ import annotations

import argparse

from cli.arguments import Subcommands
from cli.output import emit
from cli.review.commands import check_count, correct_photo
from cli.stack import stack_for


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "correct",
        run,
        help="save a person's count for one photo",
        doc=__doc__,
        examples=[
            "bincount correct incoming/BIN-1/20261126T101500Z-cam1.jpg 3",
            "bincount correct BIN-1/20261126T101500Z-cam1.jpg + --json",
        ],
    )
    parser.add_argument(
        "key", metavar="KEY", help="the photo's S3 key (or s3://bucket/key, or relative to the prefix)"
    )
    parser.add_argument("count", metavar="COUNT", help="0..top class, or + for more than the top class")
    parser.add_argument("--version", help="which upload of KEY (S3 version id; needed when KEY has several)")
    parser.add_argument(
        "--seen", help="the record version you saw (to replace another label; the refusal prints it)"
    )
    parser.add_argument("--bin", dest="bin_id", default="", help="the bin (default: read from the key)")
    parser.add_argument("--reviewer", help="name saved with the label (local stack; default: the OS user)")


def run(args: argparse.Namespace) -> int:
    count = check_count(args.count)
    answer = correct_photo(
        stack_for(args), args.key, count, args.reviewer, args.version, args.seen, args.bin_id
    )
    emit(answer, f"{answer['bin_id']} {answer['key']}: {answer['message']}", args.json)
    return 0
