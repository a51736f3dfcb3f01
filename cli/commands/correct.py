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
import shlex
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

from cli.arguments import Subcommands
from cli.output import emit
from cli.review.identity import reviewer_for
from cli.review.service import ReviewService
from cli.stack import StackResources, stack_for
from common.errors import NotFound, Refused, UsageError


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


def check_count(value: str) -> str:
    """The form of COUNT, before any stack is asked (its range depends on the photo's record)."""
    text = value.strip()
    if text != MORE_THAN_TOP and not text.isdigit():
        raise UsageError(f"COUNT {value!r} must be a number (0..the model's top class) or + for more")
    return text


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


def run(args: argparse.Namespace) -> int:
    count = check_count(args.count)
    answer = correct_photo(
        stack_for(args), args.key, count, args.reviewer, args.version, args.seen, args.bin_id
    )
    emit(answer, f"{answer['bin_id']} {answer['key']}: {answer['message']}", args.json)
    return 0
