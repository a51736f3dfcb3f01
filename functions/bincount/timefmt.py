"""One canonical timestamp format, so capture times compare as strings and as datetimes alike.

AWS hands times over as ISO strings (``2026-11-26T10:00:00.123Z``), epoch milliseconds as
strings or numbers (SageMaker state-change events use all three) or ``datetime`` (boto3).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_COMPACT = re.compile(r"^(\d{8})T(\d{6})(?:\.(\d+))?Z?$")


def parse_time(value: object) -> datetime:
    """Parse any of the forms above into an aware UTC datetime (ValueError if none fits)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return _from_number(float(value))
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return _from_number(float(text))
        compact = _COMPACT.match(text)
        if compact:
            date, clock, fraction = compact.groups()
            text = f"{date[:4]}-{date[4:6]}-{date[6:]}T{clock[:2]}:{clock[2:4]}:{clock[4:]}"
            text += f".{fraction}" if fraction else ""
            text += "+00:00"
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a time: {value!r}")


def _from_number(number: float) -> datetime:
    # Epoch milliseconds unless the value is plausibly seconds (before 1973 in milliseconds).
    seconds = number / 1000.0 if number > 1e11 else number
    return datetime.fromtimestamp(seconds, tz=UTC)


def format_time(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 with milliseconds: lexicographic order equals time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def canonical_time(value: object) -> str:
    return format_time(parse_time(value))


def now() -> str:
    return format_time(datetime.now(UTC))
