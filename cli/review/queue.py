"""What the reviewer sees, as pure functions of the counts table's items (no AWS here).

The review queue puts the photos a person should look at first. First come the photos whose look
is most likely to raise or clear a discrepancy: counts with a calibrated range whose expected
quantity is outside the range at 1 - α (a discrepancy) or just inside it (``borderline_discrepancy``),
ordered by how close the expected quantity's p-value lies to α (|ln(p / α)|, smallest first). Then the
model was unsure (``low_confidence``, models without a range), the bin's latest count contradicts
the expected quantity (models without a range: the collector's fallback rule), the range is wide
with no expected quantity, or the model rejected a photo that is still a readable picture. Photos
already labelled by a person leave the queue. :func:`photo_view` is everything one photo's panel shows.

A photo is one upload: its record's sort key (``sk``, ``IMAGE#<key>#<version digest>``) names it
in the queue, the panels and the saves, so two uploads of a key are two photos.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from bincount.corrections import (
    MORE_THAN_TOP,
    READABLE_ERROR_CODES,
    MalformedRecord,
    RecordVersion,
    human_label_of,
    record_name,
    reviewable,
    top_class,
)
from bincount.count_decisions import BORDERLINE_DISCREPANCY, WIDE_RANGE, DecisionRules, check_expected
from bincount.count_ranges import range_text
from bincount.count_records import LATEST_SK, LatestState, stored_result

from cli.output import count_text

IMAGE_PREFIX = "IMAGE#"
HISTORY_LENGTH = 24

# Queue order: the reasons a photo needs a person, most urgent first.
BORDERLINE = "borderline discrepancy"
CALIBRATED_DISCREPANCY = "discrepancy outside the range"
LOW_CONFIDENCE = "low confidence"
DISCREPANCY = "discrepancy with expected quantity"
WIDE = "wide range"
REJECTED_READABLE = "rejected by the model, photo readable"
PICKED = "picked by bin"
REASON_ORDER = (
    BORDERLINE,
    CALIBRATED_DISCREPANCY,
    LOW_CONFIDENCE,
    DISCREPANCY,
    WIDE,
    REJECTED_READABLE,
    PICKED,
)
#: reasons ordered among themselves by the decision's margin (one group, the queue's head)
MARGIN_REASONS = (BORDERLINE, CALIBRATED_DISCREPANCY)
#: α of records written before the collector kept it (the template's default)
DEFAULT_FALSE_ALARM_RATE = DecisionRules().false_alarm_rate


@dataclass(frozen=True, order=True)
class QueueItem:
    priority: int
    captured_at: str
    bin_id: str
    key: str
    sk: str
    reason: str
    version: str = ""  # the upload (records.upload_attributes' image_version)
    margin: float | None = None  # |ln(p / α)| of the expected quantity: small = a look decides

    def sort_key(self) -> tuple[int, float, str, str, str]:
        """Margin reasons first, closest to the decision's edge first; then by reason, oldest first."""
        margin = self.margin if self.margin is not None else float("inf")
        group = 0 if self.reason in MARGIN_REASONS else self.priority
        return (group, margin, self.captured_at, self.bin_id, self.key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bin_id": self.bin_id,
            "sk": self.sk,
            "key": self.key,
            "version": self.version,
            "reason": self.reason,
            "captured_at": self.captured_at,
            "margin": None if self.margin is None else round(self.margin, 4),
        }


def is_image(item: Mapping[str, Any]) -> bool:
    return str(item.get("sk", "")).startswith(IMAGE_PREFIX)


def record_problem(item: Mapping[str, Any]) -> str | None:
    """One line naming the record when a field the console reads is not what the pipeline writes
    (anyone with UpdateItem on the table can store anything); None for a sound record."""
    try:
        human_label_of(item)
        for name in ("bin_id", "image_key", "image_bucket", "captured_at"):
            if not isinstance(item.get(name), str):
                raise MalformedRecord(f"record {record_name(item)}: {name} {item.get(name)!r} is not text")
        count = item.get("count")
        if count is not None:
            int(count)
        for p in item.get("probabilities") or ():
            float(p)
        if item.get("confidence") is not None:
            float(item["confidence"])
    except MalformedRecord as error:
        return str(error)
    except (TypeError, ValueError, ArithmeticError) as error:
        return f"record {record_name(item)}: {type(error).__name__}: {error}"
    return None


def sound_images(items: Iterable[Mapping[str, Any]], problems: list[str] | None) -> list[Mapping[str, Any]]:
    """The IMAGE# records whose fields the console can read; one line per other one in ``problems``."""
    sound = []
    for item in items:
        if not is_image(item):
            continue
        problem = record_problem(item)
        if problem is None:
            sound.append(item)
        elif problems is not None:
            problems.append(problem)
    return sound


