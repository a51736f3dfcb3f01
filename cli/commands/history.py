"""``bincount history BIN_ID``: every photo of one bin, oldest first: the model's count or error, a
person's label of it (who, when, typed or accepted in the review console), model version, times.

``--reviewed yes`` keeps the photos a person labelled, ``--reviewed no`` the others. ``--json``
carries the same fields (``label``, ``label_source``, ``reviewer``, ``reviewed_at``) and each
record's ``record_version``, which ``bincount correct --seen`` takes to replace a label.
"""

from __future__ import annotations

import argparse

from cli.arguments import Subcommands, reviewed_option
from cli.output import Column, count_text, emit_rows
from cli.photos import check_bin_id
from cli.queries import history_rows, image_items_of_bin, select_reviewed, source_text
from cli.stack import stack_for
from common.errors import EXIT_OK, NotFound

COLUMNS = [
    Column("captured", "captured_at"),
    Column("photo", "photo"),
    Column("model", "count_text", right=True),
    Column("conf", "confidence", right=True),
    Column("label", "label", right=True),
    Column("by", "by"),
    Column("reviewed", "reviewed_at"),
    Column("review", "review"),
    Column("model version", "model_version"),
    Column("recorded", "recorded_at"),
    Column("error", "error"),
]


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "history",
        run,
        help="every photo of a bin",
        doc=__doc__,
        examples=[
            "bincount history BIN-1",
            "bincount history BIN-1 --reviewed yes",
            "bincount history BIN-1 --json",
        ],
    )
    parser.add_argument("bin_id", metavar="BIN_ID")
    reviewed_option(parser)


def run(args: argparse.Namespace) -> int:
    bin_id = check_bin_id(args.bin_id)
    stack = stack_for(args)
    rows = history_rows(image_items_of_bin(stack.client("dynamodb"), stack.counts_table, bin_id))
    if not rows:
        raise NotFound(f"bin {bin_id} has no photos in {stack.counts_table} (stack {stack.stack})")
    counted = sum(1 for row in rows if row["outcome"] == "count")
    labelled = sum(1 for row in rows if row["reviewed"])
    summary = (
        f"{len(rows)} photo(s) of {bin_id}: {counted} counted, {len(rows) - counted} rejected, "
        f"{labelled} labelled by a person"
    )
    rows = select_reviewed(rows, args.reviewed)
    if args.reviewed:
        summary += f"; {len(rows)} shown (--reviewed {args.reviewed})"
    shown = [
        {
            **row,
            "count_text": count_text(row["count"], row["count_is_lower_bound"], row),
            "by": source_text(row) if row["reviewed"] else "",
            # still waiting for a person: the model was unsure and nobody has labelled it
            "review": "yes" if row["needs_review"] and not row["reviewed"] else "",
        }
        for row in rows
    ]
    emit_rows(rows, COLUMNS, args.json, summary, shown)
    return EXIT_OK
