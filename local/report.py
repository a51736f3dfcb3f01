"""What a run shows a person: per-image results, bins, consumer events, totals; and report.json.

Pure functions over plain data (uploads, the counts table's image records, the consumed events),
so the accounting rule — every uploaded image ends as exactly one count or error record — is
checked in one place for the demo, the benchmark and the end-to-end test.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Upload:
    """One object put into the ingest bucket (``expected``: the known count, if any)."""

    key: str
    bin_id: str
    body: bytes
    content_type: str = "image/jpeg"
    expected: int | None = None
    note: str = ""


def result_entries(
    uploads: Iterable[Upload], records: Mapping[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One entry per distinct uploaded key: its count (+ confidence) or its error, or ``missing``."""
    entries = []
    seen: set[str] = set()
    for upload in uploads:
        if upload.key in seen:
            continue
        seen.add(upload.key)
        entry: dict[str, Any] = {"key": upload.key, "bin_id": upload.bin_id}
        if upload.expected is not None:
            entry["expected"] = upload.expected
        if upload.note:
            entry["note"] = upload.note
        found = records.get(upload.key, [])
        entry["records"] = len(found)
        if found:
            record = found[0]
            if record.get("outcome") == "count" or ("count" in record and "error_code" not in record):
                entry["count"] = record["count"]
                entry["confidence"] = record.get("confidence")
                entry["needs_review"] = bool(record.get("needs_review", False))
            else:
                entry["error"] = {"code": record.get("error_code"), "message": record.get("error_message")}
        else:
            entry["missing"] = True
        entries.append(entry)
    return entries


def accounting(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Is every image exactly one count or error record? Lists the ones that are not."""
    missing = [e["key"] for e in entries if e["records"] == 0]
    duplicated = [e["key"] for e in entries if e["records"] > 1]
    return {
        "every_image_exactly_one_record": not missing and not duplicated,
        "missing": missing,
        "more_than_one_record": duplicated,
    }


def totals(entries: list[dict[str, Any]], uploads_made: int, elapsed_s: float) -> dict[str, Any]:
    """One number per question: distinct photos uploaded (repeats of the same object apart)."""
    counted = sum(1 for e in entries if "count" in e)
    with_expected = [e for e in entries if "count" in e and "expected" in e]
    totals_: dict[str, Any] = {
        "uploaded": len(entries),
        "same_object_uploaded_again": uploads_made - len(entries),  # at-least-once: no extra record
        "counted": counted,
        "rejected": sum(1 for e in entries if "error" in e),
        "needs_review": sum(1 for e in entries if e.get("needs_review")),
        "missing": sum(1 for e in entries if e.get("missing")),
        "elapsed_s": round(elapsed_s, 2),
        "images_per_s": round(len(entries) / elapsed_s, 2) if elapsed_s > 0 else None,
    }
    if with_expected:
        exact = sum(1 for e in with_expected if e["count"] == e["expected"])
        totals_["exact_match_with_expected"] = f"{exact}/{len(with_expected)}"
    return totals_


def count_quality(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Accuracy and RMSE of the counts against the labels, beside always answering the most common
    label: on ABID's skewed counts "21/52 exact" is what "always 1" scores, so the baseline is what
    gives a figure its meaning. None when no counted photo has a label."""
    from training.metrics import compute_metrics, trivial_baselines  # numpy only, no torch

    scored = [e for e in entries if "count" in e and e.get("expected") is not None]
    if not scored:
        return None
    truth = [int(e["expected"]) for e in scored]
    predicted = [int(e["count"]) for e in scored]
    metrics = compute_metrics(truth, predicted, max(truth + predicted) + 1)
    majority = trivial_baselines(truth)["majority"]
    return {
        "n": metrics.n,
        "accuracy": round(metrics.accuracy, 4),
        "rmse": round(metrics.rmse, 3),
        "baseline": {
            "name": f"always {majority.constant} (the most common count)",
            "accuracy": round(majority.accuracy, 4),
            "rmse": round(majority.rmse, 3),
        },
    }


def quality_lines(quality: dict[str, Any] | None, threshold: float | None) -> list[str]:
    """What a person reads under the table: how good the counts are and what the flags mean."""
    lines = []
    if quality:
        base = quality["baseline"]
        lines.append(
            f"Counts against the labels ({quality['n']} photos): accuracy {quality['accuracy']:.1%}, "
            f"RMSE {quality['rmse']:.2f}; {base['name']}: accuracy {base['accuracy']:.1%}, "
            f"RMSE {base['rmse']:.2f}."
        )
    if threshold is not None:
        lines.append(
            f"conf = the model's probability for the count it gave; below {threshold:g} the record is "
            "flagged 'needs review' (a person should check that photo) and a 'Bin Count Needs Review' "
            "event is sent."
        )
    return lines


def event_summary(events: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(event.get("detail-type")) for event in events).most_common())


def results_table(entries: list[dict[str, Any]], limit: int = 40) -> str:
    """A fixed-width table of images by bin: count, confidence and flags."""
    header = f"{'bin':<16} {'image':<30} {'expected':>8} {'count':>5} {'conf':>5}  flags"
    lines = [header, "-" * len(header)]
    for entry in sorted(entries, key=lambda e: (e["bin_id"], e["key"]))[:limit]:
        name = entry["key"].rsplit("/", 1)[-1][:30]
        expected = "" if entry.get("expected") is None else str(entry["expected"])
        if "count" in entry:
            confidence = entry.get("confidence")
            conf = "" if confidence is None else f"{float(confidence):.2f}"
            flags = "needs review" if entry.get("needs_review") else ""
            if entry.get("expected") is not None and entry["count"] != entry["expected"]:
                flags = ", ".join(f for f in (flags, "differs from expected") if f)
            lines.append(
                f"{entry['bin_id']:<16} {name:<30} {expected:>8} {entry['count']:>5} {conf:>5}  {flags}"
            )
        elif "error" in entry:
            code = entry["error"]["code"]
            lines.append(f"{entry['bin_id']:<16} {name:<30} {expected:>8} {'-':>5} {'':>5}  rejected: {code}")
        else:
            lines.append(f"{entry['bin_id']:<16} {name:<30} {expected:>8} {'?':>5} {'':>5}  MISSING")
    if len(entries) > limit:
        lines.append(f"... {len(entries) - limit} more in the report")
    return "\n".join(lines)


def events_table(events: list[dict[str, Any]], limit: int = 15) -> str:
    lines = []
    for event in events[:limit]:
        detail = event.get("detail") or {}
        summary = {
            k: detail[k]
            for k in ("bin_id", "count", "expected_quantity", "previous_count", "confidence", "error_code")
            if k in detail
        }
        lines.append(f"{event.get('detail-type', '?'):<32} {json.dumps(summary, default=str)}")
    if len(events) > limit:
        lines.append(f"... {len(events) - limit} more")
    return "\n".join(lines) if lines else "(no events received)"


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
