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
                entry["count_is_lower_bound"] = bool(record.get("count_is_lower_bound", False))
                entry["confidence"] = record.get("confidence")
                entry["needs_review"] = bool(record.get("needs_review", False))
                entry["review_reason"] = record.get("review_reason")
                # the calibrated range as served (None: the model has no calibration)
                for name in ("count_low", "count_high", "range_level", "range_open"):
                    entry[name] = record.get(name)
                entry["probabilities"] = [float(p) for p in record.get("probabilities") or []]
                if record.get("count_p_values") is not None:
                    entry["count_p_values"] = [float(p) for p in record["count_p_values"]]
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
    from training.reporting.metrics import compute_metrics, trivial_baselines  # numpy only, no torch

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


DISCREPANCY = "Inventory Discrepancy Detected"
UPDATED = "Bin Count Updated"


def mark_discrepancies(entries: list[dict[str, Any]], events: Iterable[Mapping[str, Any]]) -> None:
    """Flag the entries whose photo raised ``Inventory Discrepancy Detected`` (``discrepancy_event``)."""
    keys = {
        str((event.get("detail") or {}).get("image", {}).get("key"))
        for event in events
        if event.get("detail-type") == DISCREPANCY
    }
    for entry in entries:
        if "count" in entry:
            entry["discrepancy_event"] = entry["key"] in keys


