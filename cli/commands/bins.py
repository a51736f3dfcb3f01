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
from collections.abc import Iterable
from typing import Any

from bincount.count_decisions import DecisionRules, check_expected
from bincount.count_records import stored_result

from cli.arguments import Subcommands, reviewed_option
from cli.output import Column, count_text, emit_rows
from cli.queries import MODEL, PERSON, Item, latest_items, range_fields, select_reviewed, source_text
from cli.stack import stack_for
from common.errors import EXIT_OK

SORT_KEYS = ("bin", "count", "confidence", "updated", "captured")
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


def contradicts_expected(item: Item, expected: int | None) -> bool:
    """The collector's decision (expected quantity outside the range at 1 - α, α as the collector
    used it; its fallback for counts without a range) for a stored count."""
    result = stored_result(item)
    if result is None or expected is None:
        return False
    rate = item.get("false_alarm_rate")
    rules = DecisionRules() if rate is None else DecisionRules(false_alarm_rate=float(rate))
    check = check_expected(result, expected, rules)
    return check is not None and check.outside


def bin_row(item: Item) -> Item:
    """A LATEST item as the `bins` listing shows it: the discrepancy decided again, as the collector
    decides it (bincount.count_decisions), against the bin's expected quantity as it is now."""
    count = item.get("count")
    expected = item.get("expected_quantity")
    lower_bound = bool(item.get("count_is_lower_bound", False))
    discrepancy = contradicts_expected(item, None if expected is None else int(expected))
    person = item.get("human_label") or {}  # set when the latest count is a person's label
    model_count = person.get("model_count") if person else count
    return {
        "bin_id": item.get("bin_id") or str(item.get("pk", "")).removeprefix("BIN#"),
        "count": None if count is None else int(count),
        "count_is_lower_bound": lower_bound,
        "confidence": None if item.get("confidence") is None else float(item["confidence"]),
        "needs_review": bool(item.get("needs_review", False)),
        **range_fields(item),
        "expected_quantity": None if expected is None else int(expected),
        "discrepancy": discrepancy,
        "captured_at": item.get("captured_at"),
        "updated_at": item.get("updated_at"),
        "image_key": item.get("image_key"),
        "model_version": item.get("model_version"),
        # which count LATEST holds: the model's, or a person's label of that photo (who, when, how)
        "count_source": PERSON if person else MODEL,
        "model_count": None if model_count is None else int(model_count),
        "reviewer": person.get("reviewer"),
        "reviewed_at": person.get("reviewed_at"),
        "label_source": (person.get("label_source") or "typed") if person else None,
        "reviewed": bool(person),
    }


def select_bins(
    rows: Iterable[Item], needs_review: bool = False, discrepancy: bool = False, reviewed: str | None = None
) -> list[Item]:
    """Keep rows with a count; with the flags, only those needing review / contradicting inventory /
    (not) holding a person's label."""
    kept = [row for row in rows if row.get("count") is not None]
    if needs_review:
        kept = [row for row in kept if row["needs_review"]]
    if discrepancy:
        kept = [row for row in kept if row["discrepancy"]]
    return select_reviewed(kept, reviewed)


def sort_bins(rows: list[Item], key: str, descending: bool = False) -> list[Item]:
    """Sort by bin id, count, confidence, update or capture time; ties by bin id; blanks last."""
    field = {"bin": "bin_id", "updated": "updated_at", "captured": "captured_at"}.get(key, key)
    present = [row for row in rows if row.get(field) is not None]
    blank = [row for row in rows if row.get(field) is None]
    present.sort(key=lambda row: row["bin_id"])
    present.sort(key=lambda row: row[field], reverse=descending)
    return present + sorted(blank, key=lambda row: row["bin_id"])


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