def holds_latest(image: Mapping[str, Any], latest: LatestState | None) -> bool:
    """Whether LATEST holds this upload (the key and its version)."""
    return (
        latest is not None
        and latest.image_key == image.get("image_key")
        and (latest.version_id or "") == (image.get("image_version") or "")
    )


def review_decision(image: Mapping[str, Any], latest: LatestState | None) -> tuple[str | None, float | None]:
    """Why this photo needs a person (None: labelled already, or the model is fine) and, for a
    calibrated count of a bin with an expected quantity, the decision's margin (ExpectedCheck.margin)."""
    if human_label_of(image) is not None:
        return None, None
    if image.get("outcome") == "error":
        return (REJECTED_READABLE if image.get("error_code") in READABLE_ERROR_CODES else None), None
    result = stored_result(image)
    if result is None:
        return None, None
    alpha = float(image.get("false_alarm_rate") or DEFAULT_FALSE_ALARM_RATE)
    expected = latest.expected_quantity if latest is not None else None
    check = check_expected(result, expected, DecisionRules(false_alarm_rate=alpha))
    stored_reason = image.get("review_reason")
    if result.range is not None:
        margin = check.margin if check is not None else None
        if check is not None and check.outside and holds_latest(image, latest):
            return CALIBRATED_DISCREPANCY, margin
        if stored_reason == BORDERLINE_DISCREPANCY:
            return BORDERLINE, margin
        if stored_reason == WIDE_RANGE:
            return WIDE, None
        return (LOW_CONFIDENCE if image.get("needs_review") else None), None
    if image.get("needs_review"):
        return LOW_CONFIDENCE, None
    if check is not None and check.outside and holds_latest(image, latest):
        return DISCREPANCY, None
    return None, None


def review_reason(image: Mapping[str, Any], latest: LatestState | None) -> str | None:
    """Why this photo needs a person, or None (already labelled, or the model is fine)."""
    return review_decision(image, latest)[0]


def _queue_item(image: Mapping[str, Any], reason: str, margin: float | None = None) -> QueueItem:
    return QueueItem(
        priority=REASON_ORDER.index(reason),
        captured_at=str(image.get("captured_at", "")),
        bin_id=str(image["bin_id"]),
        key=str(image["image_key"]),
        sk=str(image["sk"]),
        reason=reason,
        version=str(image.get("image_version") or ""),
        margin=margin,
    )


def build_queue(items: Iterable[Mapping[str, Any]], problems: list[str] | None = None) -> list[QueueItem]:
    """The review queue from the whole table (one Scan): most urgent reason first, then oldest.
    Malformed records are left out, each named by one line in ``problems``."""
    records: list[Mapping[str, Any]] = []
    latest: dict[str, LatestState] = {}
    for item in items:
        if item.get("sk") == LATEST_SK:
            try:
                state = LatestState.from_item(dict(item))
            except (TypeError, ValueError, ArithmeticError) as error:
                if problems is not None:
                    problems.append(f"record {record_name(item)}: {type(error).__name__}: {error}")
                continue
            if state is not None:
                latest[str(item["pk"])] = state
        else:
            records.append(item)
    images = sound_images(records, problems)
    queue = []
    for image in images:
        reason, margin = review_decision(image, latest.get(str(image["pk"])))
        if reason is not None:
            queue.append(_queue_item(image, reason, margin))
    return sorted(queue, key=QueueItem.sort_key)


def bin_queue(items: Iterable[Mapping[str, Any]], problems: list[str] | None = None) -> list[QueueItem]:
    """Every photo of one bin a reviewer picked, newest first (labelled ones too: they can re-label;
    not those the batcher rejected before counting, nor malformed ones: named in ``problems``)."""
    images = [item for item in sound_images(items, problems) if reviewable(item)]
    picked = [_queue_item(image, PICKED) for image in images]
    return sorted(picked, key=lambda entry: entry.captured_at, reverse=True)


def shown_count(image: Mapping[str, Any]) -> str:
    """The count a person reads for a record: the human label if any, else the model's (``5+``)."""
    label = human_label_of(image)
    if label is not None:
        return str(label)
    count = image.get("count")
    return count_text(None if count is None else int(count), image.get("count_is_lower_bound"))


def shown_range(image: Mapping[str, Any]) -> str:
    """The model's calibrated range as people read it (``2–4 at 90 %``), empty without one."""
    low, high, level = image.get("count_low"), image.get("count_high"), image.get("range_level")
    if low is None or high is None or level is None:
        return ""
    return range_text(int(low), int(high), float(level), bool(image.get("range_open")))