def _unique(events: Iterable[Mapping[str, Any]], detail_type: str) -> list[dict[str, Any]]:
    """The details of one type, once per photo (delivery is at least once)."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        if event.get("detail-type") == detail_type:
            detail = dict(event.get("detail") or {})
            image = detail.get("image") or {}
            seen.setdefault((str(image.get("key")), str(image.get("version_id", ""))), detail)
    return list(seen.values())


def discrepancy_summary(
    events: Iterable[Mapping[str, Any]], entries: Iterable[Mapping[str, Any]], alpha: float | None
) -> dict[str, Any]:
    """How many discrepancy events to expect false at α, beside how many were (docs/pipeline.md).

    A bin whose inventory record is right raises a calibrated event with probability at most α,
    so among ``checked`` counts (``Bin Count Updated`` of bins with an expected quantity) at most
    about α × (the right ones) are false. Which records are right is what nobody downstream
    knows, so the estimate is the bound α × checked: exact when every record is right (the demo's
    inventory is its labels), an overestimate otherwise. ``measured_false``: events whose expected
    quantity equals the photo's label (only a run with labels can tell).
    """
    events = list(events)
    discrepancies = _unique(events, DISCREPANCY)
    expected_by_bin = {
        str(e["bin_id"]): e["expected"] for e in entries if e.get("expected") is not None and "count" in e
    }
    checked = [d for d in _unique(events, UPDATED) if str(d.get("bin_id")) in expected_by_bin]
    labels = {str(e["key"]): e.get("expected") for e in entries}
    calibrated = [d for d in discrepancies if d.get("calibrated")]
    summary: dict[str, Any] = {
        "false_alarm_rate": alpha,
        "checked": len(checked),
        "events": len(discrepancies),
        "calibrated_events": len(calibrated),
        "expected_false_at_most": None if alpha is None else round(alpha * len(checked), 2),
    }
    if any(label is not None for label in labels.values()):
        summary["measured_false"] = sum(
            1
            for d in discrepancies
            if labels.get(str((d.get("image") or {}).get("key"))) == d.get("expected_quantity")
        )
    return summary


def discrepancy_lines(summary: Mapping[str, Any] | None) -> list[str]:
    """What the demo says about its discrepancy events and how many of them to expect false."""
    if not summary or summary.get("false_alarm_rate") is None or not summary.get("checked"):
        return []
    alpha, checked, events = summary["false_alarm_rate"], summary["checked"], summary["events"]
    lines = [
        f"Discrepancy events: {events} of {checked} counts checked against an expected quantity, "
        f"at α = {alpha:g} (DiscrepancyFalseAlarmRate)."
    ]
    if summary.get("calibrated_events") or events == 0:
        lines.append(
            f"  expected false: at most α × checked = {alpha:g} × {checked} ≈ "
            f"{summary['expected_false_at_most']:g} (a right record raises one with probability ≤ α)."
        )
    if events and summary.get("calibrated_events", 0) < events:
        lines.append(
            "  the model serves no calibrated range: those events use the fallback P(expected) ≤ α, "
            f"whose false-alarm rate is not guaranteed (α × checked ≈ {summary['expected_false_at_most']:g} "
            "if the model's probabilities are calibrated)."
        )
    if "measured_false" in summary:
        lines.append(
            f"  measured here: {summary['measured_false']} of {events} events name an expected quantity "
            "equal to the photo's label, i.e. are false (the demo's inventory is its labels)."
        )
    return lines


def verdict(quality: dict[str, Any]) -> str:
    """The accuracy line in words: a model that does not beat a constant answer must say so."""
    constant = quality["baseline"]["name"].split(" (", 1)[0]  # "always 1"
    margin = quality["accuracy"] - quality["baseline"]["accuracy"]
    if margin > 0.02:
        return f"On these photos the model is exactly right more often than {constant}, by {margin:.1%}."
    worse = "worse than" if margin < -0.02 else "no better than"
    return (
        f"On these photos the model is {worse} {constant} at exact counts: "
        "read its ranges, not its exact counts."
    )


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
        lines.append(verdict(quality))
    if threshold is not None:
        lines.append(
            f"conf = the model's probability for the count it gave. 'needs review' sends a photo to a "
            "person with a 'Bin Count Needs Review' event: borderline discrepancy (the expected quantity "
            "close to leaving the range), wide range, or, for a model without a range, conf below "
            f"{threshold:g}."
        )
    lines.append(
        "count = the model's count, then its calibrated range: '3, 2–4 at 90 %' means the true count "
        "lies in 2–4 for 90 % of photos (a model without a calibration shows the count alone)."
    )
    return lines


def event_summary(events: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(event.get("detail-type")) for event in events).most_common())


def shown_count(entry: Mapping[str, Any]) -> str:
    """``3, 2–4 at 90 %``: the count and its calibrated range, as the CLI shows it."""
    from cli.output import count_text

    return count_text(entry["count"], entry.get("count_is_lower_bound"), entry)


def entry_flags(entry: Mapping[str, Any]) -> str:
    flags = []
    if entry.get("needs_review"):
        reason = entry.get("review_reason")
        flags.append(f"needs review ({reason.replace('_', ' ')})" if reason else "needs review")
    if entry.get("discrepancy_event"):
        flags.append("discrepancy event")
    elif entry.get("expected") is not None and entry["count"] != entry["expected"]:
        flags.append("differs from expected")
    return ", ".join(flags)


def results_table(entries: list[dict[str, Any]], limit: int = 40) -> str:
    """A fixed-width table of images by bin: count with its range, confidence and flags."""
    width = max([5, *(len(shown_count(e)) for e in entries if "count" in e)])
    header = f"{'bin':<16} {'image':<30} {'expected':>8} {'count':<{width}} {'conf':>5}  flags"
    lines = [header, "-" * len(header)]
    for entry in sorted(entries, key=lambda e: (e["bin_id"], e["key"]))[:limit]:
        name = entry["key"].rsplit("/", 1)[-1][:30]
        expected = "" if entry.get("expected") is None else str(entry["expected"])
        start = f"{entry['bin_id']:<16} {name:<30} {expected:>8}"
        if "count" in entry:
            confidence = entry.get("confidence")
            conf = "" if confidence is None else f"{float(confidence):.2f}"
            lines.append(f"{start} {shown_count(entry):<{width}} {conf:>5}  {entry_flags(entry)}")
        elif "error" in entry:
            lines.append(f"{start} {'-':<{width}} {'':>5}  rejected: {entry['error']['code']}")
        else:
            lines.append(f"{start} {'?':<{width}} {'':>5}  MISSING")
    if len(entries) > limit:
        lines.append(f"... {len(entries) - limit} more in the report")
    return "\n".join(lines)


def events_table(events: list[dict[str, Any]], limit: int = 15) -> str:
    lines = []
    for event in events[:limit]:
        detail = event.get("detail") or {}
        summary = {
            k: detail[k]
            for k in (
                "bin_id",
                "count",
                "count_low",
                "count_high",
                "expected_quantity",
                "expected_p_value",
                "expected_probability",
                "review_reason",
                "previous_count",
                "confidence",
                "error_code",
            )
            if k in detail and (detail[k] is not None or k == "previous_count")
        }
        lines.append(f"{event.get('detail-type', '?'):<32} {json.dumps(summary, default=str)}")
    if len(events) > limit:
        lines.append(f"... {len(events) - limit} more")
    return "\n".join(lines) if lines else "(no events received)"


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
