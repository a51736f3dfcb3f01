"""``bincount bins``: the latest count of every bin, sortable, filtered to what needs attention.

Each bin's count is the model's or a person's label (``from``: ``model``, or the reviewer, with
``accepted`` when they accepted the model's count in the review console; ``model`` then shows
what the model said). ``--needs-review``: the latest count's confidence is under the stack's
review threshold and no person has labelled it; ``--discrepancy``: the count contradicts the
bin's expected quantity (written by inventory systems on the bin's LATEST item);
``--reviewed yes|no``: only bins whose latest count is (not) a person's.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.arguments import Subcommands, reviewed_option
from cli.output import Column, count_text, emit_rows
from cli.queries import SORT_KEYS, bin_row, latest_items, select_bins, sort_bins, source_text
from cli.stack import stack_for
from common.errors import EXIT_OK

COLUMNS = [
    Column("bin", "bin_id"),
    Column("count", "count_text", right=True),
    Column("from", "from"),
    Column("model", "model_text", right=True),
    Column("conf", "confidence", right=True),
    Column("expected", "expected_quantity", right=True),
    Column("flags", "flags"),
    Column("captured", "captured_at"),
    Column("reviewed", "reviewed_at"),
    Column("model version", "model_version"),
]


def register(subparsers: Subcommands) -> None:
    parser = subparsers.add_command(
        "bins",
        run,
        help="latest count per bin",
        doc=__doc__,
        examples=[
            "bincount bins",
            "bincount bins --needs-review --sort confidence",
            "bincount bins --discrepancy --json",
            "bincount bins --reviewed no",
        ],
    )
    reviewed_option(parser)
    parser.add_argument("--sort", choices=SORT_KEYS, default="bin", help="order (default: bin)")
    parser.add_argument("--desc", action="store_true", help="descending order")
    parser.add_argument("--needs-review", action="store_true", help="only bins whose count needs review")
    parser.add_argument(
        "--discrepancy", action="store_true", help="only bins whose count contradicts inventory"
    )


def flags(row: dict[str, Any]) -> str:
    named = [
        name
        for name, on in (("needs review", row["needs_review"]), ("discrepancy", row["discrepancy"]))
        if on
    ]
    return ", ".join(named)


def run(args: argparse.Namespace) -> int:
    stack = stack_for(args)
    rows = [bin_row(item) for item in latest_items(stack.client("dynamodb"), stack.counts_table)]
    selected = select_bins(rows, args.needs_review, args.discrepancy, args.reviewed)
    rows = sort_bins(selected, args.sort, args.desc)
    shown = [
        {
            **row,
            "count_text": count_text(row["count"], row["count_is_lower_bound"], row),
            "from": source_text(row),
            "model_text": row["model_count"] if row["reviewed"] else None,
            "flags": flags(row),
        }
        for row in rows
    ]
    emit_rows(rows, COLUMNS, args.json, f"{len(rows)} bin(s)", shown)
    return EXIT_OK
