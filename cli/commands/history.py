"""``bincount history BIN_ID``: every photo of one bin, oldest first: count or error, model, when."""

from __future__ import annotations

import argparse
from typing import Any

from cli.errors import EXIT_OK, NotFound
from cli.output import Column, emit, table
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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history",
        help="every photo of a bin",
        description=__doc__,
        epilog="examples:\n  bincount history BIN-1\n  bincount history BIN-1 --json",
    )
    parser.add_argument("bin_id", metavar="BIN_ID")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bin_id = check_bin_id(args.bin_id)
    stack = stack_for(args)
    rows = history_rows(image_items_of_bin(stack.client("dynamodb"), stack.counts_table, bin_id))
    if not rows:
        raise NotFound(f"bin {bin_id} has no photos in {stack.counts_table} (stack {stack.stack})")
    shown = [
        {
            **row,
            "count_text": ""
            if row["count"] is None
            else f"{row['count']}{'+' if row['count_is_lower_bound'] else ''}",
        }
        for row in rows
    ]
    counted = sum(1 for row in rows if row["outcome"] == "count")
    text = (
        table(shown, COLUMNS)
        + f"\n{len(rows)} photo(s) of {bin_id}: {counted} counted, {len(rows) - counted} rejected"
    )
    emit(rows, text, args.json)
    return EXIT_OK
