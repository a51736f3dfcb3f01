"""``bincount history BIN_ID``: every photo of one bin, oldest first: count or error, model, when."""

from __future__ import annotations

import argparse

from cli.arguments import Subcommands
from cli.errors import EXIT_OK, NotFound
from cli.output import Column, count_text, emit_rows
from cli.photos import check_bin_id
from cli.queries import history_rows, image_items_of_bin
from cli.stack import stack_for

COLUMNS = [
    Column("captured", "captured_at"),
    Column("photo", "photo"),
    Column("count", "count_text", right=True),
    Column("conf", "confidence", right=True),
    Column("review", "needs_review"),
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
            "bincount history BIN-1 --json",
        ],
    )
    parser.add_argument("bin_id", metavar="BIN_ID")


def run(args: argparse.Namespace) -> int:
    bin_id = check_bin_id(args.bin_id)
    stack = stack_for(args)
    rows = history_rows(image_items_of_bin(stack.client("dynamodb"), stack.counts_table, bin_id))
    if not rows:
        raise NotFound(f"bin {bin_id} has no photos in {stack.counts_table} (stack {stack.stack})")
    shown = [{**row, "count_text": count_text(row["count"], row["count_is_lower_bound"])} for row in rows]
    counted = sum(1 for row in rows if row["outcome"] == "count")
    summary = f"{len(rows)} photo(s) of {bin_id}: {counted} counted, {len(rows) - counted} rejected"
    emit_rows(rows, COLUMNS, args.json, summary, shown)
    return EXIT_OK
