"""``bincount history BIN_ID``: every photo of one bin, oldest first: the model's count or error, a
person's label of it (who, when, typed or accepted in the review console), model version, times.

``--reviewed yes`` keeps the photos a person labelled, ``--reviewed no`` the others. ``--json``
carries the same fields (``label``, ``label_source``, ``reviewer``, ``reviewed_at``) and each
record's ``record_version``, which ``bincount correct --seen`` takes to replace a label.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from bincount.corrections import RecordVersion, human_label_of, label_source_of

from cli.arguments import Subcommands, reviewed_option
from cli.output import Column, count_text, emit_rows
from cli.photos import check_bin_id
from cli.queries import Item, image_items_of_bin, range_fields, select_reviewed, source_text
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


def history_row(item: Item) -> Item:
    """One photo of a bin: the model's count or its error, a person's label of it (who, when, typed
    or accepted), the model version and the times."""
    label = human_label_of(item)
    row = {
        "captured_at": item.get("captured_at"),
        "photo": str(item.get("image_key", "")).rsplit("/", 1)[-1],
        "image_key": item.get("image_key"),
        "uploaded_at": item.get("uploaded_at"),
        "image_version": item.get("image_version"),
        "outcome": item.get("outcome", "count" if "count" in item else "error"),
        "count": None if item.get("count") is None else int(item["count"]),
        "count_is_lower_bound": bool(item.get("count_is_lower_bound", False)),
        "confidence": None if item.get("confidence") is None else float(item["confidence"]),
        "needs_review": bool(item.get("needs_review", False)),
        **range_fields(item),
        "model_version": item.get("model_version"),
        "recorded_at": item.get("recorded_at"),
        "job_name": item.get("job_name"),
        "reviewed": label is not None,
        "label": None if label is None else str(label),  # "3", or ">5" for more than the top class
        "label_count": None if label is None else label.count,
        "label_is_lower_bound": None if label is None else label.is_lower_bound,
        "label_source": label_source_of(item),
        "reviewer": item.get("reviewer") if label else None,
        "reviewed_at": item.get("reviewed_at") if label else None,
        "record_version": RecordVersion.of(item).token(),  # `bincount correct --seen` takes it
    }
    if row["outcome"] == "error":
        row["error"] = f"{item.get('error_code')}: {item.get('error_message')}"
    return row


def history_rows(items: Iterable[Item]) -> list[Item]:
    """Oldest photo first (capture time, then key, then upload time: a re-upload after the first)."""
    return sorted(
        (history_row(item) for item in items),
        key=lambda r: (r["captured_at"] or "", r["image_key"] or "", r["uploaded_at"] or ""),
    )


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
