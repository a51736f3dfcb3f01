"""The serving contract's result records, parsed: the reader side of ``serving_record.schema.json``.

A ``.out`` body is one JSON record: a count or an error with one of the schema's error codes.
Anything else (truncated file, HTML error page, a code the model cannot write) becomes an
``invalid_output`` error so the image still ends with exactly one record.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The serving record's one home (docs/ARCHITECTURE.md, "Serving contract"); shipped with the Lambda code.
SCHEMA_FILE = Path(__file__).with_name("serving_record.schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
#: The error codes the model writes, exactly: the reader accepts these and no others.
ERROR_CODES = frozenset(SCHEMA["$defs"]["error_code"]["enum"])
#: The schema's code for a failure of the model, not of the photo (the review tools still show it).
INTERNAL_ERROR = "internal_error"
# Codes the pipeline itself assigns (not the model).
INVALID_OUTPUT = "invalid_output"
TRANSFORM_FAILED = "transform_failed"


@dataclass(frozen=True)
class CountRange:
    """The calibrated range of a count (schema: ``count_low`` .. ``range_contiguous``).

    ``p_values`` decide membership at any level (a count is in the set at level L when its p-value
    exceeds 1 - L); ``low``/``high`` are the set at ``level`` as served, kept for display.
    """

    p_values: tuple[float, ...]
    low: int
    high: int
    level: float
    open: bool
    contiguous: bool


@dataclass(frozen=True)
class CountResult:
    count: int
    confidence: float
    probabilities: tuple[float, ...]
    count_is_lower_bound: bool
    model_version: str
    #: None for artifacts without a conformal calibration (older models still serve).
    range: CountRange | None = None


@dataclass(frozen=True)
class ErrorResult:
    code: str
    message: str
    model_version: str = ""


ResultRecord = CountResult | ErrorResult


def _finite(value: Any, name: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} is not finite")
    return number


def parse_record(record: Any) -> ResultRecord:
    """Validate one decoded record; raises ValueError when it breaks the contract."""
    if not isinstance(record, dict):
        raise ValueError("record is not a JSON object")
    version = str(record.get("model_version", ""))
    if "error" in record:
        error = record["error"]
        if not isinstance(error, dict) or "code" not in error:
            raise ValueError("error without a code")
        message = str(error.get("message", ""))
        if error["code"] not in ERROR_CODES:
            raise ValueError(f"unknown error code {error['code']!r} ({message})")
        return ErrorResult(code=str(error["code"]), message=message, model_version=version)
    count = record["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    confidence = _finite(record["confidence"], "confidence")
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence outside [0, 1]: {confidence}")
    probabilities = tuple(_finite(p, "probability") for p in record.get("probabilities", []))
    return CountResult(
        count=count,
        confidence=confidence,
        probabilities=probabilities,
        count_is_lower_bound=bool(record.get("count_is_lower_bound", False)),
        model_version=version,
        range=parse_range(record, len(probabilities)),
    )


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def parse_range(record: dict[str, Any], classes: int) -> CountRange | None:
    """The record's calibrated range, or None when the artifact served none (no ``count_p_values``)."""
    raw = record.get("count_p_values")
    if raw is None:
        return None
    if not isinstance(raw, list) or (classes and len(raw) != classes):
        raise ValueError(f"count_p_values must be a list of {classes} numbers")
    p_values = tuple(_finite(p, "count p-value") for p in raw)
    if not all(0.0 <= p <= 1.0 for p in p_values):
        raise ValueError("count p-value outside [0, 1]")
    low = _non_negative_int(record["count_low"], "count_low")
    high = _non_negative_int(record["count_high"], "count_high")
    level = _finite(record["range_level"], "range_level")
    if not 0.0 < level < 1.0 or low > high:
        raise ValueError(f"range {low}-{high} at level {level} is not a range")
    return CountRange(
        p_values=p_values,
        low=low,
        high=high,
        level=level,
        open=bool(record.get("range_open", False)),
        contiguous=bool(record.get("range_contiguous", True)),
    )


def parse_result_body(body: bytes | str) -> ResultRecord:
    """Parse a ``.out`` body (``application/json``, or the first line of ``application/jsonlines``)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.strip()
    if not text:
        return ErrorResult(INVALID_OUTPUT, "empty result file")
    try:
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            decoded = json.loads(text.splitlines()[0])
        if isinstance(decoded, list) and len(decoded) == 1:
            decoded = decoded[0]
        return parse_record(decoded)
    except (ValueError, KeyError, TypeError) as error:
        return ErrorResult(INVALID_OUTPUT, f"result does not follow the serving contract: {error}"[:500])