def history(images: Iterable[Mapping[str, Any]], current_sk: str) -> list[dict[str, Any]]:
    """The bin's last photos in capture order: what the sparkline and the table show."""

    def order(image: Mapping[str, Any]) -> tuple[str, str, str]:
        return (
            str(image.get("captured_at", "")),
            str(image.get("image_key", "")),
            str(image.get("uploaded_at") or ""),
        )

    ordered = sorted(images, key=order)[-HISTORY_LENGTH:]
    rows = []
    for image in ordered:
        label = human_label_of(image)
        value = label.count if label else image.get("count")
        rows.append(
            {
                "captured_at": str(image.get("captured_at", "")),
                "key": str(image.get("image_key", "")),
                "value": None if value is None else int(value),
                "shown": shown_count(image),
                "human": label is not None,
                "current": image.get("sk") == current_sk,
            }
        )
    return rows


def photo_view(bin_items: Iterable[Mapping[str, Any]], sk: str, photo_url: str) -> dict[str, Any] | None:
    """Everything one upload's panel shows, from the bin's items (None: no record ``sk``)."""
    items = list(bin_items)
    image = next((item for item in items if is_image(item) and item.get("sk") == sk), None)
    if image is None:
        return None
    problem = record_problem(image)
    if problem is not None:
        raise MalformedRecord(problem)
    others = [item for item in items if not is_image(item)] + sound_images(items, None)
    key = str(image["image_key"])
    uploads = sum(1 for item in items if is_image(item) and item.get("image_key") == key)
    items = others
    latest_item = next((item for item in items if item.get("sk") == LATEST_SK), None)
    try:
        latest = LatestState.from_item(dict(latest_item) if latest_item else None)
    except (TypeError, ValueError, ArithmeticError):  # a malformed LATEST: the panel without it
        latest = None
    top = top_class(image)
    label = human_label_of(image)
    probabilities = [float(p) for p in image.get("probabilities") or []]
    rows = history([item for item in items if is_image(item)], sk)
    return {
        "bin_id": str(image["bin_id"]),
        "sk": sk,
        "key": key,
        "image_version": str(image.get("image_version") or ""),
        "uploaded_at": str(image.get("uploaded_at") or ""),
        "uploads_of_key": uploads,
        "name": PurePosixPath(key).name,
        "url": photo_url,
        "captured_at": str(image.get("captured_at", "")),
        "outcome": str(image.get("outcome", "")),
        "model_count": None if image.get("count") is None else int(image["count"]),
        "model_is_lower_bound": bool(image.get("count_is_lower_bound", False)),
        "model_shown": shown_count({name: value for name, value in image.items() if name != "human_count"}),
        "model_version": str(image.get("model_version", "")),
        "confidence": None if image.get("confidence") is None else float(image["confidence"]),
        "range_text": shown_range(image),
        # Bin Count models' top class is open ("5 or more", ModelConfig.top_class_open)
        "probabilities": [
            {"label": f"{k}+" if k == top else str(k), "p": p} for k, p in enumerate(probabilities)
        ],
        "error_code": str(image.get("error_code", "")),
        "error_message": str(image.get("error_message", "")),
        "top": top,
        "choices": [str(k) for k in range(top + 1)] + [MORE_THAN_TOP],
        "label": None
        if label is None
        else {
            "shown": str(label),
            "reviewer": image.get("reviewer", ""),
            "reviewed_at": image.get("reviewed_at"),
        },
        "version": RecordVersion.of(image).token(),
        "expected_quantity": latest.expected_quantity if latest else None,
        "holds_latest": holds_latest(image, latest),
        "reason": review_reason(image, latest) or "",
        "history": rows,
        "chart": history_chart(rows, latest.expected_quantity if latest else None),
    }


def history_chart(
    rows: list[dict[str, Any]], expected: int | None, width: int = 320, height: int = 90
) -> dict[str, Any]:
    """SVG coordinates of the bin's counts over time (photo order; human labels marked)."""
    values = [row["value"] for row in rows if row["value"] is not None]
    top = max([*values, expected or 0, 1])
    pad = 8

    def y(value: int) -> float:
        return round(height - pad - (height - 2 * pad) * value / top, 1)

    step = (width - 2 * pad) / max(len(rows) - 1, 1)
    points = [
        {**row, "x": round(pad + i * step, 1), "y": y(row["value"])}
        for i, row in enumerate(rows)
        if row["value"] is not None
    ]
    return {
        "width": width,
        "height": height,
        "top": top,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "expected_y": None if expected is None else y(expected),
    }
