"""Reading the counts and jobs tables for the operator, and the pure rules that filter and sort.

The counts table holds ``BIN#<id> / LATEST`` (the latest count of a bin) and
``BIN#<id> / IMAGE#<key>#<version digest>`` (one per upload, a count or an error: a re-upload
of a key is a record of its own), see functions/bincount/count_records.py. Both readers match the
``IMAGE#`` prefix, so they find every upload. Listing bins scans for the LATEST items (paginated); a bin's
history is one query on its partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from bincount.corrections import RecordVersion, human_label_of, label_source_of
from bincount.count_decisions import DecisionRules, check_expected
from bincount.count_records import LATEST_SK, bin_pk, stored_result

Item = dict[str, Any]
SORT_KEYS = ("bin", "count", "confidence", "updated", "captured")
MODEL = "model"
PERSON = "person"


def _items(client: Any, operation: str, **request: Any) -> Iterator[Item]:
    """Every item of a paginated scan or query, as plain values (the resource layer's types)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    for page in client.get_paginator(operation).paginate(**request):
        for item in page.get("Items", []):
            yield {name: deserializer.deserialize(value) for name, value in item.items()}


def latest_items(dynamodb: Any, table: str) -> list[Item]:
    """The LATEST item of every bin."""
    values = {":latest": {"S": LATEST_SK}}
    return list(
        _items(
            dynamodb,
            "scan",
            TableName=table,
            FilterExpression="sk = :latest",
            ExpressionAttributeValues=values,
        )
    )


def image_items_of_bin(dynamodb: Any, table: str, bin_id: str) -> list[Item]:
    """Every IMAGE# record of one bin (one query on its partition)."""
    condition = "pk = :pk AND begins_with(sk, :image)"
    values = {":pk": {"S": bin_pk(bin_id)}, ":image": {"S": "IMAGE#"}}
    return list(
        _items(
            dynamodb,
            "query",
            TableName=table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
    )


def image_items(dynamodb: Any, table: str) -> list[Item]:
    """Every IMAGE# record of every bin (one scan)."""
    values = {":image": {"S": "IMAGE#"}}
    request = {"FilterExpression": "begins_with(sk, :image)", "ExpressionAttributeValues": values}
    return list(_items(dynamodb, "scan", TableName=table, **request))


def error_items(dynamodb: Any, table: str) -> list[Item]:
    """Every image record that ended as an error."""
    return list(
        _items(
            dynamodb,
            "scan",
            TableName=table,
            FilterExpression="begins_with(sk, :image) AND #outcome = :error",
            ExpressionAttributeNames={"#outcome": "outcome"},
            ExpressionAttributeValues={":image": {"S": "IMAGE#"}, ":error": {"S": "error"}},
        )
    )


def job_items(dynamodb: Any, table: str) -> list[Item]:
    return list(_items(dynamodb, "scan", TableName=table))


# -- pure rules ---------------------------------------------------------------------------------


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


def range_fields(item: Item) -> Item:
    """The calibrated range of a stored count as plain values (all None without one)."""
    low, high, level = item.get("count_low"), item.get("count_high"), item.get("range_level")
    return {
        "count_low": None if low is None else int(low),
        "count_high": None if high is None else int(high),
        "range_level": None if level is None else float(level),
        "range_open": None if item.get("range_open") is None else bool(item["range_open"]),
        "review_reason": item.get("review_reason"),
    }


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


def select_reviewed(rows: Iterable[Item], reviewed: str | None) -> list[Item]:
    """``--reviewed yes``: rows a person labelled; ``no``: the others; None: all."""
    if reviewed is None:
        return list(rows)
    return [row for row in rows if row["reviewed"] == (reviewed == "yes")]


def source_text(row: Item) -> str:
    """Where a count came from, as the tables show it: ``model``, ``alice`` or ``alice, accepted``."""
    if row.get("count_source", MODEL if not row.get("reviewed") else PERSON) == MODEL:
        return MODEL
    accepted = row.get("label_source") == "accepted"
    return f"{row.get('reviewer') or 'person'}{', accepted' if accepted else ''}"


def sort_bins(rows: list[Item], key: str, descending: bool = False) -> list[Item]:
    """Sort by bin id, count, confidence, update or capture time; ties by bin id; blanks last."""
    field = {"bin": "bin_id", "updated": "updated_at", "captured": "captured_at"}.get(key, key)
    present = [row for row in rows if row.get(field) is not None]
    blank = [row for row in rows if row.get(field) is None]
    present.sort(key=lambda row: row["bin_id"])
    present.sort(key=lambda row: row[field], reverse=descending)
    return present + sorted(blank, key=lambda row: row["bin_id"])


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


def jobs_in_flight(jobs: Iterable[Item]) -> list[Item]:
    return sorted(
        (job for job in jobs if job.get("status") == "InProgress"), key=lambda j: str(j.get("created_at"))
    )


def last_errors(errors: Iterable[Item], failed_jobs: Iterable[Item], limit: int = 5) -> list[Item]:
    """The most recent rejected photos and failed jobs, newest first."""
    entries = [
        {
            "at": item.get("recorded_at"),
            "what": f"photo {item.get('image_key')}",
            "error": f"{item.get('error_code')}: {item.get('error_message')}",
        }
        for item in errors
    ]
    entries += [
        {
            "at": job.get("updated_at") or job.get("created_at"),
            "what": f"job {job.get('job_name') or job.get('pk')}",
            "error": f"{job.get('status')}: {job.get('failure_reason') or ''}".rstrip(": "),
        }
        for job in failed_jobs
    ]
    return sorted(entries, key=lambda e: str(e["at"] or ""), reverse=True)[:limit]
