"""How every command prints: an aligned text table for people, JSON for scripts (``--json``).

Pure functions over plain rows (dicts), so each command's output is tested without AWS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TextIO

from bincount.count_ranges import count_with_range


@dataclass(frozen=True)
class Column:
    """One table column: its header, the row key it shows and whether numbers align right."""

    header: str
    key: str
    right: bool = False


def cell(value: Any) -> str:
    """A value as a table shows it: blanks for None, two decimals for fractions, yes/'' for flags."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float | Decimal) and not float(value).is_integer():
        return f"{float(value):.2f}"
    if isinstance(value, Decimal):
        return str(int(value))
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Fixed-width table with a header line and a rule; widths fit the longest cell."""
    cells = [[cell(row.get(column.key)) for column in columns] for row in rows]
    widths = [
        max([len(column.header)] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if column.right else value.ljust(width)
            for value, width, column in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    header = line([column.header for column in columns])
    return "\n".join([header, "-" * len(header), *(line(values) for values in cells)])


def plain(value: Any) -> Any:
    """DynamoDB's Decimals (and nested lists/dicts of them) as JSON numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(item) for item in value]
    return value


def to_json(data: Any) -> str:
    return json.dumps(plain(data), indent=2, sort_keys=True, default=str)


def emit(data: Any, text: str, as_json: bool, stream: TextIO | None = None) -> None:
    """Print ``data`` as JSON or ``text`` for people, on stdout unless told otherwise."""
    print(to_json(data) if as_json else text, file=stream or sys.stdout)


def count_text(count: Any, lower_bound: Any, record: Mapping[str, Any] | None = None) -> str:
    """A count as people read it: ``3``, ``5+`` for the open top class (a lower bound), blank for
    none; with a ``record`` holding a calibrated range, the range too: ``3, 2–4 at 90 %``."""
    if count is None:
        return ""
    served = record or {}
    low, high, level = served.get("count_low"), served.get("count_high"), served.get("range_level")
    return count_with_range(
        int(count),
        bool(lower_bound),
        None if low is None else int(low),
        None if high is None else int(high),
        None if level is None else float(level),
        bool(served.get("range_open")),
    )


def emit_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[Column],
    as_json: bool,
    summary: str | None = None,
    shown: Sequence[dict[str, Any]] | None = None,
) -> None:
    """``rows`` as JSON, or for people a table (of ``shown``: the rows made readable) and a summary line."""
    text = table(rows if shown is None else shown, columns)
    emit(rows, text if summary is None else f"{text}\n{summary}", as_json)
